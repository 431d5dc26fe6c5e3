/**
 * listUser on Redis: the user's index, then each record it names (read-only), decoded into the
 * SessionInfo of every live session that names the user and whose bindings open.
 */
import type { SessionInfo } from '../contract.js'
import { DEVICE_KEY } from '../contract.js'
import { DEVICE_FIELD, digest, intOf } from './codec.js'
import type { RedisParts } from './commands.js'
import type { RedisSealer } from './sealing.js'
import { indexRead } from './user-index.js'

/**
 * The live sessions of the user whose records name it and whose bindings open, oldest first (ties by
 * id): the index (one round trip), then every record it names with one HMGET each, sent together.
 */
export async function listSessions (parts: RedisParts, sealer: RedisSealer, userId: string, now: number): Promise<SessionInfo[]> {
  const { client, keys } = parts
  const uk = digest('user', userId)
  const entries = await indexRead(parts, uk, now)
  const records = await Promise.all(entries.map(async (entry) =>
    await client.hmgetBuffer(keys.session(entry.id), 'sb', 'ca', 'ls', 'it', 'ax', 'uk', 'u', 'ms', 'mt', 'x', DEVICE_FIELD)))
  const infos: SessionInfo[] = []
  entries.forEach((entry, i) => {
    const [sb, ca, ls, it, ax, owner, u, ms, mt, x, dv] = records[i]!
    if (sb === null || sb === undefined || x !== null || owner?.toString('latin1') !== uk) return
    const sandbox = sb.toString('utf8')
    const createdAt = intOf(ca ?? undefined)
    const lastSeenAt = intOf(ls ?? undefined)
    const idleTtl = intOf(it ?? undefined)
    const absoluteExpiresAt = intOf(ax ?? undefined)
    const expiresAt = Math.min(lastSeenAt + idleTtl, absoluteExpiresAt)
    if (!(expiresAt > now)) return
    // Only what opens is listed: the user, and the bindings of what the list shows.
    if (u === null || u === undefined || sealer.open(u, 'session', entry.id, 'user')?.toString('utf8') !== userId) return
    if (ms === null || ms === undefined || sealer.open(ms, 'session', entry.id, 'sandbox', sandbox, idleTtl) === null) return
    if (mt === null || mt === undefined || sealer.open(mt, 'session', entry.id, 'times', createdAt, absoluteExpiresAt) === null) {
      return
    }
    const info: SessionInfo = { id: entry.id, sandbox, userId, createdAt, lastSeenAt, expiresAt }
    const device = sealer.openDataField(entry.id, DEVICE_FIELD.slice(2), dv ?? null)
    if (device !== null && device[0] === DEVICE_KEY) info.device = device[1]
    infos.push(info)
  })
  return infos.sort((a, b) => a.createdAt - b.createdAt || (a.id < b.id ? -1 : 1))
}
