/** Store conformance cases: values, counters, and races. */
import assert from 'node:assert/strict'
import { equal, newBox, newKey, same, type CaseTest } from './context.js'

export function registerValuesCases (test: CaseTest, t0: number): void {
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
