/**
 * The store conformance suite: every SessionStore must pass it unchanged. A store judges expiry by
 * the `now` it is given (it may also expire data physically, as Redis does), so the suite moves time
 * by passing later `now` values instead of sleeping.
 */
import type { Test } from 'tap'
import { sealForTokenHolder } from '../../lib/cipher.js'
import { generateLocator, recordIdOf, secretKeyOf, sessionTokenOf } from '../../lib/session-token.js'
import { DEVICE_KEY, MAX_PAST_TOKENS, type CommitInput, type SessionStore } from '../../lib/store/contract.js'
import { generateToken } from '../../lib/token.js'

export interface StoreUnderTest {
  store: SessionStore
  cleanup: () => Promise<void>
}

const newKey = (): string => secretKeyOf(sessionTokenOf(generateLocator(), generateToken()))
/** A grace box as the engine makes them (the store treats it as opaque text). */
const newBox = (): string => sealForTokenHolder(generateToken(), generateToken())
const HOUR = 3_600_000
const DAY = 24 * HOUR
const GRACE = 2000
const WINDOW = 600_000

export function runStoreConformance (t: Test, makeStore: () => Promise<StoreUnderTest>): void {
  let store: SessionStore
  let cleanup: () => Promise<void>
  t.beforeEach(async () => {
    ({ store, cleanup } = await makeStore())
  })
  t.afterEach(async () => { await cleanup() })

  const t0 = Date.now()
  async function create (options: { sandbox?: string, idleTtl?: number, absolute?: number, userId?: string, data?: Record<string, string>, now?: number } = {}): Promise<{ id: string, key: string }> {
    const id = recordIdOf(generateLocator())
    const key = newKey()
    const now = options.now ?? t0
    await store.create({
      id,
      sandbox: options.sandbox ?? 'auth-active',
      tokenKey: key,
      data: options.data ?? { user: '"ada"', n: '1' },
      now,
      idleTtl: options.idleTtl ?? HOUR,
      absoluteExpiresAt: now + (options.absolute ?? 5 * DAY),
      ...(options.userId === undefined ? {} : { userId: options.userId })
    })
    return { id, key }
  }
  const resolve = async (id: string, key: string, now = t0, options: { sandbox?: string, revoke?: boolean, grace?: number } = {}) =>
    await store.resolve({
      id, tokenKey: key, now, gracePeriod: options.grace ?? GRACE, revokeOnReuse: options.revoke ?? true, ...(options.sandbox === undefined ? {} : { sandbox: options.sandbox })
    })
  const commit = async (input: Omit<CommitInput, 'rotate'> & { rotate?: string | null, window?: number, box?: string }) =>
    await store.commit({
      id: input.id,
      tokenKey: input.tokenKey,
      patch: input.patch,
      now: input.now,
      rotate: input.rotate === undefined || input.rotate === null ? null : { newKey: input.rotate, box: input.box ?? newBox(), unseenWindow: input.window ?? WINDOW }
    })
  /** Rotates from `key` (presenting it first, as a request does) and returns the new key. */
  async function rotateFrom (id: string, key: string, now: number, box = newBox()): Promise<string> {
    t.equal((await resolve(id, key, now)).status, 'live', 'the rotating token is current')
    const next = newKey()
    const result = await commit({ id, tokenKey: key, patch: null, rotate: next, box, now })
    if (result.status !== 'ok' || !result.rotated) throw new Error(`rotation from a current token did not happen: ${JSON.stringify(result)}`)
    return next
  }
  const migrate = async (id: string, key: string, options: { from: string, to: string, newKey?: string, data?: Record<string, string> | null, userId?: string, now?: number, retiredUntil?: number }) =>
    await store.migrate({
      id,
      tokenKey: key,
      from: options.from,
      to: options.to,
      newKey: options.newKey ?? newKey(),
      retiredUntil: options.retiredUntil ?? (options.now ?? t0) + WINDOW,
      data: options.data ?? null,
      idleTtl: HOUR,
      now: options.now ?? t0,
      ...(options.userId === undefined ? {} : { userId: options.userId })
    })

  t.test('a created session resolves by its record id and token key, with its data, sandbox and user', async (t) => {
    const { id, key } = await create({ userId: 'u1' })
    const result = await resolve(id, key, t0 + 10)
    t.equal(result.status, 'live')
    if (result.status !== 'live') return
    t.equal(result.session.id, id)
    t.equal(result.session.sandbox, 'auth-active')
    t.equal(result.session.userId, 'u1')
    t.same({ ...result.session.data }, { user: '"ada"', n: '1' })
    t.equal(result.session.createdAt, t0)
    t.equal(result.session.lastSeenAt, t0 + 10, 'resolving refreshes lastSeenAt')
    t.equal(result.session.absoluteExpiresAt, t0 + 5 * DAY)
  })

  t.test('an unknown record or another sandbox resolves to nothing; a wrong key of a known record is the theft signal', async (t) => {
    const { id, key } = await create({ sandbox: 'auth-pending' })
    t.same(await resolve(recordIdOf(generateLocator()), key), { status: 'none' })
    t.same(await resolve(id, key, t0, { sandbox: 'auth-active' }), { status: 'none' })
    t.equal((await resolve(id, key, t0, { sandbox: 'auth-pending' })).status, 'live')
    t.equal((await resolve(id, key, t0)).status, 'live', 'no sandbox given: any sandbox')
    t.same(await resolve(id, newKey(), t0 + 1, { revoke: false }), { status: 'reused', id, sandbox: 'auth-pending', revoked: false },
      'only a holder of one of its tokens knows the record: any other key is an earlier token')
    t.equal((await resolve(id, key, t0 + 2)).status, 'live', 'not revoked when told not to')
  })

  t.test('idle expiry is refreshed by use; the absolute cap is not', async (t) => {
    const { id, key } = await create({ idleTtl: 1000, absolute: 2500 })
    t.equal((await resolve(id, key, t0 + 900)).status, 'live')
    t.equal((await resolve(id, key, t0 + 1800)).status, 'live', 'idle deadline moved by the last use')
    t.equal((await resolve(id, key, t0 + 2499)).status, 'live')
    t.same(await resolve(id, key, t0 + 2500), { status: 'none' }, 'absolute cap reached though used 700 ms ago')
    const idle = await create({ idleTtl: 1000 })
    t.same(await resolve(idle.id, idle.key, t0 + 1000), { status: 'none' }, 'idle for its whole ttl')
    t.same(await resolve(idle.id, idle.key, t0 + 10), { status: 'none' }, 'an expired session stays gone even if asked about earlier')
  })

  t.test('commit applies a patch of top-level keys and refreshes the session', async (t) => {
    const { id, key } = await create({ idleTtl: 1000 })
    const committed = await commit({ id, tokenKey: key, patch: { n: '2', cart: '["x"]', user: null }, now: t0 + 900 })
    t.same(committed, { status: 'ok', rotated: false, chain: [], expiresAt: t0 + 1900 })
    const result = await resolve(id, key, t0 + 1800)
    t.equal(result.status, 'live')
    if (result.status === 'live') t.same({ ...result.session.data }, { n: '2', cart: '["x"]' })
  })

  t.test('data keys that name Object.prototype members are plain keys', async (t) => {
    const { id, key } = await create({ data: {} })
    const patch = JSON.parse('{"__proto__":"{\\"admin\\":true}","constructor":"1","toString":"\\"x\\""}') as Record<string, string>
    await commit({ id, tokenKey: key, patch, now: t0 })
    const result = await resolve(id, key, t0 + 1)
    if (result.status !== 'live') return t.fail('not live')
    t.same(Object.keys(result.session.data).sort(), ['__proto__', 'constructor', 'toString'])
    t.equal(Object.getOwnPropertyDescriptor(result.session.data, '__proto__')?.value, '{"admin":true}')
    t.equal(({} as Record<string, unknown>).admin, undefined, 'nothing leaked into Object.prototype')
  })

  t.test('commit on a session that ended answers gone', async (t) => {
    const { id, key } = await create({ idleTtl: 1000 })
    t.same(await commit({ id, tokenKey: key, patch: { n: '2' }, now: t0 + 1000 }), { status: 'gone' })
    t.same(await commit({ id: recordIdOf(generateLocator()), tokenKey: newKey(), patch: null, now: t0 }), { status: 'gone' })
  })

  t.test('a rotated token works until its successor is presented, then for the grace period, then it is the theft signal', async (t) => {
    const { id, key } = await create({ userId: 'u1' })
    const box = newBox()
    const next = await rotateFrom(id, key, t0, box)
    for (const at of [t0 + 1, t0 + GRACE + 1, t0 + WINDOW / 2]) {
      const grace = await resolve(id, key, at)
      t.equal(grace.status, 'grace', `successor unseen: the old token still resolves ${at - t0} ms later`)
      if (grace.status === 'grace') t.same(grace.chain, [box], 'and leads to the current token')
    }
    const seenAt = t0 + WINDOW / 2 + 10
    t.equal((await resolve(id, next, seenAt)).status, 'live', 'the successor is presented')
    t.equal((await resolve(id, key, seenAt + GRACE - 1)).status, 'grace', 'grace for requests in flight')
    t.same(await resolve(id, key, seenAt + GRACE), { status: 'reused', id, sandbox: 'auth-active', userId: 'u1', revoked: true })
    t.same(await resolve(id, next, seenAt + GRACE + 1), { status: 'none' }, 'the current token died with the session')
  })

  t.test('the grace period starts when the successor is presented for the first time, as the resolve call says', async (t) => {
    const { id, key } = await create()
    const next = await rotateFrom(id, key, t0)
    t.equal((await resolve(id, next, t0 + 100, { grace: 500 })).status, 'live')
    t.equal((await resolve(id, next, t0 + 300, { grace: 60_000 })).status, 'live', 'a later presentation does not extend it')
    t.equal((await resolve(id, key, t0 + 599)).status, 'grace')
    t.equal((await resolve(id, key, t0 + 600, { revoke: false })).status, 'reused')
  })

  t.test('an unseen successor keeps the old token working only for the window given at rotation', async (t) => {
    const { id, key } = await create()
    t.equal((await resolve(id, key, t0)).status, 'live')
    const next = newKey()
    t.same(await commit({ id, tokenKey: key, patch: null, rotate: next, window: 5000, now: t0 }), { status: 'ok', rotated: true, expiresAt: t0 + HOUR })
    t.equal((await resolve(id, key, t0 + 4999)).status, 'grace')
    t.same(await resolve(id, key, t0 + 5000), { status: 'none' }, 'past the window: no session, but no theft signal (nobody used the session since)')
    t.equal((await resolve(id, next, t0 + 5001)).status, 'live', 'the current token is untouched')
    t.same(await resolve(id, key, t0 + 5002, { revoke: false }), { status: 'reused', id, sandbox: 'auth-active', revoked: false },
      'once the successor was presented, the old token is the theft signal')
  })

  t.test('reuse is recognised whatever sandbox the caller asks for', async (t) => {
    const { id, key } = await create({ sandbox: 'otp-pending' })
    const next = await rotateFrom(id, key, t0)
    await resolve(id, next, t0 + 1)
    t.equal((await resolve(id, key, t0 + GRACE + 2, { sandbox: 'auth-active', revoke: false })).status, 'reused')
  })

  t.test('a late commit with a rotated token does not rotate; it saves its data and learns the current token', async (t) => {
    const { id, key } = await create()
    const ab = newBox()
    const bc = newBox()
    const b = await rotateFrom(id, key, t0, ab)
    const c = await rotateFrom(id, b, t0 + 1, bc)
    const late = await commit({ id, tokenKey: key, patch: { late: '1' }, rotate: newKey(), now: t0 + 2 })
    t.same(late, { status: 'ok', rotated: false, chain: [ab, bc], expiresAt: t0 + 2 + HOUR })
    const grace = await resolve(id, key, t0 + 3)
    t.equal(grace.status, 'grace')
    if (grace.status === 'grace') {
      t.same(grace.chain, [ab, bc])
      t.equal(grace.session.data.late, '1', 'the late request saved its data')
    }
    t.equal((await resolve(id, c, t0 + 4)).status, 'live')
    const slow = await commit({ id, tokenKey: key, patch: { slow: '1' }, now: t0 + 4 + GRACE })
    t.same(slow, { status: 'ok', rotated: false, chain: [ab, bc], expiresAt: t0 + 4 + GRACE + HOUR },
      'a request admitted in time that commits after the grace period keeps its write and learns the current token')
  })

  t.test('no history bound: a token rotated a thousand times ago is still the theft signal', async (t) => {
    const { id, key } = await create()
    const keys = [key]
    let now = t0
    for (let i = 0; i < 1000; i++) {
      now += GRACE + 1
      keys.push(await rotateFrom(id, keys.at(-1)!, now))
    }
    now += GRACE + 1
    t.equal((await resolve(id, keys.at(-1)!, now)).status, 'live')
    t.equal((await resolve(id, keys[500]!, now + GRACE + 1, { revoke: false })).status, 'reused')
    t.same(await resolve(id, keys[0]!, now + GRACE + 2), { status: 'reused', id, sandbox: 'auth-active', revoked: true })
    t.same(await resolve(id, keys.at(-1)!, now + GRACE + 3), { status: 'none' }, 'revoked')
  })

  t.test(`at most ${MAX_PAST_TOKENS} rotated tokens within their window: further rotations wait, none is cut short`, async (t) => {
    const { id, key } = await create()
    const keys = [key]
    for (let i = 0; i < MAX_PAST_TOKENS; i++) keys.push(await rotateFrom(id, keys.at(-1)!, t0 + i))
    const current = keys.at(-1)!
    t.equal((await resolve(id, current, t0 + 100)).status, 'live')
    t.same(await commit({ id, tokenKey: current, patch: null, rotate: newKey(), now: t0 + 101 }), { status: 'ok', rotated: false, chain: [], expiresAt: t0 + 101 + HOUR },
      'the full record does not rotate')
    for (const old of keys.slice(0, -1)) t.equal((await resolve(id, old, t0 + 102)).status, 'grace', 'every earlier token still within its window works')
    const later = t0 + 100 + GRACE
    const next = newKey()
    t.same(await commit({ id, tokenKey: current, patch: null, rotate: next, now: later }), { status: 'ok', rotated: true, expiresAt: later + HOUR },
      'once the grace of the older ones is over, rotation resumes')
    t.equal((await resolve(id, keys.at(-2)!, later + 1, { revoke: false })).status, 'reused')
  })

  t.test('migration moves a session, retires every earlier token, and happens once', async (t) => {
    const { id, key } = await create({ sandbox: 'otp-pending', idleTtl: 60_000 })
    const rotatedTo = await rotateFrom(id, key, t0)
    t.equal(await migrate(id, rotatedTo, { from: 'auth-active', to: 'auth-active', now: t0 + 1 }), false, 'not in that sandbox')
    t.equal(await migrate(id, newKey(), { from: 'otp-pending', to: 'auth-active', now: t0 + 1 }), false, 'not with a token the session never had')
    const active = newKey()
    t.equal(await migrate(id, key, { from: 'otp-pending', to: 'auth-active', newKey: active, data: { user: '"ada"', mfa: 'true' }, userId: 'u1', now: t0 + 2, retiredUntil: t0 + 5000 }), true,
      'a rotated token within its window may migrate')
    t.same(await resolve(id, key, t0 + 3), { status: 'none' }, 'the first token is retired: no session, and no theft signal')
    t.same(await resolve(id, rotatedTo, t0 + 3), { status: 'none' }, 'the token in its window too: grace never crosses a migration')
    const result = await resolve(id, active, t0 + 3, { sandbox: 'auth-active' })
    t.equal(result.status, 'live')
    if (result.status === 'live') {
      t.same({ ...result.session.data }, { user: '"ada"', mfa: 'true' })
      t.equal(result.session.idleTtl, HOUR)
      t.equal(result.session.userId, 'u1')
      t.equal(result.session.createdAt, t0, 'creation time, and so the absolute cap, is kept')
    }
    t.equal(await migrate(id, rotatedTo, { from: 'otp-pending', to: 'auth-active', now: t0 + 4 }), false, 'a second migration with an old token fails')
    t.same(await commit({ id, tokenKey: rotatedTo, patch: { stale: '1' }, rotate: newKey(), now: t0 + 4 }), { status: 'ok', rotated: false, chain: null, expiresAt: t0 + 4 + HOUR },
      'a request that was in flight across the migration gets no token')
    t.same((await store.listUser('u1', t0 + 5)).map((info) => info.id), [id])
    t.same(await resolve(id, key, t0 + 5000, { revoke: false }), { status: 'reused', id, sandbox: 'auth-active', userId: 'u1', revoked: false },
      'after its window a retired token is the theft signal like any other')
  })

  t.test('migrations in a row keep every retired token as "no session" within its deadline; retired tokens never hold rotation back', async (t) => {
    const { id, key } = await create()
    const first = newKey()
    t.equal(await migrate(id, key, { from: 'auth-active', to: 'auth-active', newKey: first, retiredUntil: t0 + 5000 }), true)
    const second = newKey()
    t.equal(await migrate(id, first, { from: 'auth-active', to: 'auth-active', newKey: second, retiredUntil: t0 + 9000 }), true)
    t.same(await resolve(id, key, t0 + 4000), { status: 'none' }, 'retired by the first migration, within its own deadline')
    t.same(await resolve(id, first, t0 + 8000), { status: 'none' }, 'retired by the second')
    t.equal((await resolve(id, key, t0 + 5000, { revoke: false })).status, 'reused', 'each by its own deadline')
    const keys = [second]
    for (let i = 0; i < MAX_PAST_TOKENS; i++) keys.push(await rotateFrom(id, keys.at(-1)!, t0 + 10 + i))
    t.equal(keys.length, MAX_PAST_TOKENS + 1, `${MAX_PAST_TOKENS} rotations right after migrations: the retired tokens took no room`)
  })

  t.test('an older rotated token with a longer grace than a newer one still leads to the current token', async (t) => {
    const { id, key } = await create()
    const ab = newBox()
    const bc = newBox()
    const cd = newBox()
    const b = await rotateFrom(id, key, t0, ab)
    t.equal((await resolve(id, b, t0 + 1, { grace: 60_000 })).status, 'live', 'b presented: a gets a minute')
    const c = newKey()
    t.equal((await commit({ id, tokenKey: b, patch: null, rotate: c, box: bc, now: t0 + 1 })).status, 'ok')
    t.equal((await resolve(id, c, t0 + 2, { grace: 1000 })).status, 'live', 'c presented: b gets a second')
    const d = newKey()
    t.equal((await commit({ id, tokenKey: c, patch: null, rotate: d, box: cd, now: t0 + 2 })).status, 'ok')
    t.equal((await resolve(id, d, t0 + 3000)).status, 'live')
    t.same(await commit({ id, tokenKey: d, patch: null, rotate: newKey(), now: t0 + 3000 }).then((r) => r.status), 'ok', 'a rotation after b expired')
    t.equal((await resolve(id, b, t0 + 3001, { revoke: false })).status, 'reused', 'b is past its second')
    const late = await resolve(id, key, t0 + 3002)
    t.equal(late.status, 'grace', 'a is still within its minute')
    if (late.status === 'grace') t.same(late.chain.slice(0, 3), [ab, bc, cd], 'and its chain still passes through b')
  })

  t.test('migration without data keeps it', async (t) => {
    const { id, key } = await create({ sandbox: 'auth-active' })
    const next = newKey()
    t.equal(await migrate(id, key, { from: 'auth-active', to: 'auth-active', newKey: next }), true)
    const result = await resolve(id, next, t0)
    if (result.status === 'live') t.same({ ...result.session.data }, { user: '"ada"', n: '1' })
    else t.fail('not live')
  })

  t.test('destroy ends a session and all its tokens', async (t) => {
    const { id, key } = await create()
    const next = await rotateFrom(id, key, t0)
    t.equal(await store.destroy(id), true)
    t.equal(await store.destroy(id), false)
    t.same(await resolve(id, key, t0 + 1), { status: 'none' })
    t.same(await resolve(id, next, t0 + 1), { status: 'none' })
  })

  t.test('user index: list, revoke all, revoke all but one', async (t) => {
    const a = await create({ userId: 'u1' })
    const b = await create({ userId: 'u1', sandbox: 'otp-pending' })
    const c = await create({ userId: 'u1', idleTtl: 1000 })
    const other = await create({ userId: 'u2' })
    const listed = await store.listUser('u1', t0 + 5000)
    t.same(listed.map((info) => info.id).sort(), [a.id, b.id].sort(), 'expired sessions are not listed')
    const info = listed.find((entry) => entry.id === b.id)!
    t.same(info, { id: b.id, sandbox: 'otp-pending', userId: 'u1', createdAt: t0, lastSeenAt: t0, expiresAt: t0 + HOUR })
    t.equal(await store.revokeUser('u1', t0 + 5000, a.id), 1, 'all but the current one')
    t.equal((await resolve(a.id, a.key, t0 + 5001)).status, 'live')
    t.same(await resolve(b.id, b.key, t0 + 5001), { status: 'none' })
    t.same(await resolve(c.id, c.key, t0 + 1), { status: 'none' }, 'the expired one is gone as well')
    t.equal(await store.revokeUser('u1', t0 + 5002), 1)
    t.same(await resolve(a.id, a.key, t0 + 5003), { status: 'none' })
    t.equal((await resolve(other.id, other.key, t0 + 5003)).status, 'live', 'other users are untouched')
    t.same(await store.listUser('nobody', t0), [])
  })

  t.test('device record: listed with the session, updated by a commit patch, returned by a theft signal', async (t) => {
    const device = JSON.stringify({ userAgent: 'UA one', browser: 'Chrome', browserVersion: '1', os: 'Linux', type: 'desktop', ip: '10.0.0.1' })
    const a = await create({ userId: 'dev-u', data: { user: '"ada"', [DEVICE_KEY]: device } })
    const b = await create({ userId: 'dev-u' })
    const listed = await store.listUser('dev-u', t0 + 1)
    t.equal(listed.find((info) => info.id === a.id)?.device, device, 'the device text comes with the list')
    t.notOk('device' in listed.find((info) => info.id === b.id)!, 'a session without one has none')
    const moved = JSON.stringify({ ...JSON.parse(device), ip: '10.0.0.2' })
    await resolve(a.id, a.key, t0 + 2)
    const next = newKey()
    await commit({ id: a.id, tokenKey: a.key, patch: { [DEVICE_KEY]: moved }, rotate: next, now: t0 + 3 })
    t.equal((await store.listUser('dev-u', t0 + 4)).find((info) => info.id === a.id)?.device, moved, 'a commit patch updates it')
    await resolve(a.id, next, t0 + 5)
    const reused = await resolve(a.id, a.key, t0 + 5 + GRACE + 1)
    t.same(reused, { status: 'reused', id: a.id, sandbox: 'auth-active', userId: 'dev-u', revoked: true, device: moved }, 'the theft signal says who used the session last')
  })

  t.test('revokeUserSession ends one live session of its user only', async (t) => {
    const a = await create({ userId: 'one-u' })
    const b = await create({ userId: 'one-u' })
    const other = await create({ userId: 'two-u' })
    const short = await create({ userId: 'one-u', idleTtl: 1000 })
    t.equal(await store.revokeUserSession('one-u', other.id, t0 + 1), false, 'a session of another user is refused')
    t.equal((await resolve(other.id, other.key, t0 + 2)).status, 'live', '…and left alone')
    t.equal(await store.revokeUserSession('one-u', recordIdOf(generateLocator()), t0 + 1), false, 'no such session')
    t.equal(await store.revokeUserSession('one-u', short.id, t0 + 5000), false, 'an expired one does not count')
    t.equal(await store.revokeUserSession('one-u', b.id, t0 + 3), true)
    t.equal(await store.revokeUserSession('one-u', b.id, t0 + 4), false, 'only once')
    t.same(await resolve(b.id, b.key, t0 + 5), { status: 'none' })
    t.equal((await resolve(a.id, a.key, t0 + 5)).status, 'live', 'the others live on')
    t.same((await store.listUser('one-u', t0 + 6)).map((info) => info.id), [a.id])
    const c = await create({ userId: 'one-u', now: t0 + 7 })
    const racers = await Promise.all(Array.from({ length: 100 }, async () => await store.revokeUserSession('one-u', c.id, t0 + 8)))
    t.equal(racers.filter(Boolean).length, 1, 'of 100 parallel revocations exactly one ends it')
  })

  t.test('a session that gains a user by migration is listed and revoked with that user', async (t) => {
    const { id, key } = await create({ sandbox: 'otp-pending' })
    const active = newKey()
    t.equal(await migrate(id, key, { from: 'otp-pending', to: 'auth-active', newKey: active, userId: 'u7' }), true)
    t.same((await store.listUser('u7', t0 + 1)).map((info) => info.id), [id])
    t.equal(await store.revokeUser('u7', t0 + 2), 1)
    t.same(await resolve(id, active, t0 + 3), { status: 'none' })
  })

  t.test('values: set, get, delete, expire, and sandboxes are separate', async (t) => {
    await store.kvSet('users-registry', 'ada', '{"name":"Ada"}', 1000, t0)
    t.equal(await store.kvGet('users-registry', 'ada', t0 + 999), '{"name":"Ada"}')
    t.equal(await store.kvGet('auth-active', 'ada', t0), null, 'other sandbox')
    t.equal(await store.kvGet('users-registry', 'ada', t0 + 1000), null, 'expired')
    await store.kvSet('users-registry', 'bob', '1', 1000, t0)
    t.equal(await store.kvDel('users-registry', 'bob'), true)
    t.equal(await store.kvDel('users-registry', 'bob'), false)
    t.equal(await store.kvGet('users-registry', 'bob', t0), null)
  })

  t.test('kvAdd sets once; kvTake gives a value once', async (t) => {
    t.equal(await store.kvAdd('otp-pending', 'step:u1', '42', 1000, t0), true)
    t.equal(await store.kvAdd('otp-pending', 'step:u1', '43', 1000, t0 + 1), false)
    t.equal(await store.kvGet('otp-pending', 'step:u1', t0 + 2), '42')
    t.equal(await store.kvAdd('otp-pending', 'step:u1', '44', 1000, t0 + 1000), true, 'after expiry it can be set again')
    t.equal(await store.kvTake('otp-pending', 'step:u1', t0 + 1001), '44')
    t.equal(await store.kvTake('otp-pending', 'step:u1', t0 + 1001), null)
    await store.kvSet('otp-pending', 'old', '1', 10, t0)
    t.equal(await store.kvTake('otp-pending', 'old', t0 + 10), null, 'an expired value is not taken')
  })

  t.test('counters count in a fixed window and reset', async (t) => {
    t.same(await store.increment('c:1', 1000, t0), { count: 1, resetAt: t0 + 1000 })
    t.same(await store.increment('c:1', 1000, t0 + 500), { count: 2, resetAt: t0 + 1000 })
    t.same(await store.increment('c:1', 1000, t0 + 1000), { count: 1, resetAt: t0 + 2000 }, 'a new window')
    await store.resetCounter('c:1')
    t.same(await store.increment('c:1', 1000, t0 + 1001), { count: 1, resetAt: t0 + 2001 })
  })

  t.test('parallel: one rotation wins, every other commit keeps its data and learns the current token', async (t) => {
    const { id, key } = await create()
    await resolve(id, key, t0)
    const boxes = Array.from({ length: 50 }, newBox)
    const results = await Promise.all(boxes.map(async (box, i) =>
      await commit({ id, tokenKey: key, patch: { [`k${i}`]: String(i) }, rotate: newKey(), box, now: t0 })))
    const winners = results.filter((r) => r.status === 'ok' && r.rotated)
    t.equal(winners.length, 1, 'exactly one rotation')
    const winnerBox = boxes[results.findIndex((r) => r.status === 'ok' && r.rotated)]
    for (const r of results) if (r.status === 'ok' && !r.rotated) t.same(r.chain, [winnerBox], 'every other request learns the winner\'s token')
    const grace = await resolve(id, key, t0 + 1)
    if (grace.status !== 'grace') return t.fail('expected grace')
    for (let i = 0; i < 50; i++) t.equal(grace.session.data[`k${i}`], String(i))
  })

  t.test('parallel: one kvAdd, one kvTake and one migrate win', async (t) => {
    const adds = await Promise.all(Array.from({ length: 30 }, async (_, i) => await store.kvAdd('s', 'once', String(i), 1000, t0)))
    t.equal(adds.filter(Boolean).length, 1)
    await store.kvSet('s', 'code', 'c', 1000, t0)
    const takes = await Promise.all(Array.from({ length: 30 }, async () => await store.kvTake('s', 'code', t0)))
    t.equal(takes.filter((v) => v !== null).length, 1)
    const { id, key } = await create({ sandbox: 'otp-pending' })
    const moves = await Promise.all(Array.from({ length: 30 }, async () => await migrate(id, key, { from: 'otp-pending', to: 'auth-active' })))
    t.equal(moves.filter(Boolean).length, 1)
    const regenerations = await Promise.all(Array.from({ length: 30 }, async () => await migrate(id, key, { from: 'auth-active', to: 'auth-active' })))
    t.equal(regenerations.filter(Boolean).length, 0, 'the retired token cannot migrate again')
  })
}
