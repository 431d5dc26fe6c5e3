/**
 * A stalled or stopped PostgreSQL logs nobody out. A cluster of this test's own (initdb + postgres on its
 * own port in a temporary directory, never the machine's server) serves Fastify + xemsSession +
 * PostgresStore over real HTTP. First it is frozen (SIGSTOP on the postmaster and every backend) while
 * 20 users' requests are in flight, half of them past their resolve and waiting on their commit: all
 * answer 503 within the store's timeout, and after SIGCONT every user's next request with the token it
 * holds works. Then it is stopped (fast shutdown): requests answer 503; it is started again: the app
 * recovers by itself. Without the PostgreSQL binaries the test skips, unless CI is set: then it fails.
 */
import { randomBytes } from 'node:crypto'
import t from 'tap'
import { PostgresStore } from '../../lib/store/postgres/postgres-store.js'
import { send, serve, sleep } from '../rotation/http.js'
import { IN_CI, newPool, startOwnPostgres } from './pg-helpers.js'

const USERS = 20
const STALL_MS = 3000
const TIMEOUT_MS = 1000

const own = await startOwnPostgres()
if (typeof own === 'string') {
  if (IN_CI) t.fail(`${own}: CI is set, so the PostgreSQL outage test must run`)
  else t.plan(0, `${own}: the PostgreSQL outage test needs initdb and postgres`)
} else {
  t.teardown(async () => { own.thaw(); await own.remove() })

  t.test(`PostgreSQL frozen for ${STALL_MS / 1000} s mid-request, then stopped and started: 503 meanwhile, 0 users logged out`, async (t) => {
    const pool = newPool({ max: 20, connectionTimeoutMillis: TIMEOUT_MS }, own.url)
    t.teardown(async () => { await pool.end().catch(() => {}) })
    const store = new PostgresStore({ pool, secret: randomBytes(32), timeout: TIMEOUT_MS, sweepInterval: 0 })
    await store.migrate()
    let waiting = 0
    const served = await serve({ store, clock: Date.now }, (app) => {
      app.post<{ Body: { key: string, value: unknown } }>('/slow', { preHandler: app.xems.requireSession() }, async (request) => {
        waiting++
        await sleep(300)
        request.session!.data[request.body.key] = request.body.value
        return { ok: true }
      })
    })
    t.teardown(async () => { await served.close() })

    const users = await Promise.all(Array.from({ length: USERS }, async (_, i) => {
      const token = (await send(served, 'POST', '/login', undefined, { data: { user: `u${i}` }, userId: `user-${i}` })).token!
      const acknowledged = await send(served, 'POST', '/me', token, { key: 'saved', value: i })
      t.equal(acknowledged.status, 200)
      return { i, token: acknowledged.token!, midCommit: i < USERS / 2 }
    }))

    const midCommit = users.filter((user) => user.midCommit).map(async (user) => await send(served, 'POST', '/slow', user.token, { key: 'maybe', value: user.i }))
    for (let i = 0; waiting < USERS / 2 && i < 500; i++) await sleep(10)
    t.equal(waiting, USERS / 2, 'half of the requests resolved and are in their handler')
    own.freeze()
    const frozenAt = Date.now()
    await sleep(50)
    const midResolve = users.filter((user) => !user.midCommit).map(async (user) => await send(served, 'POST', '/me', user.token, { key: 'maybe', value: user.i }))
    const during = await Promise.all([...midCommit, ...midResolve])
    const answeredIn = Date.now() - frozenAt
    t.ok(answeredIn < STALL_MS, `every one answered while PostgreSQL was still frozen (${answeredIn} ms)`)
    await sleep(STALL_MS - (Date.now() - frozenAt))
    own.thaw()
    t.same(during.map((answer) => answer.status), Array(USERS).fill(503), `all ${USERS} in-flight requests answered 503`)
    t.ok(during.every((answer) => answer.body.code === 'FST_XEMS_STORE_UNAVAILABLE'))
    t.ok(during.every((answer) => answer.token === undefined), 'none set a cookie: each client keeps the token it has')

    const again = async (): Promise<number> => {
      let loggedOut = 0
      for (const user of users) {
        let after = await send(served, 'GET', '/me', user.token)
        for (let i = 0; after.status === 503 && i < 20; i++) {
          await sleep(100)
          after = await send(served, 'GET', '/me', user.token)
        }
        if (after.status !== 200 || after.body.data.saved !== user.i) {
          loggedOut++
          t.fail(`user ${user.i}: ${after.status} ${JSON.stringify(after.body)}`)
          continue
        }
        if (after.token !== undefined && after.token !== '') user.token = after.token
      }
      return loggedOut
    }
    t.equal(await again(), 0, `after the freeze: 0 of ${USERS} users logged out`)

    await own.stop()
    const down = await Promise.all(users.slice(0, 5).map(async (user) => await send(served, 'GET', '/me', user.token)))
    t.same(down.map((answer) => answer.status), Array(5).fill(503), 'PostgreSQL stopped: 503')
    await own.start()
    t.equal(await again(), 0, `after a stop and a start: 0 of ${USERS} users logged out, no restart of the app`)
    t.notOk(served.logs.some((line) => line.includes('token-reuse')), 'no theft signal')
    t.ok(served.logs.some((line) => line.includes('store-recovered')), 'the outage was logged as over')
  })
}
