/**
 * What the bench servers, the load client and the runner share: the servers, the session payload and
 * the messages they exchange over IPC. Benchmarks print numbers; they are never tests.
 */

export interface ServerSpec {
  /** Stable id: the argument of `node dist/bench/server.js <id>` and the key in results. */
  id: string
  /** Row label in the results table. */
  label: string
  /** What it is, for the docs. */
  description: string
  /** Whether /me returns session data (false: a constant, for the bare ceiling). */
  sessions: boolean
}

export const SERVERS: ServerSpec[] = [
  { id: 'bare', label: 'bare Fastify (no sessions)', description: 'Fastify 5 without sessions: /me returns a constant. The ceiling.', sessions: false },
  {
    id: 'fastify-session',
    label: '@fastify/session (memory)',
    description: '@fastify/session + @fastify/cookie, default in-memory store, default options (rolling: true saves and re-sends the cookie on every response).',
    sessions: true
  },
  {
    id: 'secure-session', label: '@fastify/secure-session', description: '@fastify/secure-session: stateless, the data sealed (libsodium secretbox) in the cookie.', sessions: true
  },
  {
    id: 'xems-static',
    label: 'fastify-xems memory, autoRotation false',
    description: 'xemsSession on the default MemoryStore, autoRotation: false (the token stays).',
    sessions: true
  },
  {
    id: 'xems-rotate',
    label: 'fastify-xems memory, rotation',
    description: 'xemsSession on the default MemoryStore, autoRotation: true, gracePeriod 0 (a new token on every response).',
    sessions: true
  },
  {
    id: 'rotation-floor',
    label: 'floor: a new cookie per response, no session library',
    description: 'Fastify + @fastify/cookie and a plain Map token → profile: every /me looks the cookie up, moves the entry to a fresh random 32-byte token and sends it ' +
      '(Set-Cookie, Cache-Control: no-store). No hashing, no sealing, no expiry: the least any per-response rotation over a cookie costs.',
    sessions: true
  },
  {
    id: 'rotation-floor-crypto',
    label: 'floor + the hashing xems needs per rotation',
    description: 'The floor, plus exactly the hashing a rotating xems request does and nothing else: the token is locator.secret, the Map is ' +
      'keyed by SHA-256 of the locator and holds SHA-256 of the token, and each response derives the next secret and its grace box from the old token ' +
      'and hashes the new one (the library\'s own recordIdOf, secretKeyOf, successorOf). What rotation costs ' +
      'with tokens only stored hashed and a store that holds no usable token, before any session logic.',
    sessions: true
  },
  {
    id: 'xems-persist',
    label: 'fastify-xems memory+vault everysec, rotation',
    description: "xemsSession on MemoryStore with persistence { fsync: 'everysec' } (encrypted journal on disk), rotation on.",
    sessions: true
  },
  { id: 'xems-redis', label: 'fastify-xems RedisStore, rotation', description: 'xemsSession on RedisStore (ioredis, 127.0.0.1:6379), rotation on.', sessions: true },
  {
    id: 'redis-floor',
    label: 'floor: a new cookie per response over Redis, no session library',
    description: 'The floor on Redis (the same ioredis client): every /me GETs the cookie\'s key, then SETs the profile under a fresh random 32-byte ' +
      'token with a PX expiry before it answers with it (Set-Cookie, Cache-Control: no-store). Two round trips of the cheapest commands, nothing ' +
      'deleted, hashed or sealed: the least a rotation that reads at the start of a request and writes at its end costs over Redis.',
    sessions: true
  },
  {
    id: 'fastify-session-redis',
    label: '@fastify/session + connect-redis',
    description: '@fastify/session with connect-redis 8 on ioredis (127.0.0.1:6379), default options.',
    sessions: true
  },
  {
    id: 'xems-postgres',
    label: 'fastify-xems PostgresStore, rotation',
    description: 'xemsSession on PostgresStore (pg Pool of 10, 127.0.0.1:5432, database test, a schema of its own), rotation on.',
    sessions: true
  },
  {
    id: 'fastify-session-pg',
    label: '@fastify/session + connect-pg-simple',
    description: '@fastify/session with connect-pg-simple 10 on a pg Pool of 10 (same database, a table of its own), default options.',
    sessions: true
  }
]

/** The ids the targets are measured against. */
export const BARE_ID = 'bare'
export const PEER_ID = 'fastify-session'
export const ROTATE_ID = 'xems-rotate'

/** The session payload: about 100 bytes of JSON, stored under one key (`user`) by every server. */
export interface Profile {
  id: string
  name: string
  email: string
  roles: string[]
  plan: string
}

export function profileFor (user: string): Profile {
  return { id: user, name: 'Ada Lovelace', email: 'ada@example.test', roles: ['reader', 'writer'], plan: 'pro' }
}

/** What the bare server answers on /me: the same shape, a constant. */
export const CONSTANT_PROFILE = profileFor('constant')

/** Server → runner. */
export type ServerMessage =
  | { type: 'ready', port: number, notes?: string[] }
  | { type: 'unavailable', reason: string }
  /** CPU used between cpu-start and cpu-stop; the window in µs of process.hrtime (the clock of --cpu-prof). */
  | {
    type: 'cpu'
    userMicros: number
    systemMicros: number
    wallMs: number
    rssBytes: number
    windowUs: [number, number]
    gcMs: number
    mainThread: { cpuMs: number, waitMs: number, slices: number }
  }
  | { type: 'stopped' }

/** Runner → server. */
export type ServerCommand = { type: 'cpu-start' } | { type: 'cpu-stop' } | { type: 'stop' }

export interface LoadConfig {
  origin: string
  /** Virtual users: each logs in once, then loops GET /me with its own cookie jar. */
  vus: number
  /** Keep-alive connections of the undici pool the VUs share. */
  connections: number
  warmupMs: number
  durationMs: number
  /** Whether /me bodies must carry the VU's own id (false for the bare server's constant). */
  sessions: boolean
}

export interface LoadResult {
  requests: number
  elapsedMs: number
  rps: number
  latencyMs: { p50: number, p90: number, p99: number, max: number, mean: number }
  /** Non-2xx answers to GET /me in the measured window, by status. */
  statuses: Record<string, number>
  non2xx: number
  /** 2xx answers whose body was not the VU's own session data. */
  badBodies: number
  /** Socket or protocol errors. */
  networkErrors: number
  /** Failed logins and every error of the warm-up (must be 0 too). */
  otherErrors: number
  /** Responses that carried a Set-Cookie for the session, and those whose value differed from the jar's. */
  setCookie: number
  newValue: number
  logins: number
  /** CPU the load client used in the measured window. */
  clientCpuMs: number
}

/** Load client → runner. */
export type LoadMessage =
  | { type: 'measure-start' }
  | { type: 'measure-stop' }
  | { type: 'result', result: LoadResult }

export function round (value: number, digits = 2): number {
  const f = 10 ** digits
  return Math.round(value * f) / f
}
