import t from 'tap'
import { buildExample } from '../example/server.js'

t.test('the example app: sign in, the token rotates on each request, sign out', async (t) => {
  const app = await buildExample()
  t.teardown(async () => { await app.close() })
  const page = await app.inject({ url: '/' })
  t.equal(page.statusCode, 200)
  t.match(page.body, /<form id="login">/)
  t.equal((await app.inject({ method: 'POST', url: '/api/login', payload: { name: '' } })).statusCode, 400)
  const login = await app.inject({ method: 'POST', url: '/api/login', payload: { name: 'Ada' } })
  t.equal(login.statusCode, 200)
  let token = login.cookies[0]!.value
  t.equal(login.cookies[0]!.httpOnly, true)
  for (let visit = 1; visit <= 3; visit++) {
    const me = await app.inject({ url: '/api/me', cookies: { xems: token } })
    t.equal(me.json().visits, visit)
    const next = me.cookies[0]!.value
    t.not(next, token, 'a new token on every request')
    token = next
  }
  const logout = await app.inject({ method: 'POST', url: '/api/logout', cookies: { xems: token } })
  t.equal(logout.cookies[0]!.value, '')
  t.equal((await app.inject({ url: '/api/me', cookies: { xems: token } })).statusCode, 401)
})
