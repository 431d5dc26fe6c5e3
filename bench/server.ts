/**
 * One bench server, in its own process: `node dist/bench/server.js <id>` (forked by run.js, with IPC).
 * Every server answers POST /login (opens a session holding a ~100-byte profile under `user`) and
 * GET /me (reads the session and returns the profile), on 127.0.0.1 at a random port.
 *
 * Servers whose code does not exist yet in this checkout (RedisStore, MemoryStore persistence) report
 * "unavailable" with the reason instead of failing the run.
 */
import { randomBytes } from 'node:crypto'
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { PerformanceObserver } from 'node:perf_hooks'
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify'
import { Redis } from 'ioredis'
import type { XemsSession } from 'fastify-xems'
import { CONSTANT_PROFILE, profileFor, type Profile, type ServerCommand, type ServerMessage } from './common.js'

interface Built {
  app: FastifyInstance
  /** Extra clean-up after app.close() (stores and clients the server owns). */
  close?: () => Promise<void>
  notes?: string[]
}

class Unavailable extends Error {}

/** The session API the peers share (`get` / `set`); typed locally so their type augmentations stay apart. */
interface KeyedSession {
  get: (key: string) => unknown
  set: (key: string, value: unknown) => void
}

interface LoginBody { user?: unknown }

function userOf (request: FastifyRequest): string {
  const user = (request.body as LoginBody | undefined)?.user
  return typeof user === 'string' && /^[\w-]{1,32}$/.test(user) ? user : 'anonymous'
}

function keyedRoutes (app: FastifyInstance): void {
  const sessionOf = (request: FastifyRequest): KeyedSession => (request as unknown as { session: KeyedSession }).session
  app.post('/login', async (request) => {
    sessionOf(request).set('user', profileFor(userOf(request)))
    return { ok: true }
  })
  app.get('/me', async (request, reply: FastifyReply) => {
    const user = sessionOf(request).get('user') as Profile | undefined
    if (user === undefined) return await reply.code(401).send({ code: 'NO_SESSION' })
    return user
  })
}

const SERVERS: Record<string, () => Promise<Built>> = {
  async bare () {
    const app = Fastify({ logger: false })
    app.post('/login', async () => ({ ok: true }))
    app.get('/me', async () => CONSTANT_PROFILE)
    return { app }
  },

  async 'fastify-session' () {
    const { default: fastifyCookie } = await import('@fastify/cookie')
    const { default: fastifySession } = await import('@fastify/session')
    const app = Fastify({ logger: false })
    await app.register(fastifyCookie)
    await app.register(fastifySession, { secret: randomBytes(32).toString('hex'), cookie: { secure: false } })
    keyedRoutes(app)
    return { app }
  },

  async 'secure-session' () {
    const { default: fastifySecureSession } = await import('@fastify/secure-session')
    const app = Fastify({ logger: false })
    // crypto_secretbox_KEYBYTES = 32: a fresh random key for each run.
    await app.register(fastifySecureSession, { key: randomBytes(32), cookie: { path: '/', httpOnly: true, secure: false } })
    keyedRoutes(app)
    return { app }
  },

  async 'xems-static' () {
    return await xemsServer({ autoRotation: false })
  },

  async 'xems-rotate' () {
    return await xemsServer({ autoRotation: true })
  },

  async 'rotation-floor' () {
    const { default: fastifyCookie } = await import('@fastify/cookie')
    const app = Fastify({ logger: false })
    await app.register(fastifyCookie)
    const sessions = new Map<string, Profile>()
    const attributes = { path: '/', httpOnly: true, sameSite: 'lax', secure: false } as const
    const issue = (reply: FastifyReply, profile: Profile): void => {
      const token = randomBytes(32).toString('base64url')
      sessions.set(token, profile)
      reply.header('cache-control', 'no-store').setCookie('floor', token, attributes)
    }
    app.post('/login', async (request, reply) => {
      issue(reply, profileFor(userOf(request)))
      return { ok: true }
    })
    app.get('/me', async (request, reply) => {
      const token = request.cookies.floor
      const profile = token === undefined ? undefined : sessions.get(token)
      if (token === undefined || profile === undefined) return await reply.code(401).send({ code: 'NO_SESSION' })
      sessions.delete(token)
      issue(reply, profile)
      return profile
    })
    return { app }
  },

  async 'rotation-floor-crypto' () {
    const { default: fastifyCookie } = await import('@fastify/cookie')
    const crypto = await loadTokenCrypto()
    const app = Fastify({ logger: false })
    await app.register(fastifyCookie)
    const sessions = new Map<string, { key: string, profile: Profile, box: string }>()
    const attributes = { path: '/', httpOnly: true, sameSite: 'lax', secure: false } as const
    const issue = (reply: FastifyReply, locator: string, profile: Profile, previous: string | null): void => {
      const next = previous === null ? { secret: crypto.generateToken(), box: '' } : crypto.successorOf(previous)
      const token = `${locator}.${next.secret}`
      const box = next.box
      sessions.set(crypto.recordIdOf(locator), { key: crypto.secretKeyOf(token), profile, box })
      reply.header('cache-control', 'no-store').setCookie('floor', token, attributes)
    }
    app.post('/login', async (request, reply) => {
      issue(reply, crypto.generateLocator(), profileFor(userOf(request)), null)
      return { ok: true }
    })
    app.get('/me', async (request, reply) => {
      const token = request.cookies.floor
      const dot = token === undefined ? -1 : token.indexOf('.')
      const entry = dot === -1 ? undefined : sessions.get(crypto.recordIdOf(token!.slice(0, dot)))
      if (entry === undefined || entry.key !== crypto.secretKeyOf(token!)) return await reply.code(401).send({ code: 'NO_SESSION' })
      issue(reply, token!.slice(0, dot), entry.profile, token!)
      return entry.profile
    })
    return { app }
  },

  async 'xems-persist' () {
    const { MemoryStore } = await import('fastify-xems')
    if (typeof (MemoryStore.prototype as { ready?: unknown }).ready !== 'function') {
      throw new Unavailable('MemoryStore has no ready(): encrypted persistence is not in this build yet')
    }
    const dir = mkdtempSync(join(tmpdir(), 'xems-bench-vault-'))
    const drop = (): void => { rmSync(dir, { recursive: true, force: true }) }
    type Ctor = new (options: unknown) => InstanceType<typeof MemoryStore> & { ready: () => Promise<void> }
    let store: InstanceType<Ctor>
    try {
      store = new (MemoryStore as unknown as Ctor)({ persistence: { path: dir, secret: randomBytes(32), fsync: 'everysec' } })
      await store.ready()
      // The option must really persist: an older MemoryStore would ignore it silently.
      await store.kvSet('bench', 'probe', '1', 60_000, Date.now())
      const deadline = Date.now() + 2000
      while (readdirSync(dir).length === 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50))
      if (readdirSync(dir).length === 0) {
        await store.close()
        throw new Unavailable('MemoryStore accepted option persistence but wrote nothing to the vault directory')
      }
      await store.kvDel('bench', 'probe')
    } catch (err) {
      drop()
      if (err instanceof Unavailable) throw err
      throw new Unavailable(`MemoryStore persistence did not open: ${(err as Error).message}`)
    }
    const built = await xemsServer({ autoRotation: true, store })
    return {
      ...built,
      notes: [`vault in ${dir}`],
      close: async () => {
        await store.close()
        drop()
      }
    }
  },

  async 'xems-redis' () {
    const RedisStore = await loadRedisStore()
    const client = await redisClient()
    const prefix = `xems-bench-${process.pid}:`
    let store: { close: () => Promise<void>, ready?: () => Promise<void> }
    try {
      store = new RedisStore({ client, prefix, secret: randomBytes(32) })
      if (typeof store.ready === 'function') await store.ready()
    } catch (err) {
      client.disconnect()
      throw new Unavailable(`RedisStore did not start: ${(err as Error).message}`)
    }
    const built = await xemsServer({ autoRotation: true, store })
    return {
      ...built,
      notes: [`keys under ${prefix}*`],
      close: async () => {
        await store.close()
        await dropKeys(client, `${prefix}*`)
        await client.quit()
      }
    }
  },

  async 'redis-floor' () {
    const { default: fastifyCookie } = await import('@fastify/cookie')
    const client = await redisClient()
    const prefix = `floor-bench-${process.pid}:`
    const app = Fastify({ logger: false })
    await app.register(fastifyCookie)
    const attributes = { path: '/', httpOnly: true, sameSite: 'lax', secure: false } as const
    const issue = async (reply: FastifyReply, profile: string): Promise<void> => {
      const token = randomBytes(32).toString('base64url')
      await client.set(prefix + token, profile, 'PX', 3_600_000)
      reply.header('cache-control', 'no-store').setCookie('floor', token, attributes)
    }
    app.post('/login', async (request, reply) => {
      await issue(reply, JSON.stringify(profileFor(userOf(request))))
      return { ok: true }
    })
    app.get('/me', async (request, reply) => {
      const token = request.cookies.floor
      const profile = token === undefined ? null : await client.get(prefix + token)
      if (profile === null) return await reply.code(401).send({ code: 'NO_SESSION' })
      await issue(reply, profile)
      return JSON.parse(profile) as Profile
    })
    return onRedisPrefix(app, client, prefix)
  },

  async 'fastify-session-redis' () {
    const { default: fastifyCookie } = await import('@fastify/cookie')
    const { default: fastifySession } = await import('@fastify/session')
    const { RedisStore: ConnectRedisStore } = await import('connect-redis')
    const client = await redisClient()
    const prefix = `fsess-bench-${process.pid}:`
    const app = Fastify({ logger: false })
    await app.register(fastifyCookie)
    await app.register(fastifySession, {
      secret: randomBytes(32).toString('hex'),
      cookie: { secure: false },
      store: new ConnectRedisStore({ client, prefix }) as never
    })
    keyedRoutes(app)
    return onRedisPrefix(app, client, prefix)
  },

  async 'xems-postgres' () {
    const pool = await pgPool()
    const { PostgresStore } = await import('fastify-xems/postgres')
    const schema = `xems_bench_${process.pid}`
    const store = new PostgresStore({ pool, secret: randomBytes(32), schema })
    await store.migrate()
    const built = await xemsServer({ autoRotation: true, store })
    return {
      ...built,
      notes: [`schema ${schema}`],
      close: async () => {
        await store.close()
        await pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`)
        await pool.end()
      }
    }
  },

  async 'fastify-session-pg' () {
    const { default: fastifyCookie } = await import('@fastify/cookie')
    const { default: fastifySession } = await import('@fastify/session')
    const { default: connectPgSimple } = await import('connect-pg-simple')
    const pool = await pgPool()
    const table = `fsess_bench_${process.pid}`
    const app = Fastify({ logger: false })
    await app.register(fastifyCookie)
    // connect-pg-simple takes the session module for its Store class: @fastify/session has one.
    const PgStore = connectPgSimple(fastifySession as never)
    const store = new PgStore({ pool, tableName: table, createTableIfMissing: true, pruneSessionInterval: 60 })
    await app.register(fastifySession, { secret: randomBytes(32).toString('hex'), cookie: { secure: false }, store: store as never })
    keyedRoutes(app)
    return {
      app,
      notes: [`table ${table}`],
      close: async () => {
        store.close()
        await pool.query(`DROP TABLE IF EXISTS "${table}"`)
        await pool.end()
      }
    }
  }
}

const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test'

async function pgPool (): Promise<import('pg').Pool> {
  const { default: pg } = await import('pg')
  const pool = new pg.Pool({ connectionString: DATABASE_URL, max: 10, application_name: `xems-bench-${process.pid}` })
  pool.on('error', () => {})
  try {
    await pool.query('SELECT 1')
  } catch (err) {
    await pool.end().catch(() => {})
    throw new Unavailable(`PostgreSQL at ${new URL(DATABASE_URL).host} is not reachable: ${(err as Error).message}`)
  }
  return pool
}

async function xemsServer (options: { autoRotation: boolean, store?: unknown }): Promise<Built> {
  const { xemsSession } = await import('fastify-xems')
  const app = Fastify({ logger: false })
  await app.register(xemsSession, {
    autoRotation: options.autoRotation,
    // A VU here sends hundreds of requests a second one after another: with the default 10 s grace its
    // session would rotate on 8 of them per 10 s (the record keeps at most 8 rotated tokens within their
    // grace). A grace of 0 makes every response rotate, which is the cost this row is meant to show.
    ...(options.autoRotation ? { gracePeriod: 0 } : {}),
    cookie: { secure: false },
    ...(options.store === undefined ? {} : { store: options.store as never })
  })
  app.post('/login', async (request, reply) => {
    await reply.xLink({ user: profileFor(userOf(request)) })
    return { ok: true }
  })
  // request.session is typed by whichever session plugin's augmentation TypeScript saw last: cast to xems's.
  app.get('/me', { preHandler: app.xems.requireSession() }, async (request) => (request as unknown as { session: XemsSession<{ user: Profile }> }).session.data.user)
  return { app }
}

interface TokenCrypto {
  generateToken: () => string
  generateLocator: () => string
  recordIdOf: (locator: string) => string
  secretKeyOf: (token: string) => string
  successorOf: (holder: string) => { secret: string, box: string }
}

/** The library's own token and grace-box functions, from its modules in dist/. */
async function loadTokenCrypto (): Promise<TokenCrypto> {
  const at = (path: string): string => new URL(path, import.meta.url).href
  try {
    const random = await import(at('../lib/crypto/random-token.js')) as Pick<TokenCrypto, 'generateToken'>
    const token = await import(at('../lib/session/token.js')) as Pick<TokenCrypto, 'generateLocator' | 'recordIdOf' | 'secretKeyOf'>
    const cipher = await import(at('../lib/crypto/cipher.js')) as Pick<TokenCrypto, 'successorOf'>
    return {
      generateToken: random.generateToken,
      generateLocator: token.generateLocator,
      recordIdOf: token.recordIdOf,
      secretKeyOf: token.secretKeyOf,
      successorOf: cipher.successorOf
    }
  } catch (err) {
    throw new Unavailable(`the token modules do not load from dist/lib: ${(err as Error).message}`)
  }
}

type RedisStoreCtor = new (options: { client: Redis, prefix?: string, secret: unknown }) => { close: () => Promise<void>, ready?: () => Promise<void> }

/** RedisStore from the package's exports, else from its module in dist/; Unavailable when neither has it. */
async function loadRedisStore (): Promise<RedisStoreCtor> {
  const index = await import('fastify-xems') as Record<string, unknown>
  if (typeof index.RedisStore === 'function') return index.RedisStore as RedisStoreCtor
  const url = new URL('../lib/store/redis/redis-store.js', import.meta.url).href
  let mod: Record<string, unknown>
  try {
    mod = await import(url) as Record<string, unknown>
  } catch (err) {
    const code = (err as { code?: string }).code
    if (code === 'ERR_MODULE_NOT_FOUND') throw new Unavailable('no RedisStore export and no dist/lib/store/redis/redis-store.js')
    throw new Unavailable(`dist/lib/store/redis/redis-store.js does not load: ${(err as Error).message}`)
  }
  if (typeof mod.RedisStore !== 'function') throw new Unavailable('dist/lib/store/redis/redis-store.js exports no RedisStore class')
  return mod.RedisStore as RedisStoreCtor
}

async function redisClient (): Promise<Redis> {
  const client = new Redis({ host: '127.0.0.1', port: 6379, lazyConnect: true, maxRetriesPerRequest: 1, enableOfflineQueue: true })
  client.on('error', () => {})
  try {
    await client.connect()
  } catch (err) {
    client.disconnect()
    throw new Unavailable(`Redis at 127.0.0.1:6379 is not reachable: ${(err as Error).message}`)
  }
  return client
}

/** A server whose keys are under `prefix` on its own client: they are dropped, and the client closed, after it. */
function onRedisPrefix (app: FastifyInstance, client: Redis, prefix: string): Built {
  return {
    app,
    notes: [`keys under ${prefix}*`],
    close: async () => {
      await dropKeys(client, `${prefix}*`)
      await client.quit()
    }
  }
}

async function dropKeys (client: Redis, pattern: string): Promise<void> {
  let cursor = '0'
  do {
    const [next, keys] = await client.scan(cursor, 'MATCH', pattern, 'COUNT', 1000)
    if (keys.length > 0) await client.unlink(...keys)
    cursor = next
  } while (cursor !== '0')
}

/** The main thread's scheduler figures (Linux): ns on a CPU, ns runnable but waiting for one, and slices. */
function schedstat (): [number, number, number] {
  try {
    const [run = 0, wait = 0, slices = 0] = readFileSync(`/proc/self/task/${process.pid}/schedstat`, 'utf8').trim().split(/\s+/).map(Number)
    return [run, wait, slices]
  } catch {
    return [0, 0, 0]
  }
}

function send (message: ServerMessage): void {
  process.send?.(message)
}

async function main (): Promise<void> {
  const id = process.argv[2] ?? ''
  const build = SERVERS[id]
  if (build === undefined) throw new Error(`unknown server "${id}"; one of: ${Object.keys(SERVERS).join(', ')}`)
  let built: Built
  try {
    built = await build()
  } catch (err) {
    if (!(err instanceof Unavailable)) throw err
    send({ type: 'unavailable', reason: err.message })
    process.disconnect?.()
    return
  }
  const { app } = built
  await app.listen({ host: '127.0.0.1', port: 0 })
  const address = app.server.address()
  if (address === null || typeof address === 'string') throw new Error('no TCP address')

  const hrtimeUs = (): number => Number(process.hrtime.bigint() / 1000n)
  // Time the main thread spent in GC pauses, counted from cpu-start.
  let gcMs = 0
  new PerformanceObserver((list) => { for (const entry of list.getEntries()) gcMs += entry.duration }).observe({ entryTypes: ['gc'] })
  let cpuStart = process.cpuUsage()
  let wallStart = performance.now()
  let windowStart = hrtimeUs()
  let schedStart = schedstat()
  let stopping = false
  const stop = async (): Promise<void> => {
    if (stopping) return
    stopping = true
    await app.close()
    await built.close?.()
    send({ type: 'stopped' })
    // Exit through process.exit so that --cpu-prof writes its profile.
    process.exit(0)
  }
  process.on('message', (command: ServerCommand) => {
    if (command.type === 'cpu-start') {
      cpuStart = process.cpuUsage()
      wallStart = performance.now()
      windowStart = hrtimeUs()
      schedStart = schedstat()
      gcMs = 0
    } else if (command.type === 'cpu-stop') {
      const used = process.cpuUsage(cpuStart)
      const sched = schedstat()
      send({
        type: 'cpu',
        userMicros: used.user,
        systemMicros: used.system,
        wallMs: performance.now() - wallStart,
        rssBytes: process.memoryUsage.rss(),
        windowUs: [windowStart, hrtimeUs()],
        gcMs,
        mainThread: { cpuMs: (sched[0] - schedStart[0]) / 1e6, waitMs: (sched[1] - schedStart[1]) / 1e6, slices: sched[2] - schedStart[2] }
      })
    } else if (command.type === 'stop') {
      void stop()
    }
  })
  process.on('disconnect', () => { void stop() })
  process.on('SIGTERM', () => { void stop() })
  send({ type: 'ready', port: address.port, ...(built.notes === undefined ? {} : { notes: built.notes }) })
}

main().catch((err: unknown) => {
  console.error(err)
  process.exit(1)
})
