/**
 * Issue 12, items 6 and 7: cookie tossing and small leaks.
 *
 * - Two session cookies of one name (a sibling subdomain planted one): the first used to win, and the
 *   response wrote the attacker's rotated session over the victim's cookie. Now two different values
 *   are no session, nothing is written, and the event is logged; the same value twice is one cookie.
 * - The default name is `__Host-xems` whenever the cookie can carry it (secure, path /, no domain).
 * - A percent-encoded token used to be decoded by @fastify/cookie and accepted; now it is refused.
 * - Cookie and header both present: the header's session is answered by header only; it used to be
 *   written into the cookie too.
 * - A password typed into the user-name field was logged as `userId`; names that are no account are
 *   now logged as a keyed digest.
 */
import type { FastifyInstance } from 'fastify'
import t from 'tap'
import { hashPassword } from '../../lib/mfa/password.js'
import { buildApp, setCookieHeader, setCookieToken } from '../helpers.js'
import { buildMfaApp, post } from '../mfa-app.js'

/** Logs in twice (victim, attacker) and returns both tokens. */
async function twoSessions (app: FastifyInstance, name = 'xems'): Promise<{ victim: string, attacker: string }> {
  const victim = setCookieToken(await app.inject({ method: 'POST', url: '/login', payload: { data: { who: 'victim' }, userId: 'victim' } }), name)!
  const attacker = setCookieToken(await app.inject({ method: 'POST', url: '/login', payload: { data: { who: 'attacker' }, userId: 'attacker' } }), name)!
  return { victim, attacker }
}

t.test('two different session cookies are no session: nothing resolved, nothing written over the victim\'s cookie', async (t) => {
  const { app, logs } = await buildApp()
  t.teardown(async () => { await app.close() })
  const { victim, attacker } = await twoSessions(app)
  for (const order of [[attacker, victim], [victim, attacker]]) {
    const response = await app.inject({ url: '/me', headers: { cookie: `xems=${order[0]!}; xems=${order[1]!}` } })
    t.equal(response.statusCode, 401, 'no session resolves')
    t.equal(response.headers['set-cookie'], undefined, 'no cookie is written: the victim keeps theirs')
    const publicPage = await app.inject({ url: '/public', headers: { cookie: `other=1; xems=${order[0]!};xems=${order[1]!}` } })
    t.same(publicPage.json(), { sandbox: null }, 'on a public route too')
    t.equal(publicPage.headers['set-cookie'], undefined)
  }
  t.ok(logs.some((line) => line.includes('"xems":"duplicate-session-cookie"')), 'logged as duplicate-session-cookie')
  t.notOk(logs.some((line) => line.includes(victim) || line.includes(attacker)), 'without the tokens')
  const mine = await app.inject({ url: '/me', headers: { cookie: `xems=${victim}` } })
  t.equal(mine.statusCode, 200, 'the victim\'s session is intact')
  t.equal(mine.json().data.who, 'victim')
  const twice = await app.inject({ url: '/me', headers: { cookie: `xems=${setCookieToken(mine)!}; xems=${setCookieToken(mine)!}` } })
  t.equal(twice.statusCode, 200, 'the same value twice is one cookie')
})

t.test('the default cookie name is __Host-xems whenever the cookie can carry it', async (t) => {
  const cases: Array<[Record<string, unknown>, string]> = [
    [{}, '__Host-xems'],
    [{ secure: true, path: '/' }, '__Host-xems'],
    [{ path: '/app' }, '__Secure-xems'],
    [{ domain: 'example.com' }, '__Secure-xems'],
    [{ secure: false }, 'xems'],
    [{ name: 'sid', secure: true }, 'sid']
  ]
  for (const [cookie, name] of cases) {
    const { app } = await buildApp({ cookie })
    const response = await app.inject({ method: 'POST', url: '/login' })
    t.match(setCookieHeader(response), new RegExp(`^${name}=`), `${JSON.stringify(cookie)} → ${name}`)
    await app.close()
  }
})

t.test('a percent-encoded token cookie is refused, not decoded into a token', async (t) => {
  const { app } = await buildApp()
  t.teardown(async () => { await app.close() })
  const token = setCookieToken(await app.inject({ method: 'POST', url: '/login' }))!
  const encoded = `%${token.charCodeAt(0).toString(16).toUpperCase()}${token.slice(1)}`
  const response = await app.inject({ url: '/me', headers: { cookie: `xems=${encoded}` } })
  t.equal(response.statusCode, 401, 'no session')
  t.equal(response.headers['set-cookie'], undefined)
  const quoted = await app.inject({ url: '/me', headers: { cookie: `xems="${token}"` } })
  t.equal(quoted.statusCode, 401, 'a quoted one neither')
  t.equal((await app.inject({ url: '/me', headers: { cookie: `xems=${token}` } })).statusCode, 200, 'the token as issued still works')
})

t.test('cookie and header both present: the header wins and is answered by header only; the cookie is left alone', async (t) => {
  const { app } = await buildApp()
  t.teardown(async () => { await app.close() })
  const { victim: browser, attacker: api } = await twoSessions(app)
  const response = await app.inject({ url: '/me', headers: { cookie: `xems=${browser}`, 'x-xems-token': api } })
  t.equal(response.statusCode, 200)
  t.equal(response.json().data.who, 'attacker', 'the header session is used')
  t.ok(typeof response.headers['x-xems-token'] === 'string', 'its next token comes back in the header')
  t.equal(response.headers['set-cookie'], undefined, 'and is never written into the cookie')
  const logout = await app.inject({ method: 'POST', url: '/logout', headers: { cookie: `xems=${browser}`, 'x-xems-token': response.headers['x-xems-token'] as string } })
  t.equal(logout.headers['set-cookie'], undefined, 'ending the header session does not clear the cookie')
  const stillThere = await app.inject({ url: '/me', headers: { cookie: `xems=${browser}` } })
  t.equal(stillThere.statusCode, 200, 'the cookie session is untouched')
  t.equal(stillThere.json().data.who, 'victim')
})

t.test('a password typed into the user-name field never reaches the logs; accounts are still logged by id', async (t) => {
  const ctx = await buildMfaApp()
  t.teardown(async () => { await ctx.app.close() })
  ctx.users.set('ada', { passwordHash: await hashPassword('correct horse battery staple'), mfa: {} })
  const typedIntoName = 'S3cret-Pa55word!'
  t.equal((await post(ctx.app, '/login', { user: typedIntoName, password: 'ada' })).statusCode, 401)
  t.equal((await post(ctx.app, '/login', { user: 'ada', password: 'wrong' })).statusCode, 401)
  const failures = ctx.logs.filter((line) => line.includes('"xems":"auth-failure"')).map((line) => JSON.parse(line) as Record<string, unknown>)
  t.equal(failures.length, 2)
  t.notOk(ctx.logs.some((line) => line.includes(typedIntoName)), 'the name that is no account is not logged')
  t.match(failures[0], { userHash: /^[A-Za-z0-9_-]{16}$/ }, 'it is logged as a keyed digest')
  t.notOk('userId' in failures[0]!)
  t.match(failures[1], { userId: 'ada' }, 'an account is logged by its id')
})
