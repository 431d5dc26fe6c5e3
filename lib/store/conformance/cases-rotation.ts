/** Store conformance cases: rotation: grace, the unseen window, the theft signal, the record bound. */
import { MAX_PAST_TOKENS } from '../contract.js'
import { GRACE, HOUR, WINDOW, equal, newBox, newKey, same, type CaseTest } from './context.js'

export function registerRotationCases (test: CaseTest, t0: number): void {
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
    same(await resolve(id, key, t0 + 4999), { status: 'retired' }, 'retired, within its deadline')
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
}
