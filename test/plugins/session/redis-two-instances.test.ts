/**
 * Two Fastify apps (two processes' worth: separate clients and engines) sharing one Redis through
 * RedisStore: tokens rotated by one are accepted by the other, a replayed earlier token is caught by
 * either, "log out everywhere" reaches sessions created on both, and concurrent writes through both keep
 * every key. Also: a store whose Redis is down answers 503, not 500. Without Redis the shared-Redis tests
 * skip, unless CI is set: then they fail.
 */
import { randomBytes } from 'node:crypto'
import Fastify, { type FastifyInstance, type LightMyRequestResponse } from 'fastify'
import { Redis } from 'ioredis'
import t from 'tap'
import { xemsSession } from '../../../index.js'
import type { Duration } from '../../../lib/duration.js'
import { RedisStore } from '../../../lib/store/redis/redis-store.js'
import { generateLocator, sessionTokenOf } from '../../../lib/session/token.js'
import { generateToken } from '../../../lib/crypto/random-token.js'

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'
const IN_CI = process.env.CI !== undefined && process.env.CI !== '' && process.env.CI !== 'false' && process.env.CI !== '0'

async function buildApp (store: RedisStore, gracePeriod: Duration = '10s'): Promise<FastifyInstance> {
  const app = Fastify()
  // A generous grace by default: the 200-request burst must finish within it even on a slow CI machine.
  await app.register(xemsSession, { store, cookie: { secure: false }, gracePeriod })
  app.post<{ Querystring: { user?: string } }>('/login', async (request, reply) => {
    await reply.xLink({ owner: 'ada' }, request.query.user === undefined ? {} : { userId: request.query.user })
    return { ok: true }
  })
  app.get('/me', { preHandler: app.xems.requireSession() }, async (request) => ({ data: request.session!.data }))
  app.post<{ Params: { i: string } }>('/write/:i', { preHandler: app.xems.requireSession() }, async (request) => {
    request.session!.data[`k${request.params.i}`] = Number(request.params.i)
    return { ok: true }
  })
  return app
}

function cookieOf (response: LightMyRequestResponse): string | undefined {
  return response.cookies.find((cookie) => cookie.name === 'xems')?.value
}

async function get (app: FastifyInstance, token: string): Promise<LightMyRequestResponse> {
  return await app.inject({ method: 'GET', url: '/me', cookies: { xems: token } })
}

t.test('a store whose Redis is down answers 503 FST_XEMS_STORE_UNAVAILABLE, not 500', async (t) => {
  const dead = new Redis({ host: '127.0.0.1', port: 1, enableOfflineQueue: false, maxRetriesPerRequest: 0, retryStrategy: () => 1000 })
  dead.on('error', () => {})
  t.teardown(() => { dead.disconnect() })
  const app = await buildApp(new RedisStore({ client: dead, secret: randomBytes(32) }))
  t.teardown(async () => { await app.close() })
  const started = Date.now()
  // A well-formed token of a session nobody knows: it has to ask the store (junk never does).
  const response = await get(app, sessionTokenOf(generateLocator(), generateToken()))
  t.equal(response.statusCode, 503)
  t.equal(response.json().code, 'FST_XEMS_STORE_UNAVAILABLE')
  t.equal(cookieOf(response), undefined, 'the cookie is left alone: an outage logs nobody out')
  t.ok(Date.now() - started < 1000, 'promptly')
  t.equal((await app.inject({ method: 'POST', url: '/login' })).statusCode, 503, 'opening a session fails the same way')
})

const probe = new Redis(REDIS_URL, { lazyConnect: true, connectTimeout: 2000, maxRetriesPerRequest: 1, retryStrategy: () => null })
probe.on('error', () => {})
const unreachable = await probe.connect().then(() => null, (err: Error) => `Redis is not reachable at ${REDIS_URL} (${err.message})`)
probe.disconnect()

if (unreachable !== null) {
  if (IN_CI) t.fail(`${unreachable}: CI is set, so the two-instance tests must run (start Redis or set REDIS_URL)`)
  else t.test('two instances on one Redis', { skip: `${unreachable}: start Redis or set REDIS_URL` }, async () => {})
} else {
  t.test('two instances on one Redis', async (t) => {
    const prefix = `xems-test:${randomBytes(6).toString('hex')}:`
    const secret = randomBytes(32)
    const clients = [new Redis(REDIS_URL), new Redis(REDIS_URL)]
    const stores = clients.map((client) => new RedisStore({ client, prefix, secret }))
    const [a, b] = await Promise.all(stores.map(async (store) => await buildApp(store))) as [FastifyInstance, FastifyInstance]
    // The same two instances with a short grace, for the theft signal.
    const [c, d] = await Promise.all(stores.map(async (store) => await buildApp(store, '200ms'))) as [FastifyInstance, FastifyInstance]
    t.teardown(async () => {
      for (const app of [a, b, c, d]) await app.close()
      for (const store of stores) await store.close()
      const keys = await clients[0]!.keys(`${prefix}*`)
      if (keys.length > 0) await clients[0]!.del(...keys)
      for (const client of clients) await client.quit()
    })

    t.test('a token rotated by one app is accepted, and rotated, by the other', async (t) => {
      const t0 = cookieOf(await a.inject({ method: 'POST', url: '/login' }))!
      const first = await get(a, t0)
      t.equal(first.statusCode, 200)
      const t1 = cookieOf(first)!
      t.not(t1, t0, 'A rotated')
      const second = await get(b, t1)
      t.equal(second.statusCode, 200, 'B accepts the token A issued')
      t.same(second.json().data, { owner: 'ada' })
      const t2 = cookieOf(second)!
      t.ok(t2 !== undefined && t2 !== t1, 'B rotated it')
      const third = await get(a, t2)
      t.equal(third.statusCode, 200, 'and A accepts the one B issued')
      const t3 = cookieOf(third)!
      const late = await get(b, t1)
      t.equal(late.statusCode, 200, 'a token still in grace works on B')
      t.equal(cookieOf(late), t3, 'and is answered with the current token, issued by A')
    })

    t.test('an earlier token replayed on one app after its successor was used on the other is the theft signal', async (t) => {
      const t0 = cookieOf(await c.inject({ method: 'POST', url: '/login' }))!
      const t1 = cookieOf(await get(c, t0))!
      const used = await get(d, t1)
      t.equal(used.statusCode, 200, 'the successor is presented on the other app')
      const t2 = cookieOf(used)!
      await new Promise((resolve) => setTimeout(resolve, 300))
      const replay = await get(c, t0)
      t.equal(replay.statusCode, 401, 'the first token, replayed after the grace period')
      t.equal(replay.json().code, 'FST_XEMS_TOKEN_REUSED')
      t.equal((await get(d, t2)).statusCode, 401, 'and the session is revoked for everyone, on both apps')
    })

    t.test('log out everywhere from one app ends the sessions a user opened on both', async (t) => {
      const user = `user-${randomBytes(4).toString('hex')}`
      const onA = cookieOf(await a.inject({ method: 'POST', url: `/login?user=${user}` }))!
      const onB = cookieOf(await b.inject({ method: 'POST', url: `/login?user=${user}` }))!
      t.equal((await b.xems.listUserSessions(user)).length, 2, 'both listed from either app')
      t.equal(await a.xems.revokeUser(user), 2)
      t.equal((await get(a, onB)).statusCode, 401)
      t.equal((await get(b, onA)).statusCode, 401)
    })

    t.test('200 concurrent requests with one token over both apps: all succeed, no write lost', async (t) => {
      const token = cookieOf(await a.inject({ method: 'POST', url: '/login' }))!
      const responses = await Promise.all(Array.from({ length: 200 }, async (_, i) =>
        await (i % 2 === 0 ? a : b).inject({ method: 'POST', url: `/write/${i}`, cookies: { xems: token } })))
      const failed = responses.filter((response) => response.statusCode < 200 || response.statusCode > 299)
      t.same(failed.map((response) => `${response.statusCode} ${response.body}`), [], 'every request is 2xx')
      const issued = new Set(responses.map(cookieOf))
      t.equal(issued.size, 1, 'every response carries the same current token')
      const current = [...issued][0]!
      t.ok(current !== undefined && current !== token, 'one rotation happened')
      const final = await get(b, current)
      t.equal(final.statusCode, 200)
      const data = final.json().data as Record<string, unknown>
      t.equal(Object.keys(data).length, 201, 'owner + 200 written keys')
      t.ok(Array.from({ length: 200 }, (_, i) => data[`k${i}`] === i).every(Boolean), 'each key holds its value')
    })
  })
}
