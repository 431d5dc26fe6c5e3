import Fastify from 'fastify'
import t from 'tap'
import { MemoryStore, xemsSession, type XemsSessionOptions } from '../../../index.js'
import { engineOf } from '../../../plugins/session/engine-access.js'

async function registerWith (options: XemsSessionOptions): Promise<unknown> {
  const app = Fastify()
  try {
    await app.register(xemsSession, options)
    await app.ready()
    return null
  } catch (err) {
    return err
  } finally {
    await app.close()
  }
}

const cases: Array<[string, XemsSessionOptions, string, RegExp]> = [
  ['a bad duration', { ttl: '1 hour' as never }, 'FST_XEMS_BAD_DURATION', /option "ttl"/],
  ['a zero ttl', { ttl: 0 }, 'FST_XEMS_BAD_DURATION', /option "ttl" must be a duration longer than zero/],
  ['a bad gracePeriod', { gracePeriod: -1 }, 'FST_XEMS_BAD_DURATION', /option "gracePeriod"/],
  ['a gracePeriod over a minute', { gracePeriod: '2m' }, 'FST_XEMS_BAD_OPTION', /option "gracePeriod" must be at most 1 minute/],
  ['maxAge over 5 days', { maxAge: '6d' }, 'FST_XEMS_BAD_OPTION', /option "maxAge" must be at most 5 days/],
  ['a ttl over maxAge', { ttl: '2d', maxAge: '1d' }, 'FST_XEMS_BAD_OPTION', /option "ttl" must not exceed maxAge/],
  ['a sandbox name with a space', { sandbox: 'auth active' }, 'FST_XEMS_BAD_SANDBOX', /option "sandbox" must be a sandbox name/],
  ['a sandbox name too long', { sandbox: 'a'.repeat(65) }, 'FST_XEMS_BAD_SANDBOX', /\[A-Za-z0-9_:-\]/],
  ['a bad sandboxes entry', { sandboxes: { 'bad/name': { ttl: '1m' } } }, 'FST_XEMS_BAD_SANDBOX', /option "sandboxes.bad\/name"/],
  ['a bad sandbox ttl', { sandboxes: { 'otp-pending': { ttl: '1y' as never } } }, 'FST_XEMS_BAD_DURATION', /option "sandboxes.otp-pending.ttl"/],
  ['a bad onReuse', { onReuse: 'ignore' as never }, 'FST_XEMS_BAD_OPTION', /option "onReuse"/],
  ['httpOnly off', { cookie: { httpOnly: false } as never }, 'FST_XEMS_BAD_OPTION', /option "cookie.httpOnly" cannot be turned off/],
  ['a bad cookie name', { cookie: { name: 'my cookie' } }, 'FST_XEMS_BAD_OPTION', /option "cookie.name"/],
  ['__Host- without secure', { cookie: { name: '__Host-xems', secure: false } }, 'FST_XEMS_BAD_OPTION', /__Host- prefix requires secure/],
  ['__Host- with a domain', { cookie: { name: '__Host-xems', domain: 'example.com' } }, 'FST_XEMS_BAD_OPTION', /__Host- prefix requires/],
  ['__Host- with a path', { cookie: { name: '__Host-xems', path: '/app' } }, 'FST_XEMS_BAD_OPTION', /__Host- prefix requires/],
  ['__Secure- without secure', { cookie: { name: '__Secure-xems', secure: false } }, 'FST_XEMS_BAD_OPTION', /__Secure- prefix requires secure/],
  ['SameSite=None without secure', { cookie: { sameSite: 'none', secure: false } }, 'FST_XEMS_BAD_OPTION', /option "cookie.sameSite" 'none' requires cookie.secure/],
  ['a bad sameSite', { cookie: { sameSite: 'loose' as never } }, 'FST_XEMS_BAD_OPTION', /option "cookie.sameSite"/],
  ['a bad path', { cookie: { path: 'app' } }, 'FST_XEMS_BAD_OPTION', /option "cookie.path"/],
  ['a bad domain', { cookie: { domain: 'exa mple.com' } }, 'FST_XEMS_BAD_OPTION', /option "cookie.domain"/],
  ['a bad header', { header: 'x token' }, 'FST_XEMS_BAD_OPTION', /option "header"/],
  ['a reserved header', { header: 'Authorization' }, 'FST_XEMS_BAD_OPTION', /option "header" cannot be "authorization"/],
  ['no transport', { cookie: false, header: false }, 'FST_XEMS_BAD_OPTION', /option "cookie" and option "header" cannot both be false/],
  ['a bad autoRotation', { autoRotation: 'yes' as never }, 'FST_XEMS_BAD_OPTION', /option "autoRotation"/],
  ['a bad createLimit.max', { createLimit: { max: 0, window: '1m' } }, 'FST_XEMS_BAD_OPTION', /option "createLimit.max"/],
  ['a bad createLimit.window', { createLimit: { max: 5, window: 'soon' as never } }, 'FST_XEMS_BAD_DURATION', /option "createLimit.window"/],
  ['a store without the contract', { store: { get: () => null } as never }, 'FST_XEMS_BAD_OPTION', /option "store" must implement the SessionStore contract; missing: create, resolve/]
]

for (const [what, options, code, message] of cases) {
  t.test(`register fails on ${what}`, async (t) => {
    const err = await registerWith(options) as { code?: string, message?: string } | null
    t.ok(err, 'register failed')
    t.equal(err?.code, code)
    t.match(err?.message, message)
  })
}

t.test('good options register, including __Host- and a shared store', async (t) => {
  const store = new MemoryStore()
  t.teardown(async () => { await store.close() })
  t.equal(await registerWith({ cookie: { name: '__Host-xems' } }), null)
  t.equal(await registerWith({ store, sandbox: 'app:main', ttl: 1000, maxAge: '5d', gracePeriod: 0, onReuse: 'reject', createLimit: false }), null)
  t.equal(await registerWith({ cookie: { domain: 'example.com', path: '/app', sameSite: 'strict' } }), null)
})

t.test('a store passed in is not closed with the app; the default one is', async (t) => {
  const store = new MemoryStore()
  const app = Fastify()
  await app.register(xemsSession, { store })
  await app.close()
  await t.resolves(store.kvSet('s', 'k', 'v', 1000, Date.now()), 'still open')
  await store.close()
  const own = Fastify()
  await own.register(xemsSession)
  await own.ready()
  const engineStore = engineOf(own).store
  await own.close()
  await t.rejects(engineStore.kvGet('s', 'k', Date.now()), { code: 'FST_XEMS_STORE_CLOSED' })
})

t.test('a store that cannot start (a vault under another secret) fails register, not the first request', async (t) => {
  const { mkdtemp, rm } = await import('node:fs/promises')
  const { tmpdir } = await import('node:os')
  const { join } = await import('node:path')
  const { randomBytes } = await import('node:crypto')
  const dir = await mkdtemp(join(tmpdir(), 'xems-register-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  const first = await MemoryStore.open({ persistence: { path: dir, secret: randomBytes(32) } })
  await first.kvSet('s', 'k', '1', 60_000, Date.now())
  await first.close()
  const wrong = new MemoryStore({ persistence: { path: dir, secret: randomBytes(32) } })
  const err = await registerWith({ store: wrong }) as { code?: string } | null
  t.equal(err?.code, 'FST_XEMS_WRONG_SECRET')
  await wrong.close()
})
