/**
 * Micro-benchmarks of what a rotating request costs, piece by piece, without HTTP: the crypto helpers of
 * fastify-xems as built in dist/lib (session tokens `locator.secret`: random locators and secrets, the
 * syntax check, SHA-256 record ids, token keys and public ids; the grace box),
 * the session-data codec, cookie parse / serialize, and whole engine cycles (open + commit) on a
 * MemoryStore, with and without rotation. Next to them, cheaper ways to compute the same thing, checked
 * to give byte-identical results where they claim to, as evidence for the suggestions in
 * docs/performance.md.
 *
 * `npm run bench:micro` (or `node dist/bench/micro.js` after building). Single process, one core.
 */
import { createCipheriv, createHash, createHmac, hkdfSync, randomBytes, randomFillSync } from 'node:crypto'
import * as nodeCrypto from 'node:crypto'
import { writeFileSync, mkdirSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseCookie, stringifySetCookie } from 'cookie'
import { MemoryStore, XemsEngine } from 'fastify-xems'
import { profileFor, round } from './common.js'

interface TokenModule {
  generateToken: () => string
}
interface SessionTokenModule {
  generateLocator: () => string
  sessionTokenOf: (locator: string, secret: string) => string
  isWellFormedSessionToken: (value: unknown) => boolean
  parseSessionToken: (value: unknown) => { token: string, locator: string, secret: string } | null
  recordIdOf: (locator: string) => string
  secretKeyOf: (token: string) => string
  publicIdOf: (recordId: string) => string
}
interface CipherModule {
  successorOf: (holder: string) => { secret: string, box: string }
  openAsTokenHolder: (holder: string, box: string) => string | null
  deriveKey: (ikm: Buffer, info: string, salt?: Buffer) => Buffer
}
interface DataModule {
  encodeData: (data: unknown) => Record<string, string>
  decodeData: (encoded: Record<string, string>) => Record<string, unknown>
  diffData: (original: Record<string, string>, data: Record<string, unknown>) => Record<string, string | null> | null
}

const here = dirname(fileURLToPath(import.meta.url))
const lib = async <T>(path: string): Promise<T> => await import(new URL(`../lib/${path}`, import.meta.url).href) as T

interface Result { name: string, ns: number, note?: string }
const results: Result[] = []

/**
 * ns of CPU per call of `fn`: the fastest of 7 runs of about 100 ms each, after a warm-up. CPU time of the
 * process (not wall time), so that other processes on the machine do not count; it includes GC threads.
 */
function measure (name: string, fn: () => unknown, note?: string): number {
  let sink: unknown
  let iterations = 1000
  for (;;) {
    const started = performance.now()
    for (let i = 0; i < iterations; i++) sink = fn()
    const elapsed = performance.now() - started
    if (elapsed > 50) { iterations = Math.ceil(iterations * 100 / elapsed); break }
    iterations *= 4
  }
  const runs: number[] = []
  for (let r = 0; r < 7; r++) {
    const started = process.cpuUsage()
    for (let i = 0; i < iterations; i++) sink = fn()
    const used = process.cpuUsage(started)
    runs.push((used.user + used.system) * 1000 / iterations)
  }
  if (sink === Symbol.for('never')) console.log(sink)
  const ns = Math.min(...runs)
  results.push({ name, ns, ...(note === undefined ? {} : { note }) })
  console.log(`${name.padEnd(66)} ${(ns / 1000).toFixed(2).padStart(8)} µs${note === undefined ? '' : `   ${note}`}`)
  return ns
}

async function measureAsync (name: string, fn: () => Promise<unknown>, count: number, note?: string): Promise<number> {
  for (let i = 0; i < Math.min(2000, count); i++) await fn()
  const runs: number[] = []
  for (let r = 0; r < 7; r++) {
    const started = process.cpuUsage()
    for (let i = 0; i < count; i++) await fn()
    const used = process.cpuUsage(started)
    runs.push((used.user + used.system) * 1000 / count)
  }
  const ns = Math.min(...runs)
  results.push({ name, ns, ...(note === undefined ? {} : { note }) })
  console.log(`${name.padEnd(66)} ${(ns / 1000).toFixed(2).padStart(8)} µs${note === undefined ? '' : `   ${note}`}`)
  return ns
}

/** HKDF-SHA256 for a 32-byte output, by hand with two HMACs: the same bytes as hkdfSync (RFC 5869). */
function hkdfByHmac (ikm: Buffer, info: string, salt: Buffer = Buffer.alloc(32)): Buffer {
  const prk = createHmac('sha256', salt.length === 0 ? Buffer.alloc(32) : salt).update(ikm).digest()
  return createHmac('sha256', prk).update(info).update(Buffer.from([1])).digest()
}

/** CSPRNG bytes handed out from a 4 KiB pool refilled by one randomFillSync (what crypto.randomUUID does). */
const POOL = Buffer.allocUnsafe(4096)
let poolOffset = POOL.length
function pooledRandom (size: number): Buffer {
  if (poolOffset + size > POOL.length) {
    randomFillSync(POOL)
    poolOffset = 0
  }
  const out = Buffer.from(POOL.subarray(poolOffset, poolOffset + size))
  poolOffset += size
  return out
}

const GRACE = 'xems/grace-box/v1'
const GRACE_AAD = Buffer.from(GRACE, 'utf8')
const HEADER = Buffer.from([1, 0, 0, 0, 0])

/**
 * The grace box of stop 26 (version 3), rebuilt for comparison: a secret drawn on its own, sealed as
 * `3 | secret XOR SHA-512("xems/grace/v3|" | holder)[0..32] | SHA-256(pad[32..64] | head)[0..16]`.
 */
function sealV3 (holder: string, secret: string): string {
  const keys = Buffer.from(nodeCrypto.hash('sha512', 'xems/grace/v3|' + holder, 'binary'), 'latin1')
  const raw = Buffer.from(secret, 'base64url')
  const box = Buffer.allocUnsafe(49)
  box[0] = 3
  for (let i = 0; i < 32; i++) box[1 + i] = raw[i]! ^ keys[i]!
  const message = Buffer.concat([keys.subarray(32), box.subarray(0, 33)])
  box.write(nodeCrypto.hash('sha256', message, 'binary').slice(0, 16), 33, 16, 'latin1')
  return box.toString('base64url')
}

/** The first grace-box design (HKDF + AES-GCM), with HKDF by HMAC and a pooled nonce, for comparison. */
function sealFast (holder: string, secret: string): string {
  const key = hkdfByHmac(Buffer.from(holder, 'utf8'), GRACE, Buffer.alloc(0))
  const nonce = pooledRandom(12)
  const cipher = createCipheriv('aes-256-gcm', key, nonce)
  cipher.setAAD(GRACE_AAD)
  const body = cipher.update(secret, 'utf8')
  cipher.final()
  return Buffer.concat([HEADER, nonce, cipher.getAuthTag(), body]).toString('base64url')
}

async function main (): Promise<void> {
  const token = await lib<TokenModule>('crypto/random-token.js')
  const sessionToken = await lib<SessionTokenModule>('session/token.js')
  const cipher = await lib<CipherModule>('crypto/cipher.js')
  const data = await lib<DataModule>('session/data.js')
  const hash = (nodeCrypto as unknown as { hash?: (algorithm: string, data: string, encoding: string) => string }).hash

  console.log(`micro-benchmarks, Node ${process.version}: µs of CPU per call (fastest of 7 runs)`)
  console.log('')
  const locator = sessionToken.generateLocator()
  /** A session token (the holder of a grace box) and another secret (what a box of an earlier design sealed). */
  const t = sessionToken.sessionTokenOf(locator, token.generateToken())
  const t2 = token.generateToken()

  console.log('— tokens')
  measure('generateToken: a secret (32 bytes from the CSPRNG pool → base64url)', () => token.generateToken())
  measure('generateLocator (16 bytes from the CSPRNG pool → base64url)', () => sessionToken.generateLocator())
  measure('  for comparison: 32 bytes from randomBytes, no pool', () => randomBytes(32).toString('base64url'))
  measure('secretKeyOf (SHA-256 of the token → 16 bytes base64url)', () => sessionToken.secretKeyOf(t))
  measure('recordIdOf (SHA-256 of the locator → 16 bytes base64url)', () => sessionToken.recordIdOf(locator))
  const recordId = sessionToken.recordIdOf(locator)
  measure('publicIdOf (SHA-256 of the record id, for logs and events)', () => sessionToken.publicIdOf(recordId))
  if (typeof hash === 'function') {
    measure('  for comparison: crypto.hash(sha256) one-shot, full 32 bytes', () => hash('sha256', t, 'base64url'))
  }
  measure('  for comparison: createHash(sha256), full 32 bytes', () => createHash('sha256').update(t).digest('base64url'))
  measure('isWellFormedSessionToken', () => sessionToken.isWellFormedSessionToken(t))
  measure('parseSessionToken', () => sessionToken.parseSessionToken(t))

  console.log('— grace box (once per rotation; opened only on a grace hit)')
  measure('successorOf: the next secret and its box (one SHA-512)', () => cipher.successorOf(t))
  const { secret: next, box } = cipher.successorOf(t)
  if (cipher.openAsTokenHolder(t, box) !== next) throw new Error('the grace box does not open')
  measure('openAsTokenHolder (grace hits only)', () => cipher.openAsTokenHolder(t, box))
  measure('  for comparison, version 3: a drawn secret XOR a SHA-512 pad, SHA-256 tag', () => sealV3(t, token.generateToken()))
  const ikm = Buffer.from(t, 'utf8')
  if (!hkdfByHmac(ikm, GRACE, Buffer.alloc(0)).equals(Buffer.from(hkdfSync('sha256', ikm, Buffer.alloc(0), GRACE, 32)))) throw new Error('HKDF by HMAC differs')
  measure('  for comparison, the first design: HKDF (hkdfSync) + AES-256-GCM', () => {
    const key = Buffer.from(hkdfSync('sha256', ikm, Buffer.alloc(0), GRACE, 32))
    const c = createCipheriv('aes-256-gcm', key, randomBytes(12))
    c.setAAD(GRACE_AAD)
    const body = c.update(t2, 'utf8')
    c.final()
    return Buffer.concat([HEADER, body, c.getAuthTag()])
  })
  measure('  for comparison, the first design with HKDF by HMAC and a pooled nonce', () => sealFast(t, t2))

  console.log('— session data (~100 bytes under one key)')
  const profile = { user: profileFor('vu-0001') }
  const encoded = data.encodeData(profile)
  measure('encodeData', () => data.encodeData(profile))
  measure('decodeData', () => data.decodeData(encoded))
  const decoded = data.decodeData(encoded)
  measure('diffData (unchanged)', () => data.diffData(encoded, decoded))

  console.log('— cookies (the cookie module @fastify/cookie uses)')
  const header = `xems=${t}`
  measure('parseCookie of one session cookie', () => parseCookie(header))
  measure(
    'stringifySetCookie (HttpOnly, SameSite, Path, Max-Age)',
    () => stringifySetCookie({ name: 'xems', value: t, path: '/', httpOnly: true, sameSite: 'lax', secure: false, maxAge: 431999 })
  )

  console.log('— engine cycles on a MemoryStore (what one GET /me does, without HTTP)')
  const store = new MemoryStore({ sweepInterval: '1h' })
  // No grace: each rotated token is dropped at the next rotation. With one, a loop this fast would fill
  // the record (MAX_PAST_TOKENS rotated tokens within their grace) and later rotations would be refused.
  const engine = new XemsEngine({ store, gracePeriod: 0 })
  let current = await engine.createSession('auth-active', profile)
  const cycle = async (rotate: boolean): Promise<void> => {
    const opened = await engine.open(current)
    if (opened.status !== 'live') throw new Error(`session lost: ${opened.status}`)
    const admitted = { id: opened.session.id, sandbox: opened.session.sandbox, presented: opened.presented, migrations: opened.session.migrations }
    const done = await engine.commit(admitted, null, rotate)
    if (done.status !== 'ok') throw new Error('commit failed')
    if (rotate) {
      if (done.token === null || done.token === current) throw new Error('no rotation')
      current = done.token
    }
  }
  const staticCycle = await measureAsync('open + commit, no rotation (touch)', async () => await cycle(false), 10_000)
  const rotateCycle = await measureAsync('open + commit with rotation', async () => await cycle(true), 10_000)
  console.log(`${'  → rotation adds'.padEnd(66)} ${((rotateCycle - staticCycle) / 1000).toFixed(2).padStart(8)} µs`)
  await engine.close()

  const out = join(resolve(here, '../..'), 'bench', 'results')
  mkdirSync(out, { recursive: true })
  writeFileSync(join(out, 'micro.json'), JSON.stringify({
    date: new Date().toISOString(),
    node: process.version,
    results: results.map((r) => ({ name: r.name.trim(), us: round(r.ns / 1000, 3), ...(r.note === undefined ? {} : { note: r.note }) }))
  }, null, 2) + '\n')
  console.log('')
  console.log('written: bench/results/micro.json')
}

main().catch((err: unknown) => {
  console.error(err)
  process.exit(1)
})
