/**
 * The store conformance suite: every SessionStore must pass it unchanged. A store judges expiry by
 * the `now` it is given (it may also expire data physically, as Redis does), so the suite moves time
 * by passing later `now` values instead of sleeping.
 */
import type { Test } from 'tap'
import { ROTATED_TOKENS_KEPT, type SessionStore } from '../../lib/store/contract.js'
import { generateSessionId, generateToken, tokenKey } from '../../lib/token.js'

export interface StoreUnderTest {
  store: SessionStore
  cleanup: () => Promise<void>
}

const newKey = (): string => tokenKey(generateToken())
const HOUR = 3_600_000
const DAY = 24 * HOUR

export function runStoreConformance (t: Test, makeStore: () => Promise<StoreUnderTest>): void {
  let store: SessionStore
  let cleanup: () => Promise<void>
  t.beforeEach(async () => {
    ({ store, cleanup } = await makeStore())
  })
  t.afterEach(async () => { await cleanup() })

  const t0 = Date.now()
  async function create (options: { sandbox?: string, idleTtl?: number, absolute?: number, userId?: string, data?: Record<string, string>, now?: number } = {}): Promise<{ sid: string, key: string }> {
    const sid = generateSessionId()
    const key = newKey()
    const now = options.now ?? t0
    await store.create({
      sid,
      sandbox: options.sandbox ?? 'auth-active',
      tokenKey: key,
      data: options.data ?? { user: '"ada"', n: '1' },
      now,
      idleTtl: options.idleTtl ?? HOUR,
      absoluteExpiresAt: now + (options.absolute ?? 5 * DAY),
      ...(options.userId === undefined ? {} : { userId: options.userId })
    })
    return { sid, key }
  }
  const resolve = async (key: string, now = t0, sandbox?: string, revokeOnReuse = true) =>
    await store.resolve({ tokenKey: key, now, revokeOnReuse, ...(sandbox === undefined ? {} : { sandbox }) })

  t.test('a created session resolves by its token key, with its data, sandbox and user', async (t) => {
    const { sid, key } = await create({ userId: 'u1' })
    const result = await resolve(key, t0 + 10)
    t.equal(result.status, 'live')
    if (result.status !== 'live') return
    t.equal(result.session.sid, sid)
    t.equal(result.session.sandbox, 'auth-active')
    t.equal(result.session.userId, 'u1')
    t.same({ ...result.session.data }, { user: '"ada"', n: '1' })
    t.equal(result.session.createdAt, t0)
    t.equal(result.session.lastSeenAt, t0 + 10, 'resolving refreshes lastSeenAt')
    t.equal(result.session.absoluteExpiresAt, t0 + 5 * DAY)
  })

  t.test('an unknown key, or a key of another sandbox, resolves to nothing', async (t) => {
    const { key } = await create({ sandbox: 'auth-pending' })
    t.same(await resolve(newKey()), { status: 'none' })
    t.same(await resolve(key, t0, 'auth-active'), { status: 'none' })
    t.equal((await resolve(key, t0, 'auth-pending')).status, 'live')
    t.equal((await resolve(key, t0)).status, 'live', 'no sandbox given: any sandbox')
  })

  t.test('idle expiry is refreshed by use; the absolute cap is not', async (t) => {
    const { key } = await create({ idleTtl: 1000, absolute: 2500 })
    t.equal((await resolve(key, t0 + 900)).status, 'live')
    t.equal((await resolve(key, t0 + 1800)).status, 'live', 'idle deadline moved by the last use')
    t.equal((await resolve(key, t0 + 2499)).status, 'live')
    t.same(await resolve(key, t0 + 2500), { status: 'none' }, 'absolute cap reached though used 700 ms ago')
    const idle = await create({ idleTtl: 1000 })
    t.same(await resolve(idle.key, t0 + 1000), { status: 'none' }, 'idle for its whole ttl')
    t.same(await resolve(idle.key, t0 + 10), { status: 'none' }, 'an expired session stays gone even if asked about earlier')
  })

  t.test('commit applies a patch of top-level keys and refreshes the session', async (t) => {
    const { sid, key } = await create({ idleTtl: 1000 })
    const committed = await store.commit({ sid, tokenKey: key, patch: { n: '2', cart: '["x"]', user: null }, rotate: null, now: t0 + 900 })
    t.same(committed, { status: 'ok', rotated: false, chain: [], expiresAt: t0 + 1900 })
    const result = await resolve(key, t0 + 1800)
    t.equal(result.status, 'live')
    if (result.status === 'live') t.same({ ...result.session.data }, { n: '2', cart: '["x"]' })
  })

  t.test('data keys that name Object.prototype members are plain keys', async (t) => {
    const { sid, key } = await create({ data: {} })
    const patch = JSON.parse('{"__proto__":"{\\"admin\\":true}","constructor":"1","toString":"\\"x\\""}') as Record<string, string>
    await store.commit({ sid, tokenKey: key, patch, rotate: null, now: t0 })
    const result = await resolve(key, t0 + 1)
    if (result.status !== 'live') return t.fail('not live')
    t.same(Object.keys(result.session.data).sort(), ['__proto__', 'constructor', 'toString'])
    t.equal(Object.getOwnPropertyDescriptor(result.session.data, '__proto__')?.value, '{"admin":true}')
    t.equal(({} as Record<string, unknown>).admin, undefined, 'nothing leaked into Object.prototype')
  })

  t.test('commit on a session that ended answers gone', async (t) => {
    const { sid, key } = await create({ idleTtl: 1000 })
    t.same(await store.commit({ sid, tokenKey: key, patch: { n: '2' }, rotate: null, now: t0 + 1000 }), { status: 'gone' })
    t.same(await store.commit({ sid: generateSessionId(), tokenKey: newKey(), patch: null, rotate: null, now: t0 }), { status: 'gone' })
  })

  t.test('rotation: new key live, old key in grace with a chain, then a reuse that revokes', async (t) => {
    const { sid, key } = await create()
    const next = newKey()
    const rotated = await store.commit({ sid, tokenKey: key, patch: { n: '2' }, rotate: { newKey: next, box: 'box-1', graceUntil: t0 + 2000 }, now: t0 })
    t.same(rotated, { status: 'ok', rotated: true, expiresAt: t0 + HOUR })
    const live = await resolve(next, t0 + 1)
    t.equal(live.status, 'live')
    const grace = await resolve(key, t0 + 1999)
    t.equal(grace.status, 'grace')
    if (grace.status === 'grace') {
      t.same(grace.chain, ['box-1'])
      t.equal(grace.session.sid, sid)
      t.equal(grace.session.data.n, '2', 'grace sees the committed data')
    }
    const reused = await resolve(key, t0 + 2000)
    t.same(reused, { status: 'reused', sid, sandbox: 'auth-active', revoked: true })
    t.same(await resolve(next, t0 + 2001), { status: 'none' }, 'the current token died with the session')
    t.same(await resolve(key, t0 + 2002), { status: 'none' }, 'and the replayed one is now simply unknown')
  })

  t.test('reuse with revokeOnReuse false rejects the old token only', async (t) => {
    const { sid, key } = await create({ userId: 'u9' })
    const next = newKey()
    await store.commit({ sid, tokenKey: key, patch: null, rotate: { newKey: next, box: 'b', graceUntil: t0 + 5 }, now: t0 })
    t.same(await resolve(key, t0 + 10, undefined, false), { status: 'reused', sid, sandbox: 'auth-active', userId: 'u9', revoked: false })
    t.equal((await resolve(next, t0 + 11)).status, 'live')
  })

  t.test('a rotated token of another sandbox is still recognised as reused', async (t) => {
    const { sid, key } = await create({ sandbox: 'otp-pending' })
    await store.commit({ sid, tokenKey: key, patch: null, rotate: { newKey: newKey(), box: 'b', graceUntil: t0 }, now: t0 })
    t.equal((await resolve(key, t0 + 1, 'auth-active', false)).status, 'reused')
  })

  t.test('rotating from a token that is no longer current does not rotate; the chain leads to the current token', async (t) => {
    const { sid, key } = await create()
    const b = newKey()
    const c = newKey()
    await store.commit({ sid, tokenKey: key, patch: null, rotate: { newKey: b, box: 'a→b', graceUntil: t0 + 2000 }, now: t0 })
    await store.commit({ sid, tokenKey: b, patch: null, rotate: { newKey: c, box: 'b→c', graceUntil: t0 + 2000 }, now: t0 + 1 })
    const late = await store.commit({ sid, tokenKey: key, patch: { late: '1' }, rotate: { newKey: newKey(), box: 'x', graceUntil: t0 + 2000 }, now: t0 + 2 })
    t.same(late, { status: 'ok', rotated: false, chain: ['a→b', 'b→c'], expiresAt: t0 + 2 + HOUR })
    const grace = await resolve(key, t0 + 3)
    t.equal(grace.status, 'grace')
    if (grace.status === 'grace') {
      t.same(grace.chain, ['a→b', 'b→c'])
      t.equal(grace.session.data.late, '1', 'the late request still saved its data')
    }
    t.equal((await resolve(c, t0 + 4)).status, 'live')
  })

  t.test(`only the last ${ROTATED_TOKENS_KEPT} rotated tokens are remembered`, async (t) => {
    const { sid, key } = await create()
    const keys = [key]
    for (let i = 0; i <= ROTATED_TOKENS_KEPT; i++) {
      const next = newKey()
      await store.commit({ sid, tokenKey: keys.at(-1)!, patch: null, rotate: { newKey: next, box: `b${i}`, graceUntil: t0 }, now: t0 })
      keys.push(next)
    }
    t.same(await resolve(keys[0]!, t0 + 1, undefined, false), { status: 'none' }, 'the oldest is forgotten')
    t.equal((await resolve(keys[1]!, t0 + 1, undefined, false)).status, 'reused')
    t.equal((await resolve(keys.at(-1)!, t0 + 1)).status, 'live')
  })

  t.test('migration moves a session, kills every earlier token, and happens once', async (t) => {
    const { sid, key } = await create({ sandbox: 'otp-pending', idleTtl: 60_000 })
    const rotatedTo = newKey()
    await store.commit({ sid, tokenKey: key, patch: null, rotate: { newKey: rotatedTo, box: 'b', graceUntil: t0 + 60_000 }, now: t0 })
    t.equal(await store.migrate({ sid, from: 'auth-active', to: 'auth-active', newKey: newKey(), data: null, idleTtl: HOUR, now: t0 + 1 }), false, 'not in that sandbox')
    const active = newKey()
    t.equal(await store.migrate({ sid, from: 'otp-pending', to: 'auth-active', newKey: active, data: { user: '"ada"', mfa: 'true' }, idleTtl: HOUR, userId: 'u1', now: t0 + 2 }), true)
    t.same(await resolve(key, t0 + 3), { status: 'none' }, 'the first token is dead')
    t.same(await resolve(rotatedTo, t0 + 3), { status: 'none' }, 'the token in grace is dead too: grace never crosses a migration')
    const result = await resolve(active, t0 + 3, 'auth-active')
    t.equal(result.status, 'live')
    if (result.status === 'live') {
      t.same({ ...result.session.data }, { user: '"ada"', mfa: 'true' })
      t.equal(result.session.idleTtl, HOUR)
      t.equal(result.session.userId, 'u1')
      t.equal(result.session.createdAt, t0, 'creation time, and so the absolute cap, is kept')
    }
    t.equal(await store.migrate({ sid, from: 'otp-pending', to: 'auth-active', newKey: newKey(), data: null, idleTtl: HOUR, now: t0 + 4 }), false, 'a second migration fails')
    t.same((await store.listUser('u1', t0 + 5)).map((info) => info.sid), [sid])
  })

  t.test('migration without data keeps it', async (t) => {
    const { sid } = await create({ sandbox: 'auth-active' })
    const next = newKey()
    t.equal(await store.migrate({ sid, from: 'auth-active', to: 'auth-active', newKey: next, data: null, idleTtl: HOUR, now: t0 }), true)
    const result = await resolve(next, t0)
    if (result.status === 'live') t.same({ ...result.session.data }, { user: '"ada"', n: '1' })
    else t.fail('not live')
  })

  t.test('destroy ends a session and all its tokens', async (t) => {
    const { sid, key } = await create()
    const next = newKey()
    await store.commit({ sid, tokenKey: key, patch: null, rotate: { newKey: next, box: 'b', graceUntil: t0 + 60_000 }, now: t0 })
    t.equal(await store.destroy(sid), true)
    t.equal(await store.destroy(sid), false)
    t.same(await resolve(key, t0 + 1), { status: 'none' })
    t.same(await resolve(next, t0 + 1), { status: 'none' })
  })

  t.test('user index: list, revoke all, revoke all but one', async (t) => {
    const a = await create({ userId: 'u1' })
    const b = await create({ userId: 'u1', sandbox: 'otp-pending' })
    const c = await create({ userId: 'u1', idleTtl: 1000 })
    const other = await create({ userId: 'u2' })
    const listed = await store.listUser('u1', t0 + 5000)
    t.same(listed.map((info) => info.sid).sort(), [a.sid, b.sid].sort(), 'expired sessions are not listed')
    const info = listed.find((entry) => entry.sid === b.sid)!
    t.same(info, { sid: b.sid, sandbox: 'otp-pending', userId: 'u1', createdAt: t0, lastSeenAt: t0, expiresAt: t0 + HOUR })
    t.equal(await store.revokeUser('u1', t0 + 5000, a.sid), 1, 'all but the current one')
    t.equal((await resolve(a.key, t0 + 5001)).status, 'live')
    t.same(await resolve(b.key, t0 + 5001), { status: 'none' })
    t.same(await resolve(c.key, t0 + 1), { status: 'none' }, 'the expired one is gone as well')
    t.equal(await store.revokeUser('u1', t0 + 5002), 1)
    t.same(await resolve(a.key, t0 + 5003), { status: 'none' })
    t.equal((await resolve(other.key, t0 + 5003)).status, 'live', 'other users are untouched')
    t.same(await store.listUser('nobody', t0), [])
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
    const { sid, key } = await create()
    const results = await Promise.all(Array.from({ length: 50 }, async (_, i) =>
      await store.commit({ sid, tokenKey: key, patch: { [`k${i}`]: String(i) }, rotate: { newKey: newKey(), box: `box-${i}`, graceUntil: t0 + 2000 }, now: t0 })))
    const winners = results.filter((r) => r.status === 'ok' && r.rotated)
    t.equal(winners.length, 1, 'exactly one rotation')
    const chains = new Set(results.map((r) => r.status === 'ok' && !r.rotated ? JSON.stringify(r.chain) : 'winner'))
    t.equal(chains.size, 2, 'all others got the same chain')
    const grace = await resolve(key, t0 + 1)
    if (grace.status !== 'grace') return t.fail('expected grace')
    for (let i = 0; i < 50; i++) t.equal(grace.session.data[`k${i}`], String(i))
  })

  t.test('parallel: one kvAdd, one kvTake and one migrate win', async (t) => {
    const adds = await Promise.all(Array.from({ length: 30 }, async (_, i) => await store.kvAdd('s', 'once', String(i), 1000, t0)))
    t.equal(adds.filter(Boolean).length, 1)
    await store.kvSet('s', 'code', 'c', 1000, t0)
    const takes = await Promise.all(Array.from({ length: 30 }, async () => await store.kvTake('s', 'code', t0)))
    t.equal(takes.filter((v) => v !== null).length, 1)
    const { sid } = await create({ sandbox: 'otp-pending' })
    const moves = await Promise.all(Array.from({ length: 30 }, async () =>
      await store.migrate({ sid, from: 'otp-pending', to: 'auth-active', newKey: newKey(), data: null, idleTtl: HOUR, now: t0 })))
    t.equal(moves.filter(Boolean).length, 1)
  })
}
