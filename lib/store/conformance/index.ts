/**
 * The store conformance suite, published as `fastify-xems/conformance`: every SessionStore must pass it
 * unchanged. It runs under any test runner that takes (name, fn) (node:test, tap, mocha, vitest...):
 * each case gets a fresh store from your factory, asserts with node:assert, and cleans up.
 *
 *   import { test } from 'node:test'
 *   import { runStoreConformance } from 'fastify-xems/conformance'
 *   runStoreConformance(async () => ({ store: new MyStore(), cleanup: async () => {} }), { test })
 *
 * A store judges expiry by the `now` it is given (it may also expire data physically, as Redis does),
 * so the suite moves time by passing later `now` values instead of sleeping.
 */
import assert from 'node:assert/strict'
import { sealForTokenHolder } from '../../crypto/cipher.js'
import { generateLocator, recordIdOf, secretKeyOf, sessionTokenOf } from '../../session/token.js'
import { generateToken } from '../../crypto/random-token.js'
import { MAX_RETIRED_TOKENS } from '../rotation.js'
import { DEVICE_KEY, MAX_PAST_TOKENS, type CommitInput, type LimitResult, type SessionStore, type UserLimit } from '../contract.js'

export interface StoreUnderTest {
  store: SessionStore
  /** Called after the case, passed or failed: close the store, drop what it wrote. */
  cleanup: () => Promise<void>
}

/** A store factory: one fresh store per case. */
export type StoreFactory = () => Promise<StoreUnderTest>

export interface StoreConformanceOptions {
  /** Registers one case: node:test's `test`, tap's `t.test`, mocha's `it`, ... */
  test: (name: string, fn: () => Promise<void>) => unknown
}

/** What each case is given: its store and helpers that call it as the engine does. */
interface CaseContext {
  store: SessionStore
  create: (options?: {
    sandbox?: string
    idleTtl?: number
    absolute?: number
    userId?: string
    data?: Record<string, string>
    now?: number
  }) => Promise<{ id: string, key: string }>
  resolve: (
    id: string, key: string, now?: number, options?: { sandbox?: string, revoke?: boolean, grace?: number }
  ) => ReturnType<SessionStore['resolve']>
  /** `admittedAt`: when the request resolved its token (default: the commit's `now`); retiredAfter is it + the window. */
  commit: (input: Omit<CommitInput, 'rotate' | 'retiredAfter'> & {
    rotate?: string | null
    window?: number
    box?: string
    admittedAt?: number
  }) => ReturnType<SessionStore['commit']>
  rotateFrom: (id: string, key: string, now: number, box?: string) => Promise<string>
  migrate: (
    id: string, key: string,
    options: {
      from: string
      to: string
      newKey?: string
      data?: Record<string, string> | null
      userId?: string
      now?: number
      retiredUntil?: number
      userLimit?: UserLimit
    }
  ) => Promise<boolean | LimitResult>
}

const newKey = (): string => secretKeyOf(sessionTokenOf(generateLocator(), generateToken()))
/** A grace box as the engine makes them (the store treats it as opaque text). */
const newBox = (): string => sealForTokenHolder(generateToken(), generateToken())
const HOUR = 3_600_000
const DAY = 24 * HOUR
const GRACE = 2000
const WINDOW = 600_000
const equal = (actual: unknown, expected: unknown, message?: string): void => { assert.strictEqual(actual, expected, message) }
const same = (actual: unknown, expected: unknown, message?: string): void => { assert.deepStrictEqual(actual, expected, message) }

function contextOf (store: SessionStore, t0: number): CaseContext {
  async function create (options: {
    sandbox?: string
    idleTtl?: number
    absolute?: number
    userId?: string
    data?: Record<string, string>
    now?: number
  } = {}): Promise<{ id: string, key: string }> {
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
      id,
      tokenKey: key,
      now,
      gracePeriod: options.grace ?? GRACE,
      revokeOnReuse: options.revoke ?? true,
      ...(options.sandbox === undefined ? {} : { sandbox: options.sandbox })
    })
  const commit: CaseContext['commit'] = async (input) =>
    await store.commit({
      id: input.id,
      tokenKey: input.tokenKey,
      patch: input.patch,
      now: input.now,
      retiredAfter: (input.admittedAt ?? input.now) + WINDOW,
      rotate: input.rotate === undefined || input.rotate === null
        ? null
        : {
            newKey: input.rotate, box: input.box ?? newBox(), unseenWindow: input.window ?? WINDOW
          }
    })
  /** Rotates from `key` (presenting it first, as a request does) and returns the new key. */
  async function rotateFrom (id: string, key: string, now: number, box = newBox()): Promise<string> {
    equal((await resolve(id, key, now)).status, 'live', 'the rotating token is current')
    const next = newKey()
    const result = await commit({ id, tokenKey: key, patch: null, rotate: next, box, now })
    if (result.status !== 'ok' || !result.rotated) {
      throw new Error(`rotation from a current token did not happen: ${JSON.stringify(result)}`)
    }
    return next
  }
  const migrate = async (id: string, key: string, options: {
    from: string
    to: string
    newKey?: string
    data?: Record<string, string> | null
    userId?: string
    now?: number
    retiredUntil?: number
    userLimit?: UserLimit
  }) =>
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
      ...(options.userId === undefined ? {} : { userId: options.userId }),
      ...(options.userLimit === undefined ? {} : { userLimit: options.userLimit })
    })
  return { store, create, resolve, commit, rotateFrom, migrate }
}

/** Registers every case of the suite with `options.test`. */
export function runStoreConformance (makeStore: StoreFactory, options: StoreConformanceOptions): void {
  const t0 = Date.now()
  const test = (name: string, body: (context: CaseContext) => Promise<void>): void => {
    options.test(name, async () => {
      const { store, cleanup } = await makeStore()
      try {
        await body(contextOf(store, t0))
      } finally {
        await cleanup()
      }
    })
  }

  test('a created session resolves by its record id and token key, with its data, sandbox and user', async ({ create, resolve }) => {
    const { id, key } = await create({ userId: 'u1' })
    const result = await resolve(id, key, t0 + 10)
    equal(result.status, 'live')
    if (result.status !== 'live') return
    equal(result.session.id, id)
    equal(result.session.sandbox, 'auth-active')
    equal(result.session.userId, 'u1')
    same({ ...result.session.data }, { user: '"ada"', n: '1' })
    equal(result.session.createdAt, t0)
    equal(result.session.lastSeenAt, t0 + 10, 'resolving refreshes lastSeenAt')
    equal(result.session.absoluteExpiresAt, t0 + 5 * DAY)
  })

  test('an unknown record or another sandbox resolves to nothing; a wrong key of a known record is the theft signal', async ({
    create, resolve
  }) => {
    const { id, key } = await create({ sandbox: 'auth-pending' })
    same(await resolve(recordIdOf(generateLocator()), key), { status: 'none' })
    same(await resolve(id, key, t0, { sandbox: 'auth-active' }), { status: 'none' })
    equal((await resolve(id, key, t0, { sandbox: 'auth-pending' })).status, 'live')
    equal((await resolve(id, key, t0)).status, 'live', 'no sandbox given: any sandbox')
    same(await resolve(id, newKey(), t0 + 1, { revoke: false }), { status: 'reused', id, sandbox: 'auth-pending', revoked: false },
      'only a holder of one of its tokens knows the record: any other key is an earlier token')
    equal((await resolve(id, key, t0 + 2)).status, 'live', 'not revoked when told not to')
  })

  test('idle expiry is refreshed by use; the absolute cap is not', async ({ create, resolve }) => {
    const { id, key } = await create({ idleTtl: 1000, absolute: 2500 })
    equal((await resolve(id, key, t0 + 900)).status, 'live')
    equal((await resolve(id, key, t0 + 1800)).status, 'live', 'idle deadline moved by the last use')
    equal((await resolve(id, key, t0 + 2499)).status, 'live')
    same(await resolve(id, key, t0 + 2500), { status: 'none' }, 'absolute cap reached though used 700 ms ago')
    const idle = await create({ idleTtl: 1000 })
    same(await resolve(idle.id, idle.key, t0 + 1000), { status: 'none' }, 'idle for its whole ttl')
    same(await resolve(idle.id, idle.key, t0 + 10), { status: 'none' }, 'an expired session stays gone even if asked about earlier')
  })

  test('commit applies a patch of top-level keys and refreshes the session', async ({ create, resolve, commit }) => {
    const { id, key } = await create({ idleTtl: 1000 })
    const committed = await commit({ id, tokenKey: key, patch: { n: '2', cart: '["x"]', user: null }, now: t0 + 900 })
    same(committed, { status: 'ok', rotated: false, chain: [], expiresAt: t0 + 1900 })
    const result = await resolve(id, key, t0 + 1800)
    equal(result.status, 'live')
    if (result.status === 'live') same({ ...result.session.data }, { n: '2', cart: '["x"]' })
  })

  test('data keys that name Object.prototype members are plain keys', async ({ create, resolve, commit }) => {
    const { id, key } = await create({ data: {} })
    const patch = JSON.parse('{"__proto__":"{\\"admin\\":true}","constructor":"1","toString":"\\"x\\""}') as Record<string, string>
    await commit({ id, tokenKey: key, patch, now: t0 })
    const result = await resolve(id, key, t0 + 1)
    if (result.status !== 'live') return assert.fail('not live')
    same(Object.keys(result.session.data).sort(), ['__proto__', 'constructor', 'toString'])
    equal(Object.getOwnPropertyDescriptor(result.session.data, '__proto__')?.value, '{"admin":true}')
    equal(({} as Record<string, unknown>).admin, undefined, 'nothing leaked into Object.prototype')
  })

  test('commit on a session that ended answers gone', async ({ create, commit }) => {
    const { id, key } = await create({ idleTtl: 1000 })
    same(await commit({ id, tokenKey: key, patch: { n: '2' }, now: t0 + 1000 }), { status: 'gone' })
    same(await commit({ id: recordIdOf(generateLocator()), tokenKey: newKey(), patch: null, now: t0 }), { status: 'gone' })
  })

  test('a rotated token works until its successor is presented, then for the grace period, then it is the theft signal', async ({
    create, resolve, rotateFrom
  }) => {
    const { id, key } = await create({ userId: 'u1' })
    const box = newBox()
    const next = await rotateFrom(id, key, t0, box)
    for (const at of [t0 + 1, t0 + GRACE + 1, t0 + WINDOW / 2]) {
      const grace = await resolve(id, key, at)
      equal(grace.status, 'grace', `successor unseen: the old token still resolves ${at - t0} ms later`)
      if (grace.status === 'grace') same(grace.chain, [box], 'and leads to the current token')
    }
    const seenAt = t0 + WINDOW / 2 + 10
    equal((await resolve(id, next, seenAt)).status, 'live', 'the successor is presented')
    equal((await resolve(id, key, seenAt + GRACE - 1)).status, 'grace', 'grace for requests in flight')
    same(await resolve(id, key, seenAt + GRACE), { status: 'reused', id, sandbox: 'auth-active', userId: 'u1', revoked: true })
    same(await resolve(id, next, seenAt + GRACE + 1), { status: 'none' }, 'the current token died with the session')
  })

  test('the grace period starts when the successor is presented for the first time, as the resolve call says', async ({
    create, resolve, rotateFrom
  }) => {
    const { id, key } = await create()
    const next = await rotateFrom(id, key, t0)
    equal((await resolve(id, next, t0 + 100, { grace: 500 })).status, 'live')
    equal((await resolve(id, next, t0 + 300, { grace: 60_000 })).status, 'live', 'a later presentation does not extend it')
    equal((await resolve(id, key, t0 + 599)).status, 'grace')
    equal((await resolve(id, key, t0 + 600, { revoke: false })).status, 'reused')
  })

  test('an unseen successor keeps the old token working only for the window given at rotation', async ({ create, resolve, commit }) => {
    const { id, key } = await create()
    equal((await resolve(id, key, t0)).status, 'live')
    const next = newKey()
    same(
      await commit({ id, tokenKey: key, patch: null, rotate: next, window: 5000, now: t0 }),
      { status: 'ok', rotated: true, expiresAt: t0 + HOUR }
    )
    equal((await resolve(id, key, t0 + 4999)).status, 'grace')
    same(
      await resolve(id, key, t0 + 5000), { status: 'none' },
      'past the window: no session, and no theft signal (nobody presented the session\'s token since)'
    )
    same(await resolve(id, next, t0 + 5001), { status: 'none' }, 'and the session ended: the unpresented successor opens nothing either')
  })

  test('past its window, a rotated token is the theft signal once its successor was presented, even when the newest is unseen', async ({
    create, resolve, commit
  }) => {
    const { id, key } = await create()
    equal((await resolve(id, key, t0)).status, 'live')
    const next = newKey()
    equal((await commit({ id, tokenKey: key, patch: null, rotate: next, window: 5000, now: t0 })).status, 'ok')
    equal((await resolve(id, next, t0 + 1, { grace: 0 })).status, 'live', 'the successor presented')
    const last = newKey()
    equal((await commit({ id, tokenKey: next, patch: null, rotate: last, window: 5000, now: t0 + 1 })).status, 'ok')
    same(await resolve(id, key, t0 + 2, { revoke: false }), { status: 'reused', id, sandbox: 'auth-active', revoked: false },
      'not the token the latest rotation replaced: the theft signal')
    same(await resolve(id, next, t0 + 5001), { status: 'none' }, 'the one it replaced, past its window, the newest unseen: a quiet end')
    same(await resolve(id, last, t0 + 5002), { status: 'none' }, 'the session is gone')
  })

  test('a migration whose answer was lost: its retired token is "no session", then a quiet end, never the theft signal', async ({
    create, resolve, migrate
  }) => {
    const { id, key } = await create()
    const moved = newKey()
    equal(await migrate(id, key, { from: 'auth-active', to: 'auth-active', newKey: moved, retiredUntil: t0 + 5000 }), true)
    same(await resolve(id, key, t0 + 4999), { status: 'none' }, 'retired, within its deadline')
    same(await resolve(id, key, t0 + 5000), { status: 'none' }, 'past it, the new token never presented: no theft signal')
    same(await resolve(id, moved, t0 + 5001), { status: 'none' }, 'and the session ended')
  })

  test('reuse is recognised whatever sandbox the caller asks for', async ({ create, resolve, rotateFrom }) => {
    const { id, key } = await create({ sandbox: 'otp-pending' })
    const next = await rotateFrom(id, key, t0)
    await resolve(id, next, t0 + 1)
    equal((await resolve(id, key, t0 + GRACE + 2, { sandbox: 'auth-active', revoke: false })).status, 'reused')
  })

  test('a late commit with a rotated token does not rotate; it saves its data and learns the current token', async ({
    create, resolve, commit, rotateFrom
  }) => {
    const { id, key } = await create()
    const ab = newBox()
    const bc = newBox()
    const b = await rotateFrom(id, key, t0, ab)
    const c = await rotateFrom(id, b, t0 + 1, bc)
    const late = await commit({ id, tokenKey: key, patch: { late: '1' }, rotate: newKey(), now: t0 + 2 })
    same(late, { status: 'ok', rotated: false, chain: [ab, bc], expiresAt: t0 + 2 + HOUR })
    const grace = await resolve(id, key, t0 + 3)
    equal(grace.status, 'grace')
    if (grace.status === 'grace') {
      same(grace.chain, [ab, bc])
      equal(grace.session.data.late, '1', 'the late request saved its data')
    }
    equal((await resolve(id, c, t0 + 4)).status, 'live')
    const slow = await commit({ id, tokenKey: key, patch: { slow: '1' }, now: t0 + 4 + GRACE })
    same(slow, { status: 'ok', rotated: false, chain: [ab, bc], expiresAt: t0 + 4 + GRACE + HOUR },
      'a request admitted in time that commits after the grace period keeps its write and learns the current token')
  })

  test('no history bound: a token rotated a thousand times ago is still the theft signal', async ({ create, resolve, rotateFrom }) => {
    const { id, key } = await create()
    const keys = [key]
    let now = t0
    for (let i = 0; i < 1000; i++) {
      now += GRACE + 1
      keys.push(await rotateFrom(id, keys.at(-1)!, now))
    }
    now += GRACE + 1
    equal((await resolve(id, keys.at(-1)!, now)).status, 'live')
    equal((await resolve(id, keys[500]!, now + GRACE + 1, { revoke: false })).status, 'reused')
    same(await resolve(id, keys[0]!, now + GRACE + 2), { status: 'reused', id, sandbox: 'auth-active', revoked: true })
    same(await resolve(id, keys.at(-1)!, now + GRACE + 3), { status: 'none' }, 'revoked')
  })

  test(`at most ${MAX_PAST_TOKENS} rotated tokens within their window: further rotations wait, none is cut short`, async ({
    create, resolve, commit, rotateFrom
  }) => {
    const { id, key } = await create()
    const keys = [key]
    for (let i = 0; i < MAX_PAST_TOKENS; i++) keys.push(await rotateFrom(id, keys.at(-1)!, t0 + i))
    const current = keys.at(-1)!
    equal((await resolve(id, current, t0 + 100)).status, 'live')
    same(await commit({
      id, tokenKey: current, patch: null, rotate: newKey(), now: t0 + 101
    }), { status: 'ok', rotated: false, chain: [], expiresAt: t0 + 101 + HOUR }, 'the full record does not rotate')
    for (const old of keys.slice(0, -1)) {
      equal((await resolve(id, old, t0 + 102)).status, 'grace', 'every earlier token still within its window works')
    }
    const later = t0 + 100 + GRACE
    const next = newKey()
    same(await commit({
      id, tokenKey: current, patch: null, rotate: next, now: later
    }), { status: 'ok', rotated: true, expiresAt: later + HOUR }, 'once the grace of the older ones is over, rotation resumes')
    equal((await resolve(id, keys.at(-2)!, later + 1, { revoke: false })).status, 'reused')
  })

  test('migration moves a session, retires every earlier token, and happens once', async ({
    store, create, resolve, commit, rotateFrom, migrate
  }) => {
    const { id, key } = await create({ sandbox: 'otp-pending', idleTtl: 60_000 })
    const rotatedTo = await rotateFrom(id, key, t0)
    equal(await migrate(id, rotatedTo, { from: 'auth-active', to: 'auth-active', now: t0 + 1 }), false, 'not in that sandbox')
    equal(
      await migrate(id, newKey(), { from: 'otp-pending', to: 'auth-active', now: t0 + 1 }), false, 'not with a token the session never had'
    )
    const active = newKey()
    equal(await migrate(id, key, {
      from: 'otp-pending',
      to: 'auth-active',
      newKey: active,
      data: { user: '"ada"', mfa: 'true' },
      userId: 'u1',
      now: t0 + 2,
      retiredUntil: t0 + 5000
    }), true, 'a rotated token within its window may migrate')
    same(await resolve(id, key, t0 + 3), { status: 'none' }, 'the first token is retired: no session, and no theft signal')
    same(await resolve(id, rotatedTo, t0 + 3), { status: 'none' }, 'the token in its window too: grace never crosses a migration')
    const result = await resolve(id, active, t0 + 3, { sandbox: 'auth-active' })
    equal(result.status, 'live')
    if (result.status === 'live') {
      same({ ...result.session.data }, { user: '"ada"', mfa: 'true' })
      equal(result.session.idleTtl, HOUR)
      equal(result.session.userId, 'u1')
      equal(result.session.createdAt, t0, 'creation time, and so the absolute cap, is kept')
    }
    equal(
      await migrate(id, rotatedTo, { from: 'otp-pending', to: 'auth-active', now: t0 + 4 }), false,
      'a second migration with an old token fails'
    )
    same(await commit({
      id, tokenKey: rotatedTo, patch: { stale: '1' }, rotate: newKey(), now: t0 + 4
    }), { status: 'retired' },
    'a request that was in flight across the migration gets no token, and writes nothing')
    same((await store.listUser('u1', t0 + 5)).map((info) => info.id), [id])
    same(await resolve(id, key, t0 + 5000, { revoke: false }), {
      status: 'reused', id, sandbox: 'auth-active', userId: 'u1', revoked: false
    }, 'after its window a retired token is the theft signal like any other')
  })

  test('migrations in a row keep every retired token as "no session" within its deadline; retired tokens never hold rotation back', async ({
    create, resolve, rotateFrom, migrate
  }) => {
    const { id, key } = await create()
    const first = newKey()
    equal(await migrate(id, key, { from: 'auth-active', to: 'auth-active', newKey: first, retiredUntil: t0 + 5000 }), true)
    const second = newKey()
    equal(await migrate(id, first, { from: 'auth-active', to: 'auth-active', newKey: second, retiredUntil: t0 + 9000 }), true)
    same(await resolve(id, key, t0 + 4000), { status: 'none' }, 'retired by the first migration, within its own deadline')
    same(await resolve(id, first, t0 + 8000), { status: 'none' }, 'retired by the second')
    equal((await resolve(id, key, t0 + 5000, { revoke: false })).status, 'reused', 'each by its own deadline')
    const keys = [second]
    for (let i = 0; i < MAX_PAST_TOKENS; i++) keys.push(await rotateFrom(id, keys.at(-1)!, t0 + 10 + i))
    equal(keys.length, MAX_PAST_TOKENS + 1, `${MAX_PAST_TOKENS} rotations right after migrations: the retired tokens took no room`)
  })

  test('up to MAX_RETIRED_TOKENS retired tokens are "no session" within their deadline; one dropped beyond is the theft signal', async ({
    create, resolve, migrate
  }) => {
    // Migrations in a row (an app that regenerates on every step): the record keeps MAX_RETIRED_TOKENS
    // retired tokens; those dropped beyond it fail closed, the theft signal like any unknown token.
    const { id, key } = await create()
    const keys = [key]
    const extra = 3
    for (let i = 0; i < MAX_RETIRED_TOKENS + extra; i++) {
      const next = newKey()
      const options = { from: 'auth-active', to: 'auth-active', newKey: next, now: t0 + i, retiredUntil: t0 + 5000 }
      equal(await migrate(id, keys.at(-1)!, options), true)
      keys.push(next)
    }
    const current = keys.at(-1)!
    for (const [i, retired] of keys.slice(extra, -1).entries()) {
      same(await resolve(id, retired, t0 + 4000), { status: 'none' }, `kept retired token ${i}: no session`)
    }
    for (const dropped of keys.slice(0, extra)) {
      same(await resolve(id, dropped, t0 + 4000, { revoke: false }), {
        status: 'reused', id, sandbox: 'auth-active', revoked: false
      }, 'a dropped retired token is the theft signal (the bound fails closed)')
    }
    equal((await resolve(id, current, t0 + 4001)).status, 'live', 'the current token opens the session')
  })

  test('an older rotated token with a longer grace than a newer one still leads to the current token', async ({
    create, resolve, commit, rotateFrom
  }) => {
    const { id, key } = await create()
    const ab = newBox()
    const bc = newBox()
    const cd = newBox()
    const b = await rotateFrom(id, key, t0, ab)
    equal((await resolve(id, b, t0 + 1, { grace: 60_000 })).status, 'live', 'b presented: a gets a minute')
    const c = newKey()
    equal((await commit({ id, tokenKey: b, patch: null, rotate: c, box: bc, now: t0 + 1 })).status, 'ok')
    equal((await resolve(id, c, t0 + 2, { grace: 1000 })).status, 'live', 'c presented: b gets a second')
    const d = newKey()
    equal((await commit({ id, tokenKey: c, patch: null, rotate: d, box: cd, now: t0 + 2 })).status, 'ok')
    equal((await resolve(id, d, t0 + 3000)).status, 'live')
    same(
      await commit({ id, tokenKey: d, patch: null, rotate: newKey(), now: t0 + 3000 }).then((r) => r.status), 'ok',
      'a rotation after b expired'
    )
    equal((await resolve(id, b, t0 + 3001, { revoke: false })).status, 'reused', 'b is past its second')
    const late = await resolve(id, key, t0 + 3002)
    equal(late.status, 'grace', 'a is still within its minute')
    if (late.status === 'grace') same(late.chain.slice(0, 3), [ab, bc, cd], 'and its chain still passes through b')
  })

  test('a commit with a token retired by a migration writes nothing and answers retired', async ({
    store, create, resolve, commit, rotateFrom, migrate
  }) => {
    const { id, key } = await create({ sandbox: 'otp-pending', idleTtl: 60_000 })
    const rotated = await rotateFrom(id, key, t0)
    const active = newKey()
    equal(await migrate(id, rotated, {
      from: 'otp-pending', to: 'auth-active', newKey: active, userId: 'fx-u', now: t0 + 1, retiredUntil: t0 + 5000
    }), true)
    // The migrated session after the migration, as its new token resolves it.
    const before = await resolve(id, active, t0 + 2, { sandbox: 'auth-active' })
    if (before.status !== 'live') return assert.fail('the migrated session is live')
    for (const [tokenKey, what] of [[rotated, 'the token the migration replaced'], [key, 'an earlier rotated token']] as const) {
      same(await commit({ id, tokenKey, patch: { x: '"attacker"', user: null }, now: t0 + 3 }), { status: 'retired' }, what)
      same(await commit({ id, tokenKey, patch: { x: '"attacker"' }, rotate: newKey(), now: t0 + 4 }), { status: 'retired' },
        `${what}, asking to rotate`)
      same(await commit({ id, tokenKey, patch: null, now: t0 + 5 }), { status: 'retired' }, `${what}, a touch`)
    }
    same((await store.listUser('fx-u', t0 + 6)).map((info) => info.lastSeenAt), [t0 + 2], 'no refused commit refreshed lastSeenAt')
    const after = await resolve(id, active, t0 + 6, { sandbox: 'auth-active' })
    if (after.status !== 'live') return assert.fail('the migrated session is still live, by its new token')
    same({ ...after.session.data }, { ...before.session.data }, 'no patch reached the migrated session')
    equal(after.session.data.x, undefined)
    equal(after.session.userId, 'fx-u')
    same(await resolve(id, rotated, t0 + 7), { status: 'none' }, 'the retired token is still "no session" within its deadline')
    // The rotation state is unchanged: the new token is still current and rotates.
    const next = newKey()
    same(await commit({ id, tokenKey: active, patch: { ok: '1' }, rotate: next, now: t0 + 8 }),
      { status: 'ok', rotated: true, expiresAt: t0 + 8 + HOUR })
    equal((await resolve(id, next, t0 + 9, { sandbox: 'auth-active' })).status, 'live')
  })

  test('a commit with a token the session pruned while it ran saves its changes unless the session migrated since', async ({
    create, resolve, commit, rotateFrom, migrate
  }) => {
    // A slow request admitted with k0 at t0; meanwhile the client rotates on, and once k0 is past its
    // grace a rotation prunes it: the session no longer holds k0 when the slow request commits.
    async function pruned (): Promise<{ id: string, k0: string, current: string }> {
      const { id, key: k0 } = await create({ idleTtl: 600_000 })
      const k1 = await rotateFrom(id, k0, t0 + 1)
      const k2 = await rotateFrom(id, k1, t0 + 2)
      const current = await rotateFrom(id, k2, t0 + GRACE + 10)
      same(await resolve(id, k0, t0 + GRACE + 11, { revoke: false }), {
        status: 'reused', id, sandbox: 'auth-active', revoked: false
      }, 'k0 is pruned: presented by a new request, it is the theft signal')
      return { id, k0, current }
    }
    const a = await pruned()
    same(await commit({ id: a.id, tokenKey: a.k0, patch: { slow: '"saved"' }, admittedAt: t0, now: t0 + GRACE + 20 }),
      { status: 'ok', rotated: false, chain: null, expiresAt: t0 + GRACE + 20 + 600_000 },
      'no migration since its admission: an honest slow request, its changes are saved, no token learnt')
    const live = await resolve(a.id, a.current, t0 + GRACE + 21)
    if (live.status !== 'live') return assert.fail('the session lives')
    equal(live.session.data.slow, '"saved"')
    // A migration now: a request admitted before it, whose token the session no longer holds, may not write.
    equal(await migrate(a.id, a.current, { from: 'auth-active', to: 'auth-active', now: t0 + GRACE + 30 }), true)
    same(await commit({ id: a.id, tokenKey: a.k0, patch: { slow: '"attacker"' }, admittedAt: t0, now: t0 + GRACE + 40 }),
      { status: 'retired' }, 'the session migrated since its admission: nothing written')
    same(await commit({ id: a.id, tokenKey: newKey(), patch: { x: '"attacker"' }, admittedAt: t0, now: t0 + GRACE + 41 }),
      { status: 'retired' }, 'nor with a token the session never had')
    const b = await pruned()
    same(await commit({ id: b.id, tokenKey: b.k0, patch: { slow: '"late"' }, admittedAt: t0, now: t0 + WINDOW }),
      { status: 'retired' }, 'a request that outlived the unseen window cannot tell: nothing written')
    const after = await resolve(b.id, b.current, t0 + WINDOW + 1)
    if (after.status !== 'live') return assert.fail('that session lives too')
    equal(after.session.data.slow, undefined)
  })

  test('migration without data keeps it', async ({ create, resolve, migrate }) => {
    const { id, key } = await create({ sandbox: 'auth-active' })
    const next = newKey()
    equal(await migrate(id, key, { from: 'auth-active', to: 'auth-active', newKey: next }), true)
    const result = await resolve(id, next, t0)
    if (result.status === 'live') same({ ...result.session.data }, { user: '"ada"', n: '1' })
    else assert.fail('not live')
  })

  test('destroy ends a session and all its tokens', async ({ store, create, resolve, rotateFrom }) => {
    const { id, key } = await create()
    const next = await rotateFrom(id, key, t0)
    equal(await store.destroy(id), true)
    equal(await store.destroy(id), false)
    same(await resolve(id, key, t0 + 1), { status: 'none' })
    same(await resolve(id, next, t0 + 1), { status: 'none' })
  })

  test('user index: list, revoke all, revoke all but one', async ({ store, create, resolve }) => {
    const a = await create({ userId: 'u1' })
    const b = await create({ userId: 'u1', sandbox: 'otp-pending' })
    const c = await create({ userId: 'u1', idleTtl: 1000 })
    const other = await create({ userId: 'u2' })
    const listed = await store.listUser('u1', t0 + 5000)
    same(listed.map((info) => info.id).sort(), [a.id, b.id].sort(), 'expired sessions are not listed')
    const info = listed.find((entry) => entry.id === b.id)!
    same(info, { id: b.id, sandbox: 'otp-pending', userId: 'u1', createdAt: t0, lastSeenAt: t0, expiresAt: t0 + HOUR })
    equal(await store.revokeUser('u1', t0 + 5000, a.id), 1, 'all but the current one')
    equal((await resolve(a.id, a.key, t0 + 5001)).status, 'live')
    same(await resolve(b.id, b.key, t0 + 5001), { status: 'none' })
    same(await resolve(c.id, c.key, t0 + 1), { status: 'none' }, 'the expired one is gone as well')
    equal(await store.revokeUser('u1', t0 + 5002), 1)
    same(await resolve(a.id, a.key, t0 + 5003), { status: 'none' })
    equal((await resolve(other.id, other.key, t0 + 5003)).status, 'live', 'other users are untouched')
    same(await store.listUser('nobody', t0), [])
  })

  test('device record: listed with the session, updated by a commit patch, returned by a theft signal', async ({
    store, create, resolve, commit
  }) => {
    const device = JSON.stringify({
      userAgent: 'UA one', browser: 'Chrome', browserVersion: '1', os: 'Linux', type: 'desktop', ip: '10.0.0.1'
    })
    const a = await create({ userId: 'dev-u', data: { user: '"ada"', [DEVICE_KEY]: device } })
    const b = await create({ userId: 'dev-u' })
    const listed = await store.listUser('dev-u', t0 + 1)
    equal(listed.find((info) => info.id === a.id)?.device, device, 'the device text comes with the list')
    assert.ok(!('device' in listed.find((info) => info.id === b.id)!), 'a session without one has none')
    const moved = JSON.stringify({ ...JSON.parse(device), ip: '10.0.0.2' })
    await resolve(a.id, a.key, t0 + 2)
    const next = newKey()
    await commit({ id: a.id, tokenKey: a.key, patch: { [DEVICE_KEY]: moved }, rotate: next, now: t0 + 3 })
    equal((await store.listUser('dev-u', t0 + 4)).find((info) => info.id === a.id)?.device, moved, 'a commit patch updates it')
    await resolve(a.id, next, t0 + 5)
    const reused = await resolve(a.id, a.key, t0 + 5 + GRACE + 1)
    same(
      reused, { status: 'reused', id: a.id, sandbox: 'auth-active', userId: 'dev-u', revoked: true, device: moved },
      'the theft signal says who used the session last'
    )
  })

  test('revokeUserSession ends one live session of its user only', async ({ store, create, resolve }) => {
    const a = await create({ userId: 'one-u' })
    const b = await create({ userId: 'one-u' })
    const other = await create({ userId: 'two-u' })
    const short = await create({ userId: 'one-u', idleTtl: 1000 })
    equal(await store.revokeUserSession('one-u', other.id, t0 + 1), false, 'a session of another user is refused')
    equal((await resolve(other.id, other.key, t0 + 2)).status, 'live', '…and left alone')
    equal(await store.revokeUserSession('one-u', recordIdOf(generateLocator()), t0 + 1), false, 'no such session')
    equal(await store.revokeUserSession('one-u', short.id, t0 + 5000), false, 'an expired one does not count')
    equal(await store.revokeUserSession('one-u', b.id, t0 + 3), true)
    equal(await store.revokeUserSession('one-u', b.id, t0 + 4), false, 'only once')
    same(await resolve(b.id, b.key, t0 + 5), { status: 'none' })
    equal((await resolve(a.id, a.key, t0 + 5)).status, 'live', 'the others live on')
    same((await store.listUser('one-u', t0 + 5001)).map((info) => info.id), [a.id], 'the revoked and the expired ones are not listed')
    const c = await create({ userId: 'one-u', now: t0 + 7 })
    const racers = await Promise.all(Array.from({ length: 100 }, async () => await store.revokeUserSession('one-u', c.id, t0 + 8)))
    equal(racers.filter(Boolean).length, 1, 'of 100 parallel revocations exactly one ends it')
  })

  test('a session that gains a user by migration is listed and revoked with that user', async ({ store, create, resolve, migrate }) => {
    const { id, key } = await create({ sandbox: 'otp-pending' })
    const active = newKey()
    equal(await migrate(id, key, { from: 'otp-pending', to: 'auth-active', newKey: active, userId: 'u7' }), true)
    same((await store.listUser('u7', t0 + 1)).map((info) => info.id), [id])
    equal(await store.revokeUser('u7', t0 + 2), 1)
    same(await resolve(id, active, t0 + 3), { status: 'none' })
  })

  test('userLimit end-oldest: the least recently created session ends, its token answers none; the dead do not count', async ({
    store, resolve, migrate
  }) => {
    const limit = { max: 2, onLimit: 'end-oldest' } as const
    const made: Array<{ id: string, key: string, result: unknown }> = []
    const sign = async (now: number, userId = 'cap-u', idleTtl = HOUR): Promise<{ id: string, key: string, result: unknown }> => {
      const id = recordIdOf(generateLocator())
      const key = newKey()
      const result = await store.create({
        id, sandbox: 'auth-active', tokenKey: key, data: {}, now, idleTtl, absoluteExpiresAt: now + 5 * DAY, userId, userLimit: limit
      })
      const session = { id, key, result }
      made.push(session)
      return session
    }
    const a = await sign(t0)
    same(a.result, { status: 'admitted', ended: [] })
    const b = await sign(t0 + 1)
    same(b.result, { status: 'admitted', ended: [] })
    const c = await sign(t0 + 2)
    same(c.result, { status: 'admitted', ended: [a.id] }, 'the third ends the first')
    same(await resolve(a.id, a.key, t0 + 3), { status: 'none' }, 'the ended token answers none, not the theft signal')
    equal((await resolve(b.id, b.key, t0 + 3)).status, 'live')
    equal((await resolve(c.id, c.key, t0 + 3)).status, 'live')
    same((await store.listUser('cap-u', t0 + 4)).map((info) => info.id).sort(), [b.id, c.id].sort())
    const other = await sign(t0 + 5, 'cap-other')
    same(other.result, { status: 'admitted', ended: [] }, 'another user has a cap of their own')
    equal(await store.revokeUserSession('cap-u', b.id, t0 + 6), true)
    const d = await sign(t0 + 7)
    same(d.result, { status: 'admitted', ended: [] }, 'a revoked session does not count')
    const e = await sign(t0 + 8)
    same(e.result, { status: 'admitted', ended: [c.id] })
    // a session that gains the user by migration is counted and decided the same way
    const pending = await store.create({
      id: recordIdOf(generateLocator()),
      sandbox: 'otp-pending',
      tokenKey: newKey(),
      data: {},
      now: t0 + 9,
      idleTtl: HOUR,
      absoluteExpiresAt: t0 + 5 * DAY
    })
    equal(pending, undefined, 'without a userLimit, create answers nothing')
    const p = { id: recordIdOf(generateLocator()), key: newKey() }
    await store.create({
      id: p.id, sandbox: 'otp-pending', tokenKey: p.key, data: {}, now: t0 + 9, idleTtl: HOUR, absoluteExpiresAt: t0 + 5 * DAY
    })
    const active = newKey()
    same(
      await migrate(
        p.id, p.key, { from: 'otp-pending', to: 'auth-active', newKey: active, userId: 'cap-u', userLimit: limit, now: t0 + 10 }
      ),
      { status: 'admitted', ended: [d.id] }
    )
    same(await migrate(p.id, active, { from: 'auth-active', to: 'auth-active', userId: 'cap-u', userLimit: limit, now: t0 + 11 }),
      { status: 'admitted', ended: [] }, 'a session that already names the user is counted already')
    equal((await resolve(e.id, e.key, t0 + 12)).status, 'live')
    same(await resolve(d.id, d.key, t0 + 12), { status: 'none' })
    equal((await store.listUser('cap-u', t0 + 12)).length, 2)
    equal((await resolve(other.id, other.key, t0 + 12)).status, 'live')
  })

  test('userLimit refuse: nothing is written; expired, revoked and ended sessions do not count', async ({
    store, create, resolve, migrate
  }) => {
    const limit = { max: 2, onLimit: 'refuse' } as const
    const sign = async (now: number, idleTtl = HOUR): Promise<{ id: string, key: string, result: unknown }> => {
      const id = recordIdOf(generateLocator())
      const key = newKey()
      const result = await store.create({
        id,
        sandbox: 'auth-active',
        tokenKey: key,
        data: {},
        now,
        idleTtl,
        absoluteExpiresAt: now + 5 * DAY,
        userId: 'ref-u',
        userLimit: limit
      })
      return { id, key, result }
    }
    const a = await sign(t0)
    const b = await sign(t0 + 1, 1000)
    same([a.result, b.result], [{ status: 'admitted', ended: [] }, { status: 'admitted', ended: [] }])
    const c = await sign(t0 + 2)
    same(c.result, { status: 'refused' })
    same(await resolve(c.id, c.key, t0 + 3), { status: 'none' }, 'a refused session was never created')
    equal((await resolve(a.id, a.key, t0 + 3)).status, 'live', 'the others are left alone')
    equal((await store.listUser('ref-u', t0 + 3)).length, 2)
    // b expires by idleness (1s); a store may need up to a minute to be sure a missing record is gone
    const d = await sign(t0 + 61_000)
    same(d.result, { status: 'admitted', ended: [] }, 'an expired session does not count')
    same((await sign(t0 + 61_001)).result, { status: 'refused' })
    equal(await store.destroy(d.id), true)
    const e = await sign(t0 + 61_002)
    same(e.result, { status: 'admitted', ended: [] }, 'a destroyed session does not count')
    // a migration that would give the user one more session is refused and moves nothing
    const p = await create({ sandbox: 'otp-pending', now: t0 + 61_003 })
    same(
      await migrate(p.id, p.key, { from: 'otp-pending', to: 'auth-active', userId: 'ref-u', userLimit: limit, now: t0 + 61_004 }),
      { status: 'refused' }
    )
    equal(
      (await resolve(p.id, p.key, t0 + 61_005, { sandbox: 'otp-pending' })).status, 'live',
      'the refused session stays where it was, with its token'
    )
    equal(await store.revokeUser('ref-u', t0 + 61_006), 2)
    const f = await sign(t0 + 61_007)
    same(f.result, { status: 'admitted', ended: [] }, 'revoked sessions do not count')
  })

  test('userLimit: of 200 parallel sign-ins of one user exactly max sessions live, on end-oldest and refuse', async ({
    store, create, resolve, migrate
  }) => {
    for (const onLimit of ['end-oldest', 'refuse'] as const) {
      const userId = `par-${onLimit}`
      const limit = { max: 3, onLimit }
      const sessions = Array.from({ length: 200 }, () => ({ id: recordIdOf(generateLocator()), key: newKey() }))
      const results = await Promise.all(sessions.map(async ({ id, key }, i) =>
        await store.create({
          id,
          sandbox: 'auth-active',
          tokenKey: key,
          data: {},
          now: t0 + i % 7,
          idleTtl: HOUR,
          absoluteExpiresAt: t0 + 5 * DAY,
          userId,
          userLimit: limit
        }) as LimitResult))
      const states = await Promise.all(sessions.map(async ({ id, key }) => (await resolve(id, key, t0 + 10)).status))
      equal(states.filter((status) => status === 'live').length, 3, `${onLimit}: exactly 3 live`)
      equal(states.filter((status) => status !== 'live' && status !== 'none').length, 0, `${onLimit}: every other token answers none`)
      equal((await store.listUser(userId, t0 + 11)).length, 3, `${onLimit}: 3 listed`)
      if (onLimit === 'refuse') {
        equal(results.filter((result) => result.status === 'refused').length, 197, 'refuse: 197 refused')
        for (const [i, result] of results.entries()) {
          equal(states[i] === 'live', result.status === 'admitted', 'the admitted ones are the live ones')
        }
      } else {
        equal(results.filter((result) => result.status === 'refused').length, 0, 'end-oldest refuses none')
        const ended = results.flatMap((result) => result.status === 'admitted' ? result.ended : [])
        for (const id of ended) equal(states[sessions.findIndex((session) => session.id === id)], 'none', 'what a sign-in ended is ended')
      }
      // parallel migrations that give sessions the user are held to the same cap
      const pending = await Promise.all(Array.from({ length: 40 }, async () => await create({ sandbox: 'otp-pending', now: t0 + 12 })))
      const keys = pending.map(() => newKey())
      await Promise.all(pending.map(async ({ id, key }, i) =>
        await migrate(id, key, { from: 'otp-pending', to: 'auth-active', newKey: keys[i]!, userId, userLimit: limit, now: t0 + 13 })))
      const moved = await Promise.all(pending.map(async ({ id }, i) => (await resolve(id, keys[i]!, t0 + 14)).status))
      const before = await Promise.all(sessions.map(async ({ id, key }) => (await resolve(id, key, t0 + 14)).status))
      equal(
        moved.filter((status) => status === 'live').length + before.filter((status) => status === 'live').length, 3,
        `${onLimit}: still exactly 3 live after 40 parallel migrations`
      )
      equal((await store.listUser(userId, t0 + 15)).length, 3)
    }
  })

  test('values: set, get, delete, expire, and sandboxes are separate', async ({ store }) => {
    await store.kvSet('users-registry', 'ada', '{"name":"Ada"}', 1000, t0)
    equal(await store.kvGet('users-registry', 'ada', t0 + 999), '{"name":"Ada"}')
    equal(await store.kvGet('auth-active', 'ada', t0), null, 'other sandbox')
    equal(await store.kvGet('users-registry', 'ada', t0 + 1000), null, 'expired')
    await store.kvSet('users-registry', 'bob', '1', 1000, t0)
    equal(await store.kvDel('users-registry', 'bob'), true)
    equal(await store.kvDel('users-registry', 'bob'), false)
    equal(await store.kvGet('users-registry', 'bob', t0), null)
  })

  test('kvAdd sets once; kvTake gives a value once', async ({ store }) => {
    equal(await store.kvAdd('otp-pending', 'step:u1', '42', 1000, t0), true)
    equal(await store.kvAdd('otp-pending', 'step:u1', '43', 1000, t0 + 1), false)
    equal(await store.kvGet('otp-pending', 'step:u1', t0 + 2), '42')
    equal(await store.kvAdd('otp-pending', 'step:u1', '44', 1000, t0 + 1000), true, 'after expiry it can be set again')
    equal(await store.kvTake('otp-pending', 'step:u1', t0 + 1001), '44')
    equal(await store.kvTake('otp-pending', 'step:u1', t0 + 1001), null)
    await store.kvSet('otp-pending', 'old', '1', 10, t0)
    equal(await store.kvTake('otp-pending', 'old', t0 + 10), null, 'an expired value is not taken')
  })

  test('counters count in a fixed window and reset', async ({ store }) => {
    same(await store.increment('c:1', 1000, t0), { count: 1, resetAt: t0 + 1000 })
    same(await store.increment('c:1', 1000, t0 + 500), { count: 2, resetAt: t0 + 1000 })
    same(await store.increment('c:1', 1000, t0 + 1000), { count: 1, resetAt: t0 + 2000 }, 'a new window')
    await store.resetCounter('c:1')
    same(await store.increment('c:1', 1000, t0 + 1001), { count: 1, resetAt: t0 + 2001 })
  })

  test('parallel: one rotation wins, every other commit keeps its data and learns the current token', async ({
    create, resolve, commit
  }) => {
    const { id, key } = await create()
    await resolve(id, key, t0)
    const boxes = Array.from({ length: 50 }, newBox)
    const results = await Promise.all(boxes.map(async (box, i) =>
      await commit({ id, tokenKey: key, patch: { [`k${i}`]: String(i) }, rotate: newKey(), box, now: t0 })))
    const winners = results.filter((r) => r.status === 'ok' && r.rotated)
    equal(winners.length, 1, 'exactly one rotation')
    const winnerBox = boxes[results.findIndex((r) => r.status === 'ok' && r.rotated)]
    for (const r of results) {
      if (r.status === 'ok' && !r.rotated) same(r.chain, [winnerBox], 'every other request learns the winner\'s token')
    }
    const grace = await resolve(id, key, t0 + 1)
    if (grace.status !== 'grace') return assert.fail('expected grace')
    for (let i = 0; i < 50; i++) equal(grace.session.data[`k${i}`], String(i))
  })

  test('parallel: one kvAdd, one kvTake and one migrate win', async ({ store, create, migrate }) => {
    const adds = await Promise.all(Array.from({ length: 30 }, async (_, i) => await store.kvAdd('s', 'once', String(i), 1000, t0)))
    equal(adds.filter(Boolean).length, 1)
    await store.kvSet('s', 'code', 'c', 1000, t0)
    const takes = await Promise.all(Array.from({ length: 30 }, async () => await store.kvTake('s', 'code', t0)))
    equal(takes.filter((v) => v !== null).length, 1)
    const { id, key } = await create({ sandbox: 'otp-pending' })
    const moves = await Promise.all(
      Array.from({ length: 30 }, async () => await migrate(id, key, { from: 'otp-pending', to: 'auth-active' }))
    )
    equal(moves.filter(Boolean).length, 1)
    const regenerations = await Promise.all(
      Array.from({ length: 30 }, async () => await migrate(id, key, { from: 'auth-active', to: 'auth-active' }))
    )
    equal(regenerations.filter(Boolean).length, 0, 'the retired token cannot migrate again')
  })
}
