/**
 * Load and abuse on one process: 10 000 requests through app.inject in batches of about 200 concurrent
 * ones, mixing clients that follow rotation, pairs of concurrent requests with one token, replays of
 * rotated tokens (after their successor was used and its grace passed: the theft signal, however many
 * rotations ago; or while their successor was never presented: answered with the current token, or no
 * session once the unseen window is over), tokens of ended sessions, junk cookies and headers (old-style
 * bare tokens, well-formed session tokens never issued, near-tokens, huge values), concurrent logins
 * (some bringing a token to adopt), re-logins and logouts. The test keeps its own model of which tokens
 * each client holds and which are dead, and checks every answer against it, and that the id a route
 * sees is the session's stable public id, never its locator. Then everything expires: after the sweep
 * the store is empty and the heap is back near where it started.
 *
 * Seeded PRNG (LOAD_SEED overrides), fake clock: the run is the same every time.
 */
import v8 from 'node:v8'
import vm from 'node:vm'
import Fastify, { type FastifyInstance, type LightMyRequestResponse } from 'fastify'
import t from 'tap'
import { xemsSession } from '../../index.js'
import { generateLocator, parseSessionToken, publicIdOf, recordIdOf, sessionTokenOf } from '../../lib/session/token.js'
import { MAX_PAST_TOKENS } from '../../lib/store/contract.js'
import { MemoryStore } from '../../lib/store/memory/memory-store.js'
import { generateToken } from '../../lib/crypto/random-token.js'
import { makeClock } from '../helpers.js'

const TOTAL_REQUESTS = 10_000
const BATCH = 200
const GRACE_MS = 2000
const STEP_MS = 3000 // the clock moves on by more than the grace between batches
const UNSEEN_MS = 30_000 // ten batches
/** Heavy users replay their oldest token once they have rotated this often. */
const LONG_AGO = 4 * MAX_PAST_TOKENS
const MAX_AGE = '2h'

/** mulberry32: a small seeded PRNG, so a failing run can be replayed. */
function prng (seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let x = Math.imul(a ^ (a >>> 15), 1 | a)
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x
    return ((x ^ (x >>> 14)) >>> 0) / 4_294_967_296
  }
}

/** A garbage collector: --expose-gc's, or one obtained at run time through V8 flags, or none. */
function findGc (): { gc: (() => void) | null, how: string } {
  const global = globalThis as { gc?: () => void }
  if (typeof global.gc === 'function') return { gc: global.gc, how: 'global.gc (--expose-gc)' }
  try {
    v8.setFlagsFromString('--expose-gc')
    const gc = vm.runInNewContext('gc') as unknown
    if (typeof gc === 'function') return { gc: gc as () => void, how: 'gc obtained with v8.setFlagsFromString(\'--expose-gc\')' }
  } catch {
    // fall through
  }
  return { gc: null, how: 'no gc available: heapUsed compared with a generous bound' }
}

interface Counts {
  requests: number
  fiveXx: number
  deadResolved: number
  reuseDetected: number
  /** Replays of a token rotated more than LONG_AGO rotations before, caught as reuse. */
  longAgoReuse: number
  /** Replays of a token whose successor was never presented: answered with the current token. */
  unseenAnswered: number
  /** The same after the unseen window: no session, no theft signal, the session ended quietly. */
  unseenExpired: number
}

interface Rotated {
  token: string
  /** When it was rotated away from. */
  at: number
  /** When its successor was first presented, if it was. */
  successorSeenAt: number | null
}

interface Client {
  id: number
  userId: string
  current: string | null
  /** Tokens rotated away from, oldest first. */
  rotated: Rotated[]
  /** The public id of the current session, once a route has shown it. */
  publicId: string | null
  busy: boolean
}

t.test('10 000 mixed requests: no 5xx, no dead token resolves, then the store empties and the heap comes back', async (t) => {
  const seed = Number(process.env.LOAD_SEED ?? 8)
  const clock = makeClock(Date.UTC(2030, 0, 1))
  const store = new MemoryStore({ clock: () => clock.now })
  const app: FastifyInstance = Fastify()
  await app.register(xemsSession, { store, clock: () => clock.now, cookie: { secure: false }, gracePeriod: GRACE_MS, unseenWindow: UNSEEN_MS, ttl: '30m', maxAge: MAX_AGE })
  app.post<{ Body: { userId: string } }>('/login', async (request, reply) => {
    await reply.xLink({ n: 0 }, { userId: request.body.userId })
    return { ok: true }
  })
  app.get('/me', { preHandler: app.xems.requireSession() }, async (request) => ({ id: request.session!.id }))
  app.post('/me', { preHandler: app.xems.requireSession() }, async (request) => {
    request.session!.data.n = Number(request.session!.data.n ?? 0) + 1
    return { ok: true }
  })
  app.post('/logout', async (_request, reply) => {
    await reply.xUnlink()
    return { ok: true }
  })
  app.get('/public', async (request) => ({ sandbox: request.session?.sandbox ?? null }))
  t.teardown(async () => {
    await app.close()
    await store.close()
  })
  await app.ready()

  function setToken (response: LightMyRequestResponse): string | undefined {
    return response.cookies.find((cookie) => cookie.name === 'xems')?.value
  }

  /** One run of the mixed workload: `total` requests, checked against the model. */
  async function workload (total: number, seed: number): Promise<{ counts: Counts, failures: string[], clients: Client[], ended: string[], batches: number, elapsed: number }> {
    const random = prng(seed)
    const pick = <T>(items: T[]): T => items[Math.floor(random() * items.length)]!
    const clients: Client[] = []
    /** Tokens of sessions that ended (logout, revocation, replaced by a login): they must never resolve. */
    const ended: string[] = []
    const failures: string[] = []
    const counts: Counts = { requests: 0, fiveXx: 0, deadResolved: 0, reuseDetected: 0, longAgoReuse: 0, unseenAnswered: 0, unseenExpired: 0 }
    const fail = (what: string): void => { if (failures.length < 50) failures.push(what) }

    async function request (options: {
      method?: 'GET' | 'POST'
      url: string
      token?: string
      header?: string
      rawCookie?: string
      payload?: Record<string, unknown>
    }): Promise<LightMyRequestResponse> {
      const headers: Record<string, string> = {}
      if (options.header !== undefined) headers['x-xems-token'] = options.header
      if (options.rawCookie !== undefined) headers.cookie = options.rawCookie
      else if (options.token !== undefined) headers.cookie = `xems=${options.token}`
      const response = await app.inject({ method: options.method ?? 'GET', url: options.url, headers, ...(options.payload === undefined ? {} : { payload: options.payload }) })
      counts.requests++
      if (response.statusCode >= 500) {
        counts.fiveXx++
        fail(`${options.method ?? 'GET'} ${options.url} → ${response.statusCode} ${response.body}`)
      }
      return response
    }
    function endClient (client: Client): void {
      if (client.current !== null) ended.push(client.current)
      for (const { token } of client.rotated) ended.push(token)
      client.current = null
      client.rotated = []
      client.publicId = null
    }
    const junkValues = (): string => pick([
      () => '',
      () => 'junk',
      () => generateToken(), // a bare 43-character secret: the shape of an old token, not a session token
      () => sessionTokenOf(generateLocator(), generateToken()), // well-formed, never issued: an unknown record
      () => sessionTokenOf(generateLocator(), generateToken()).slice(0, 65) + 'B', // non-canonical secret ending
      () => generateLocator().slice(0, 21) + 'B.' + generateToken(), // non-canonical locator ending
      () => sessionTokenOf(generateLocator(), generateToken()).replace('.', '_'), // no separator
      () => sessionTokenOf(generateLocator(), generateToken()) + '.', // one character too many
      () => sessionTokenOf(publicIdOf(recordIdOf(generateLocator())), generateToken()), // a public id used as a locator
      () => String.fromCharCode(...Array.from({ length: Math.floor(random() * 64) }, () => Math.floor(random() * 256))),
      () => 'A'.repeat(Math.floor(random() * 20_000)),
      () => '\u0000\r\n;=%'.repeat(Math.floor(random() * 50)),
      () => '漢字🙂'.repeat(Math.floor(random() * 100))
    ])()

    // ---- operations: each touches at most one client, so expectations are exact --------------------

    async function login (client: Client, bring?: string): Promise<void> {
      const before = client.current
      const response = await request({ method: 'POST', url: '/login', payload: { userId: client.userId }, ...(bring === undefined ? {} : { token: bring }) })
      const token = setToken(response)
      if (response.statusCode !== 200 || token === undefined || token === '') return fail(`login → ${response.statusCode}`)
      if (token === bring || token === before) fail('a login adopted the token it was brought')
      if (before !== null && bring === before) {
        // Logging in with a live session replaces it: its tokens are dead now.
        endClient(client)
      }
      client.current = token
      client.rotated = []
      client.publicId = null
    }

    /** The id a route showed: the session's public id, the same for its whole life, never its locator. */
    function checkId (client: Client, token: string, response: LightMyRequestResponse): void {
      const id = (response.json() as { id?: unknown }).id
      const locator = parseSessionToken(token)!.locator
      if (id !== publicIdOf(recordIdOf(locator))) return fail(`the route saw id ${String(id)}, not the public id`)
      if (client.publicId !== null && id !== client.publicId) fail('the public id changed with rotation')
      client.publicId = id
    }

    /** The client presents its current token: its predecessor's successor has now been seen. */
    function presented (client: Client): void {
      const last = client.rotated.at(-1)
      if (last !== undefined && last.successorSeenAt === null) last.successorSeenAt = clock.now
    }

    async function follow (client: Client): Promise<void> {
      const token = client.current!
      const write = random() < 0.5
      const response = await request(write ? { method: 'POST', url: '/me', token, payload: {} } : { url: '/me', token })
      const next = setToken(response)
      if (response.statusCode !== 200) return fail(`a live token got ${response.statusCode} ${response.body}`)
      presented(client)
      if (next === undefined || next === '' || next === token) return fail('no rotation')
      if (!write) checkId(client, token, response)
      client.rotated.push({ token, at: clock.now, successorSeenAt: null })
      client.current = next
    }

    async function concurrentPair (client: Client): Promise<void> {
      const token = client.current!
      const [a, b] = await Promise.all([request({ url: '/me', token }), request({ method: 'POST', url: '/me', token, payload: {} })])
      if (a.statusCode !== 200 || b.statusCode !== 200) return fail(`a concurrent pair got ${a.statusCode}/${b.statusCode}`)
      presented(client)
      const next = setToken(a)
      if (next === undefined || next !== setToken(b)) return fail('a concurrent pair disagreed on the current token')
      checkId(client, token, a)
      client.rotated.push({ token, at: clock.now, successorSeenAt: null })
      client.current = next
    }

    /**
     * Replays a token the client rotated away from at least a batch ago. Its successor used (and the
     * grace over, as it always is a batch later): the theft signal, however long ago. Its successor never
     * presented: within the unseen window it still works and is answered with the current token; after
     * it, no session and no theft signal, and the session ends quietly (its never-presented current
     * token opens nothing either: rotation.ts matchToken).
     */
    async function replay (client: Client): Promise<void> {
      const past = client.rotated.filter((entry) => entry.at + GRACE_MS < clock.now)
      if (past.length === 0) return await follow(client)
      const index = client.id < 10 ? 0 : Math.floor(random() * past.length)
      const entry = past[index]!
      const rotationsAgo = client.rotated.length - client.rotated.indexOf(entry)
      const response = await request({ url: '/me', token: entry.token })
      const code = (response.json() as { code?: string }).code
      if (entry.successorSeenAt !== null) {
        if (entry.successorSeenAt + GRACE_MS > clock.now) return fail('the model replayed a token within its grace')
        if (response.statusCode === 200) {
          counts.deadResolved++
          return fail(`a token replayed after its successor's grace resolved (${rotationsAgo} rotations ago)`)
        }
        if (code !== 'FST_XEMS_TOKEN_REUSED') return fail(`a token replayed after its successor's grace, ${rotationsAgo} rotations ago: ${String(code)}`)
        counts.reuseDetected++
        if (rotationsAgo > LONG_AGO) counts.longAgoReuse++
        if (setToken(response) !== '') fail('reuse did not clear the cookie')
        endClient(client) // onReuse 'revoke': the whole session is dead, the current token too
        return
      }
      if (clock.now < entry.at + UNSEEN_MS) {
        if (response.statusCode !== 200) return fail(`a token whose successor was never presented got ${response.statusCode} ${response.body} within the window`)
        if (setToken(response) !== client.current) return fail('it was not answered with the current token')
        checkId(client, entry.token, response)
        counts.unseenAnswered++
        return
      }
      if (response.statusCode !== 401 || code !== 'FST_XEMS_NO_SESSION' || response.headers['set-cookie'] !== undefined) {
        return fail(`after the unseen window, a token whose successor was never presented got ${response.statusCode} ${String(code)}, ` +
          `cookie ${String(response.headers['set-cookie'])}`)
      }
      counts.unseenExpired++
      endClient(client)
    }

    async function deadToken (): Promise<void> {
      if (ended.length === 0) return await junk()
      const token = pick(ended)
      const [guarded, open] = await Promise.all([request({ url: '/me', token }), request({ url: '/public', token })])
      if (guarded.statusCode !== 401 || (open.json() as { sandbox: unknown }).sandbox !== null) {
        counts.deadResolved++
        fail(`a dead token resolved (${guarded.statusCode}, ${open.body})`)
      }
    }

    async function junk (): Promise<void> {
      const value = junkValues()
      const how = pick(['cookie', 'header', 'raw'] as const)
      const options = how === 'cookie' ? { token: value } : how === 'header' ? { header: value } : { rawCookie: value }
      const [guarded, open] = await Promise.all([request({ url: '/me', ...options }), request({ url: '/public', ...options })])
      if (guarded.statusCode !== 401 || open.statusCode !== 200 || (open.json() as { sandbox: unknown }).sandbox !== null) {
        counts.deadResolved++
        fail(`junk resolved (${guarded.statusCode}, ${open.statusCode} ${open.body})`)
      }
    }

    async function logout (client: Client): Promise<void> {
      const response = await request({ method: 'POST', url: '/logout', token: client.current! })
      if (response.statusCode !== 200 || setToken(response) !== '') fail(`logout → ${response.statusCode}, cookie ${String(setToken(response))}`)
      endClient(client)
    }

    // ---- the run ----------------------------------------------------------------------------------
    const started = performance.now()
    let batches = 0
    while (counts.requests < total) {
      const work: Array<Promise<void>> = []
      let planned = 0
      for (const client of clients) client.busy = false
      const idle = (): Client | null => {
        for (let tries = 0; tries < 8 && clients.length > 0; tries++) {
          const client = pick(clients)
          if (!client.busy) {
            client.busy = true
            return client
          }
        }
        return null
      }
      // Ten heavy users act in every batch: they rotate many times, then replay their oldest token,
      // which is the theft signal however many rotations ago it was (no history bound).
      for (const client of clients.slice(0, 10)) {
        if (client.current === null || counts.requests + planned >= total) continue
        client.busy = true
        work.push(client.rotated.length > LONG_AGO + 2 && random() < 0.2 ? replay(client) : follow(client))
        planned += 1
      }
      while (planned < BATCH && counts.requests + planned < total) {
        const roll = random()
        const client = clients.length < 40 || roll < 0.1 ? null : idle()
        if (client === null) {
          if (clients.length < 400 && roll < 0.5) {
            const fresh: Client = { id: clients.length, userId: `u${clients.length % 60}`, current: null, rotated: [], publicId: null, busy: true }
            clients.push(fresh)
            work.push(login(fresh, random() < 0.3 ? (ended.length > 0 && random() < 0.5 ? pick(ended) : sessionTokenOf(generateLocator(), generateToken())) : undefined))
            planned += 1
          } else if (roll < 0.75) {
            work.push(junk())
            planned += 2
          } else {
            work.push(deadToken())
            planned += 2
          }
          continue
        }
        if (client.current === null) {
          work.push(login(client, random() < 0.5 ? client.rotated[0]?.token ?? pick(ended.length > 0 ? ended : ['x']) : undefined))
          planned += 1
        } else if (roll < 0.55) {
          work.push(follow(client))
          planned += 1
        } else if (roll < 0.65) {
          work.push(concurrentPair(client))
          planned += 2
        } else if (roll < 0.8) {
          work.push(replay(client))
          planned += 1
        } else if (roll < 0.85) {
          work.push(logout(client))
          planned += 1
        } else if (roll < 0.9) {
          work.push(login(client, client.current)) // a second login from a signed-in client
          planned += 1
        } else if (roll < 0.95) {
          work.push(junk())
          planned += 2
        } else {
          work.push(deadToken())
          planned += 2
        }
      }
      await Promise.all(work)
      batches++
      clock.advance(STEP_MS)
    }

    // Every live client still gets in with the token it holds.
    for (const client of clients) {
      if (client.current === null) continue
      const response = await request({ url: '/me', token: client.current })
      if (response.statusCode !== 200) fail(`client ${client.id} lost its live session (${response.statusCode})`)
    }
    return { counts, failures, clients, ended, batches, elapsed: performance.now() - started }
  }

  /** Everything expires: the clock passes maxAge and the sweep runs until it removes nothing. */
  function expireAll (): number {
    clock.advance(2 * 3_600_000 + 1)
    let sweeps = 0
    while (store.sweep(clock.now) > 0) sweeps++
    return sweeps
  }

  const { gc, how } = findGc()
  const heap = (): number => {
    gc?.()
    gc?.()
    return process.memoryUsage().heapUsed
  }
  // Warm up every code path with a shorter run of the same workload (other seed), then let it all expire.
  const warm = await workload(2000, seed + 1)
  t.same(warm.failures, [], 'the warm-up run matched the model too')
  expireAll()
  const heapStart = heap()

  const { counts, failures, clients, ended, batches, elapsed } = await workload(TOTAL_REQUESTS, seed)
  const live = clients.filter((client) => client.current !== null).length
  t.comment(`${counts.requests} requests in ${batches} batches, ${(elapsed / 1000).toFixed(1)} s; ${clients.length} clients, ${live} live at the end; ` +
    `${counts.reuseDetected} replays caught as reuse (${counts.longAgoReuse} of tokens more than ${LONG_AGO} rotations old), ` +
    `${counts.unseenAnswered} replays of a token whose successor was unseen answered with the current token, ${counts.unseenExpired} after the window; ` +
    `${ended.length} dead tokens tracked (seed ${seed})`)
  t.same(failures, [], 'every answer matched the model')
  t.ok(counts.requests >= TOTAL_REQUESTS, `${counts.requests} requests`)
  t.equal(counts.fiveXx, 0, 'zero 5xx')
  t.equal(counts.deadResolved, 0, 'zero dead tokens or junk resolved a session')
  t.ok(counts.reuseDetected > 50, 'the run did exercise reuse detection')
  t.ok(counts.longAgoReuse > 5, 'including replays of tokens rotated long ago')
  t.ok(counts.unseenAnswered > 5 && counts.unseenExpired > 0, 'and replays of tokens whose successor was never presented, within and after the unseen window')
  t.ok(store.size.sessions > 0, 'sessions were live before expiry')

  // ---- everything expires -------------------------------------------------------------------------
  const sweeps = expireAll()
  t.same(store.size, { sessions: 0, values: 0, counters: 0 }, `the store is empty after ${sweeps} sweep steps`)
  for (const client of clients.slice(0, 20)) {
    if (client.current !== null) t.equal((await app.inject({ url: '/me', cookies: { xems: client.current } })).statusCode, 401, 'an expired session does not resolve')
  }
  clients.length = 0
  ended.length = 0
  const heapEnd = heap()
  const grown = heapEnd - heapStart
  const bound = gc === null ? 64 * 1024 * 1024 : 8 * 1024 * 1024
  t.comment(`heap: ${(heapStart / 1048576).toFixed(1)} MiB at the start, ${(heapEnd / 1048576).toFixed(1)} MiB at the end (${how})`)
  t.ok(grown < bound, `heap back near its start: grew ${(grown / 1048576).toFixed(2)} MiB, bound ${bound / 1048576} MiB (${how})`)
})
