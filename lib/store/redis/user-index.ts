/**
 * A user's index `<prefix>u:{<uk>}` (a sorted set of record ids scored by an upper bound of each
 * session's absolute deadline), in a slot of its own: written before the session that names the user,
 * read by revokeUser and listUser, tidied after a record this store deleted.
 */
import { list, num, text } from './codec.js'
import type { RedisParts } from './commands.js'
import { SCRIPT } from './scripts/index.js'

/**
 * Adds a record to its user's index. Called BEFORE the session record names the user (create, and a
 * migration that sets a user), so no record ever names a user without an index entry: if the record
 * write then fails or never arrives, the entry dangles, which is harmless (revokeUser and listUser
 * check each record) and ends with its score. `score` bounds the session's absolute deadline.
 */
export async function indexAdd ({ scripts, keys }: RedisParts, uk: string, id: string, score: number, now: number): Promise<void> {
  await scripts.run(SCRIPT.indexAdd, { key: keys.user(uk), member: id, score, now })
}

/** The entries of a user's index not past their score (those past it are dropped). */
export async function indexRead ({ scripts, keys }: RedisParts, uk: string, now: number): Promise<Array<{ id: string, score: number }>> {
  const reply = list(await scripts.run(SCRIPT.indexRead, { key: keys.user(uk), now }))
  const entries: Array<{ id: string, score: number }> = []
  for (let i = 0; i + 1 < reply.length; i += 2) entries.push({ id: text(reply[i]), score: num(reply[i + 1]) })
  return entries
}

/**
 * Drops the index entry of a record this store has just deleted (destroy, a reuse revocation). Records
 * are never re-created, so this is always safe; it is tidying only, so a failure is not the caller's:
 * the entry then dangles until revokeUser or its score removes it.
 */
export async function unindex ({ client, keys }: RedisParts, uk: string, id: string): Promise<void> {
  await client.zrem(keys.user(uk), id).catch(() => {})
}
