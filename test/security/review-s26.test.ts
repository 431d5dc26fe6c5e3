/**
 * Review of 299c6a5 (OpenedSessions, RedisStore's cache of whole opened sessions).
 *
 * docs/security.md promises: a RedisStore keeps the last 4096 sessions it opened "(session data, user
 * ids; ...; a session it ends is dropped at once)". Only destroy, a reused token that revokes and a stale
 * token call `forget`: revokeUser and revokeUserSession end sessions (DEL + tombstone) but leave their
 * decrypted data and user id in the cache, in clear, until 4096 other sessions push them out. The session
 * never resolves again (the tombstone is seen first), so what this shows is the promise broken: the
 * plaintext of a session ended by "sign out everywhere" is still in the process heap.
 *
 * How: the store's private cache (#sealer -> #sessions -> #byId) is read through the inspector
 * protocol (Runtime.getProperties lists private fields), after a session was resolved (opened, so kept)
 * and then ended. destroy is the control: there the entry is gone.
 */
import { Session } from 'node:inspector/promises'
import { randomBytes } from 'node:crypto'
import t, { type Test } from 'tap'
import { generateLocator, recordIdOf, secretKeyOf, sessionTokenOf } from '../../lib/session/token.js'
import { generateToken } from '../../lib/crypto/random-token.js'
import { RedisStore } from '../../lib/store/redis/redis-store.js'
import { connect, deleteUnder, IN_CI, newPrefix } from '../redis/redis-helpers.js'

const HOUR = 3_600_000

const inspector = new Session()
inspector.connect()

/** The objectId of a private field of the object `objectId`. */
async function privateField (objectId: string, name: string): Promise<string> {
  const { privateProperties } = await inspector.post('Runtime.getProperties', { objectId, ownProperties: true }) as
    { privateProperties?: Array<{ name: string, value?: { objectId?: string } }> }
  const field = privateProperties?.find((p) => p.name === name)?.value?.objectId
  if (field === undefined) throw new Error(`no private field ${name}`)
  return field
}

/** Whether the store's OpenedSessions holds an entry (decrypted data, user id) for record `id`. */
async function keeps (store: RedisStore, id: string): Promise<boolean> {
  const g = globalThis as { __reviewS26Store?: RedisStore }
  g.__reviewS26Store = store
  try {
    const { result } = await inspector.post('Runtime.evaluate', { expression: 'globalThis.__reviewS26Store' }) as { result: { objectId: string } }
    const sealer = await privateField(result.objectId, '#sealer')
    const sessions = await privateField(sealer, '#sessions')
    const byId = await privateField(sessions, '#byId')
    const { result: has } = await inspector.post('Runtime.callFunctionOn', {
      objectId: byId, functionDeclaration: 'function (id) { return this.has(id) }', arguments: [{ value: id }], returnByValue: true
    }) as { result: { value: boolean } }
    return has.value
  } finally {
    delete g.__reviewS26Store
  }
}

const connected = await connect()
if (typeof connected === 'string') {
  if (IN_CI) t.fail(`${connected}: CI is set, so the RedisStore tests must run`)
  else t.plan(0, `${connected}: start Redis or set REDIS_URL`)
} else {
  const client = connected
  t.teardown(async () => { await client.quit(); inspector.disconnect() })
  const secret = randomBytes(32)

  function scratch (t: Test): RedisStore {
    const prefix = newPrefix()
    const store = new RedisStore({ client, prefix, secret })
    t.teardown(async () => {
      await store.close()
      await deleteUnder(client, prefix)
    })
    return store
  }

  /** Creates a session of `userId` and resolves it once (RedisStore opens it and keeps it). */
  async function openedSession (store: RedisStore, userId: string): Promise<{ id: string, key: string }> {
    const locator = generateLocator()
    const id = recordIdOf(locator)
    const key = secretKeyOf(sessionTokenOf(locator, generateToken()))
    const now = Date.now()
    await store.create({
      id, sandbox: 'auth-active', tokenKey: key, data: { note: '"private"' }, now, idleTtl: HOUR, absoluteExpiresAt: now + HOUR, userId
    })
    const resolved = await store.resolve({ id, tokenKey: key, now: now + 1, gracePeriod: 2000, revokeOnReuse: true })
    if (resolved.status !== 'live') throw new Error(`expected a live session, got ${resolved.status}`)
    return { id, key }
  }

  t.test('control: an opened live session is kept; destroy drops it at once', async (t) => {
    const store = scratch(t)
    const c = await openedSession(store, 'ada')
    t.equal(await keeps(store, c.id), true, 'a live session that was opened is kept (as documented)')
    t.equal(await store.destroy(c.id), true)
    t.equal(await keeps(store, c.id), false, 'destroy: dropped at once')
  })

  t.test('revokeUser ends a session but its decrypted data stays in the cache (docs/security.md: "a session it ends is dropped at once")', async (t) => {
    const store = scratch(t)
    const c = await openedSession(store, 'bob')
    t.equal(await store.revokeUser('bob', Date.now() + 2), 1, 'the session was ended')
    t.same(await store.resolve({ id: c.id, tokenKey: c.key, now: Date.now() + 3, gracePeriod: 2000, revokeOnReuse: true }), { status: 'none' })
    t.equal(await keeps(store, c.id), false,
      'revokeUser: the revoked session (its decrypted data and user id) must be dropped from OpenedSessions at once, but it is still kept in clear')
  })

  t.test('revokeUserSession ends a session but its decrypted data stays in the cache', async (t) => {
    const store = scratch(t)
    const c = await openedSession(store, 'carol')
    t.equal(await store.revokeUserSession('carol', c.id, Date.now() + 2), true, 'the session was ended')
    t.equal(await keeps(store, c.id), false,
      'revokeUserSession: the revoked session must be dropped from OpenedSessions at once, but it is still kept in clear')
  })
}
