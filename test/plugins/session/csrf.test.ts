import t from 'tap'
import { buildApp, login } from '../../helpers.js'

type Headers = Record<string, string>

t.test('a state change carrying the session cookie from another site is refused with 403 before the handler', async (t) => {
  const { app } = await buildApp()
  t.teardown(async () => { await app.close() })
  let handled = 0
  app.addHook('preHandler', async () => { handled++ })
  const token = await login(app)
  const send = async (method: 'GET' | 'POST' | 'PUT' | 'DELETE' | 'PATCH', headers: Headers, cookie = true) =>
    await app.inject({
      method,
      url: '/me',
      headers: { host: 'app.example', ...headers },
      ...(cookie ? { cookies: { xems: token } } : {}),
      ...(method === 'GET' ? {} : { payload: { key: 'k', value: 1 } })
    })
  const cases: Array<[string, 'GET' | 'POST' | 'PUT' | 'DELETE' | 'PATCH', Headers, number, boolean?]> = [
    ['cross-site POST', 'POST', { 'sec-fetch-site': 'cross-site' }, 403],
    ['cross-site PUT', 'PUT', { 'sec-fetch-site': 'cross-site' }, 403],
    ['cross-site DELETE', 'DELETE', { 'sec-fetch-site': 'cross-site' }, 403],
    ['same-site POST (a sibling subdomain), refused by default', 'POST', { 'sec-fetch-site': 'same-site' }, 403],
    ['same-origin POST', 'POST', { 'sec-fetch-site': 'same-origin', origin: 'http://app.example' }, 200],
    ['user-initiated (none) POST', 'POST', { 'sec-fetch-site': 'none' }, 200],
    ['cross-site GET (a link) is not a state change', 'GET', { 'sec-fetch-site': 'cross-site' }, 200],
    ['no Fetch Metadata, Origin of another host', 'POST', { origin: 'http://evil.example' }, 403],
    ['no Fetch Metadata, Origin of another port', 'POST', { origin: 'http://app.example:8080' }, 403],
    ['no Fetch Metadata, opaque Origin null', 'POST', { origin: 'null' }, 403],
    ['no Fetch Metadata, junk Origin', 'POST', { origin: 'not a url' }, 403],
    ['no Fetch Metadata, same Origin', 'POST', { origin: 'http://app.example' }, 200],
    ['no Fetch Metadata, default port spelled out in Host', 'POST', { origin: 'http://app.example', host: 'app.example:80' }, 200],
    ['neither header (curl, a server)', 'POST', {}, 200],
    ['cross-site without the cookie: nothing to ride on', 'POST', { 'sec-fetch-site': 'cross-site' }, 401, false]
  ]
  for (const [name, method, headers, status, cookie] of cases) {
    const before = handled
    const response = await send(method, headers, cookie ?? true)
    if (method !== 'POST' && status === 200) {
      t.not(response.statusCode, 403, name)
      continue
    }
    t.equal(response.statusCode, status, name)
    if (status === 403) {
      t.equal(response.json().code, 'FST_XEMS_CSRF', `${name}: stable code`)
      t.equal(handled, before, `${name}: no handler ran`)
    }
  }
})

t.test('csrf: { allowSameSite: true } lets a sibling subdomain through; csrf: false turns the check off', async (t) => {
  const relaxed = await buildApp({ csrf: { allowSameSite: true } })
  t.teardown(async () => { await relaxed.app.close() })
  const token = await login(relaxed.app)
  const post = async (app: typeof relaxed.app, token: string, site: string) =>
    await app.inject({ method: 'POST', url: '/me', headers: { 'sec-fetch-site': site }, cookies: { xems: token }, payload: { key: 'k', value: 1 } })
  t.equal((await post(relaxed.app, token, 'same-site')).statusCode, 200)
  t.equal((await post(relaxed.app, token, 'cross-site')).statusCode, 403)
  const off = await buildApp({ csrf: false })
  t.teardown(async () => { await off.app.close() })
  const other = await login(off.app)
  t.equal((await post(off.app, other, 'cross-site')).statusCode, 200)
  await t.rejects(buildApp({ csrf: { allowSameSite: 'yes' as unknown as boolean } }), { code: 'FST_XEMS_BAD_OPTION' })
})

t.test('header-transport clients are not concerned: a cross-origin API call with the token header passes', async (t) => {
  const { app } = await buildApp()
  t.teardown(async () => { await app.close() })
  const response = await app.inject({ method: 'POST', url: '/login', headers: { 'x-xems-token': '', 'sec-fetch-site': 'cross-site' } })
  t.equal(response.statusCode, 200)
  const token = response.headers['x-xems-token'] as string
  const call = await app.inject({ method: 'POST', url: '/me', headers: { 'x-xems-token': token, 'sec-fetch-site': 'cross-site' }, payload: { key: 'k', value: 1 } })
  t.equal(call.statusCode, 200)
})
