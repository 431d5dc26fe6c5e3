/** Store conformance cases: migrations, retired tokens, and what a commit with a retired or pruned token may write. */
import assert from 'node:assert/strict'
import { MAX_RETIRED_TOKENS } from '../rotation.js'
import { MAX_PAST_TOKENS } from '../contract.js'
import { GRACE, HOUR, equal, newBox, newKey, same, type CaseTest } from './context.js'

export function registerMigrationCases (test: CaseTest, t0: number): void {
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
    same(await resolve(id, key, t0 + 3), { status: 'retired' }, 'the first token is retired: no session, and no theft signal')
    same(await resolve(id, rotatedTo, t0 + 3), { status: 'retired' }, 'the token in its window too: grace never crosses a migration')
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
    same(await resolve(id, key, t0 + 4000), { status: 'retired' }, 'retired by the first migration, within its own deadline')
    same(await resolve(id, first, t0 + 8000), { status: 'retired' }, 'retired by the second')
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
      same(await resolve(id, retired, t0 + 4000), { status: 'retired' }, `kept retired token ${i}: no session`)
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
    same(await resolve(id, rotated, t0 + 7), { status: 'retired' }, 'the retired token is still "no session" within its deadline')
    // The rotation state is unchanged: the new token is still current and rotates.
    const next = newKey()
    same(await commit({ id, tokenKey: active, patch: { ok: '1' }, rotate: next, now: t0 + 8 }),
      { status: 'ok', rotated: true, expiresAt: t0 + 8 + HOUR })
    equal((await resolve(id, next, t0 + 9, { sandbox: 'auth-active' })).status, 'live')
  })

  test('a commit with a token the session pruned while it ran saves its changes unless the session migrated since', async ({
    create, resolve, commit, rotateFrom, migrate
  }) => {
    // A slow request admitted with k0 (the session had had `migrations` migrations then); meanwhile the
    // client rotates on, and once k0 is past its grace a rotation prunes it: the session no longer holds
    // k0 when the slow request commits.
    async function pruned (): Promise<{ id: string, k0: string, current: string, migrations: number | undefined }> {
      const { id, key: k0 } = await create({ idleTtl: 600_000 })
      const admitted = await resolve(id, k0, t0)
      if (admitted.status !== 'live') return assert.fail('the new session resolves')
      const k1 = await rotateFrom(id, k0, t0 + 1)
      const k2 = await rotateFrom(id, k1, t0 + 2)
      const current = await rotateFrom(id, k2, t0 + GRACE + 10)
      same(await resolve(id, k0, t0 + GRACE + 11, { revoke: false }), {
        status: 'reused', id, sandbox: 'auth-active', revoked: false
      }, 'k0 is pruned: presented by a new request, it is the theft signal')
      return { id, k0, current, migrations: admitted.session.migrations }
    }
    const a = await pruned()
    equal(a.migrations ?? 0, 0, 'a new session has had no migration')
    same(await commit({ id: a.id, tokenKey: a.k0, patch: { slow: '"saved"' }, migrations: a.migrations ?? 0, now: t0 + GRACE + 20 }),
      { status: 'ok', rotated: false, chain: null, expiresAt: t0 + GRACE + 20 + 600_000 },
      'no migration since its admission: an honest slow request, its changes are saved, no token learnt')
    const live = await resolve(a.id, a.current, t0 + GRACE + 21)
    if (live.status !== 'live') return assert.fail('the session lives')
    equal(live.session.data.slow, '"saved"')
    // A migration now: a request admitted before it, whose token the session no longer holds, may not write.
    equal(await migrate(a.id, a.current, { from: 'auth-active', to: 'auth-active', now: t0 + GRACE + 30 }), true)
    same(await commit({ id: a.id, tokenKey: a.k0, patch: { slow: '"attacker"' }, migrations: a.migrations ?? 0, now: t0 + GRACE + 40 }),
      { status: 'retired' }, 'the session migrated since its admission: nothing written')
    same(await commit({ id: a.id, tokenKey: newKey(), patch: { x: '"attacker"' }, migrations: a.migrations ?? 0, now: t0 + GRACE + 41 }),
      { status: 'retired' }, 'nor with a token the session never had')
    const b = await pruned()
    same(await commit({ id: b.id, tokenKey: b.k0, patch: { slow: '"late"' }, now: t0 + GRACE + 20 }),
      { status: 'retired' }, 'a commit that gives no migration count: a token the session no longer holds writes nothing')
    const after = await resolve(b.id, b.current, t0 + GRACE + 21)
    if (after.status !== 'live') return assert.fail('that session lives too')
    equal(after.session.data.slow, undefined)
  })

  test('a logout (destroy with the presented token) by a request that lost to a migration ends nothing, and says so', async ({
    store, create, resolve, migrate
  }) => {
    const { id, key } = await create()
    const moved = newKey()
    equal(await migrate(id, key, { from: 'auth-active', to: 'auth-active', newKey: moved, now: t0 + 1 }), true)
    equal(await store.destroy(id, { tokenKey: key, migrations: 0 }), 'retired', 'the retired token ends nothing')
    equal(await store.destroy(id, { tokenKey: newKey(), migrations: 0 }), 'retired', 'nor a token it no longer holds, after a migration')
    equal(await store.destroy(id, { tokenKey: newKey() }), 'retired', 'nor one with no migration count')
    equal((await resolve(id, moved, t0 + 2)).status, 'live', 'the migrated session lives')
    equal(await store.destroy(id, { tokenKey: moved, migrations: 1 }), true, 'its own token ends it')
    same(await resolve(id, moved, t0 + 3), { status: 'none' })
    equal(await store.destroy(id, { tokenKey: moved, migrations: 1 }), false, 'and then there is nothing to end: false, not retired')
    const late = await create({ absolute: 300 })
    equal(await migrate(late.id, late.key, { from: 'auth-active', to: 'auth-active', newKey: newKey(), now: t0 + 1 }), true)
    equal(await store.destroy(late.id, { tokenKey: late.key, migrations: 0, now: t0 + 300 }), false,
      'a session past its deadline by the request\'s clock is no session (false), whatever the token')
  })

  test('migration without data keeps it', async ({ create, resolve, migrate }) => {
    const { id, key } = await create({ sandbox: 'auth-active' })
    const next = newKey()
    equal(await migrate(id, key, { from: 'auth-active', to: 'auth-active', newKey: next }), true)
    const result = await resolve(id, next, t0)
    if (result.status === 'live') same({ ...result.session.data }, { user: '"ada"', n: '1' })
    else assert.fail('not live')
  })
}
