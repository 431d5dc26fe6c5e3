/**
 * RedisStore keeps the session fields it opened (lib/store/redis/sealing.ts, by their sealed bytes and
 * place, 4096 at most). With thousands of sessions in flight at once, far more fields than it keeps, every
 * request still gets its own session's data, never another's, and a session changed by one request is
 * read as changed by the next. Without Redis the test skips, unless CI is set: then it fails.
 */
import { randomBytes } from 'node:crypto'
import Fastify from 'fastify'
import t from 'tap'
import { xemsSession } from '../../index.js'
import { RedisStore } from '../../lib/store/redis/redis-store.js'
import { connect, deleteUnder, IN_CI, newPrefix } from './redis-helpers.js'

const SESSIONS = 3000
const IN_FLIGHT = 500
/** Sessions whose fields (about 4 each) all fit among the 4096 the store keeps. */
const HOT = 400

const connected = await connect()
if (typeof connected === 'string') {
  if (IN_CI) t.fail(`${connected}: CI is set, so the RedisStore opened-fields test must run (start Redis or set REDIS_URL)`)
  else t.plan(0, `${connected}: start Redis or set REDIS_URL to run the RedisStore opened-fields test`)
} else {
  const client = connected
  t.teardown(async () => { await client.quit() })

  t.test(`${SESSIONS} sessions (about ${4 * SESSIONS} sealed fields) read ${IN_FLIGHT} at a time: each its own data`, async (t) => {
    const prefix = newPrefix()
    const store = new RedisStore({ client, prefix, secret: randomBytes(32) })
    t.teardown(async () => { await deleteUnder(client, prefix) })
    const app = Fastify()
    await app.register(xemsSession, { store, cookie: { secure: false } })
    app.get('/me', { preHandler: app.xems.requireSession() }, async (request) => request.session!.data)
    app.post<{ Body: { n: number } }>('/me', { preHandler: app.xems.requireSession() }, async (request) => {
      request.session!.data.n = request.body.n
      return { ok: true }
    })
    t.teardown(async () => { await app.close() })
    await app.ready()

    const tokens: string[] = []
    for (let i = 0; i < SESSIONS; i++) tokens.push(await app.xems.createSession('auth-active', { owner: `user-${i}`, n: i }, { userId: `user-${i}` }))

    const readAll = async (expect: (i: number) => number, count = SESSIONS): Promise<number> => {
      let wrong = 0
      for (let start = 0; start < count; start += IN_FLIGHT) {
        const batch = tokens.slice(start, Math.min(count, start + IN_FLIGHT))
        const answers = await Promise.all(batch.map(async (token, k) => {
          const response = await app.inject({ url: '/me', headers: { 'x-xems-token': token } })
          const next = response.headers['x-xems-token']
          if (typeof next === 'string') tokens[start + k] = next
          return { status: response.statusCode, body: response.json() as { owner?: string, n?: number } }
        }))
        answers.forEach((answer, k) => {
          const i = start + k
          if (answer.status !== 200 || answer.body.owner !== `user-${i}` || answer.body.n !== expect(i)) wrong++
        })
      }
      return wrong
    }

    t.equal(await readAll((i) => i), 0, 'first read: every session answers with its own data')
    t.equal(await readAll((i) => i), 0, 'second read (fields kept or evicted, rotated tokens): still its own data')

    // The first HOT sessions' fields all fit in what the store keeps: read twice, so they are kept, then
    // changed and read again (the other sessions were read too often in between for theirs to stay).
    t.equal(await readAll((i) => i, HOT), 0, 'a hot set read again')
    t.equal(await readAll((i) => i, HOT), 0, 'and again: its fields are the kept ones now')
    const changes = (i: number): boolean => i < HOT && i % 3 === 0
    const changed = await Promise.all(tokens.slice(0, HOT).map(async (token, i) => {
      if (!changes(i)) return 200
      const response = await app.inject({ method: 'POST', url: '/me', headers: { 'x-xems-token': token }, payload: { n: -i } })
      const next = response.headers['x-xems-token']
      if (typeof next === 'string') tokens[i] = next
      return response.statusCode
    }))
    t.equal(changed.filter((status) => status !== 200).length, 0, 'every third session of the hot set changed its data')
    t.equal(await readAll((i) => changes(i) ? -i : i, HOT), 0, 'the hot set sees each change at once, and only in its own session')
    t.equal(await readAll((i) => changes(i) ? -i : i), 0, 'and every session, read again, has its own data')
  })
}
