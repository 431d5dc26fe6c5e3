/** Store conformance cases: created sessions, expiry, commits of data. */
import assert from 'node:assert/strict'
import { generateLocator, recordIdOf } from '../../session/token.js'
import { DAY, equal, newKey, same, type CaseTest } from './context.js'

export function registerSessionsCases (test: CaseTest, t0: number): void {
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
}
