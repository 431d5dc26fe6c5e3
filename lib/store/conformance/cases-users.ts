/** Store conformance cases: destroy, the user index, device records, revocation, userLimit. */
import assert from 'node:assert/strict'
import { generateLocator, recordIdOf } from '../../session/token.js'
import { DEVICE_KEY, type LimitResult } from '../contract.js'
import { DAY, GRACE, HOUR, equal, newKey, same, type CaseTest } from './context.js'

export function registerUsersCases (test: CaseTest, t0: number): void {
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
}
