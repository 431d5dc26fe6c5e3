/**
 * Property-based tests (fast-check) over every parser that sees client input: the syntax checks of
 * session tokens (`locator.secret`) and of bare 256-bit secrets (lib/crypto/random-token.ts, still used by the MFA
 * plugin), the plugin's cookie and header paths, durations, the AES-GCM keyring and the grace boxes, session
 * data encoding and diffing, TOTP verification and the MFA code route. Vault files (disk input) are
 * in vault-fuzz.test.ts.
 *
 * Runs are reproducible: the seed is fixed (FC_SEED overrides it) and a failure prints fast-check's
 * seed and path, which replay it exactly (`{ seed, path }` in fc.assert).
 */
import { randomBytes } from 'node:crypto'
import fc from 'fast-check'
import t from 'tap'
import { Keyring, openAsTokenHolder, successorOf } from '../../lib/crypto/cipher.js'
import { parseDuration } from '../../lib/duration.js'
import { XemsError } from '../../lib/errors.js'
import { hashRecoveryCodes, normalizeRecoveryCode } from '../../lib/mfa/recovery-codes.js'
import { decodeData, diffData, encodeData } from '../../lib/session/data.js'
import { generateLocator, isWellFormedSessionToken, parseSessionToken, sessionTokenOf } from '../../lib/session/token.js'
import type { SessionStore } from '../../lib/store/contract.js'
import { MemoryStore } from '../../lib/store/memory/memory-store.js'
import { generateToken, isWellFormedToken } from '../../lib/crypto/random-token.js'
import { generateTotp, generateTotpSecret, verifyTotp } from '../../lib/mfa/totp.js'
import { buildApp, setCookieToken } from '../helpers.js'
import { buildMfaApp, post } from '../mfa-app.js'

const SEED = Number(process.env.FC_SEED ?? 20_251_126)
const runs = (numRuns: number): fc.Parameters<unknown> => ({ seed: SEED, numRuns })

const B64URL = [...'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_']

/** An oracle independent of the regular expression under test: 32 bytes, canonically encoded. */
function isCanonicalToken (value: string): boolean {
  if (value.length !== 43 || !/^[A-Za-z0-9_-]+$/.test(value)) return false
  const bytes = Buffer.from(value, 'base64url')
  return bytes.length === 32 && bytes.toString('base64url') === value
}

/** An oracle for session tokens, also without the regular expression: two canonical parts around one dot. */
function isCanonicalSessionToken (value: string): boolean {
  const parts = value.split('.')
  if (parts.length !== 2 || parts[0]!.length !== 22 || !/^[A-Za-z0-9_-]+$/.test(parts[0]!)) return false
  const locator = Buffer.from(parts[0]!, 'base64url')
  return locator.length === 16 && locator.toString('base64url') === parts[0] && isCanonicalToken(parts[1]!)
}

const newSessionToken = (): string => sessionTokenOf(generateLocator(), generateToken())

/** Edits of a real token: one character replaced, inserted or deleted, or a prefix/suffix added. */
const edited = (make: () => string, length: number): fc.Arbitrary<string> =>
  fc.tuple(fc.nat({ max: length - 1 }), fc.string({ unit: 'binary', minLength: 1, maxLength: 3 }), fc.constantFrom('replace', 'insert', 'delete', 'prefix', 'suffix'))
    .map(([at, text, edit]) => {
      const token = make()
      switch (edit) {
        case 'replace': return token.slice(0, at) + text + token.slice(at + text.length)
        case 'insert': return token.slice(0, at) + text + token.slice(at)
        case 'delete': return token.slice(0, at) + token.slice(at + 1)
        case 'prefix': return text + token
        default: return token + text
      }
    })
const nearToken = edited(generateToken, 43)
const nearSessionToken = edited(newSessionToken, 66)
/** 66 characters of the base64url alphabet with a dot at the separator's place: canonical or not at random. */
const sessionShaped = fc.tuple(
  fc.string({ unit: fc.constantFrom(...B64URL), minLength: 22, maxLength: 22 }), fc.string({ unit: fc.constantFrom(...B64URL), minLength: 43, maxLength: 43 })
)
  .map(([locator, secret]) => `${locator}.${secret}`)

/** Junk a client can send: any code points, control characters, near-tokens, huge values. */
const junk = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 120 }),
  fc.string({ unit: 'binary-ascii', maxLength: 120 }),
  fc.string({ unit: 'grapheme', maxLength: 60 }),
  fc.string({ unit: fc.constantFrom(...B64URL), minLength: 40, maxLength: 46 }),
  fc.string({ unit: fc.constantFrom(...B64URL, '.'), minLength: 62, maxLength: 70 }),
  fc.string({ unit: fc.constantFrom('\u0000', '\r', '\n', '\t', ';', '=', ',', '"', '%', '\\', ' ', '\u007f', '\uffff'), maxLength: 50 }),
  nearToken,
  nearSessionToken,
  nearSessionToken.map((value) => encodeURIComponent(value)),
  fc.constant(null).map(() => generateToken()), // a bare secret, the old token shape
  fc.constant(null).map(newSessionToken), // well formed, never issued: reaches the store, an unknown record
  sessionShaped,
  fc.tuple(fc.string({ unit: 'binary', minLength: 1, maxLength: 3 }), fc.integer({ min: 5_000, max: 40_000 })).map(([text, n]) => text.repeat(n))
)

t.test('isWellFormedSessionToken and parseSessionToken agree with an oracle of two canonical parts, on any input', async (t) => {
  fc.assert(fc.property(fc.oneof(junk, sessionShaped, fc.anything()), (value) => {
    const expected = typeof value === 'string' && isCanonicalSessionToken(value)
    const parsed = parseSessionToken(value)
    return isWellFormedSessionToken(value) === expected &&
      (expected ? parsed !== null && parsed.token === value && `${parsed.locator}.${parsed.secret}` === value : parsed === null)
  }), runs(5000))
  let ok = 0
  for (let i = 0; i < 1000; i++) if (isWellFormedSessionToken(newSessionToken())) ok++
  t.equal(ok, 1000, 'every issued token passes')
  t.notOk(isWellFormedSessionToken(generateToken()), 'a bare secret is not a session token')
})

t.test('isWellFormedToken (bare secrets, lib/crypto/random-token.ts) agrees with a canonical-base64url-of-32-bytes oracle, on any input', async (t) => {
  fc.assert(fc.property(fc.oneof(junk, fc.string({ unit: fc.constantFrom(...B64URL), minLength: 43, maxLength: 43 }), fc.anything()), (value) => {
    return isWellFormedToken(value) === (typeof value === 'string' && isCanonicalToken(value))
  }), runs(5000))
  let ok = 0
  for (let i = 0; i < 1000; i++) if (isWellFormedToken(generateToken())) ok++
  t.equal(ok, 1000, 'every issued token passes')
})

t.test('cookie and header paths: junk never gives a 5xx, a session, a cookie, or a store lookup', async (t) => {
  const inner = new MemoryStore()
  let lookups = 0
  const spy: SessionStore = new Proxy(inner, {
    get (target, property, receiver) {
      const value = Reflect.get(target, property, receiver)
      if (typeof value !== 'function') return value
      return (...args: unknown[]) => {
        if (property === 'resolve') lookups++
        return value.apply(target, args)
      }
    }
  })
  const { app } = await buildApp({ store: spy })
  t.teardown(async () => { await app.close(); await inner.close() })
  const valid = setCookieToken(await app.inject({ method: 'POST', url: '/login' }))!

  const decode = (value: string): string => { try { return decodeURIComponent(value) } catch { return value } }
  /** Could the plugin's parsers turn this into a well-formed session token? Then a store lookup is allowed. */
  const mayLookUp = (value: string): boolean => [value, value.trim(), decode(value), decode(value).trim()].some(isWellFormedSessionToken)
  let lookupsAllowed = 0

  const failures: string[] = []
  await fc.assert(fc.asyncProperty(junk, fc.constantFrom('cookie', 'header', 'raw-cookie-header', 'both'), async (value, how) => {
    const before = lookups
    const headers: Record<string, string> =
      how === 'cookie'
        ? { cookie: `xems=${value}` }
        : how === 'header'
          ? { 'x-xems-token': value }
          : how === 'raw-cookie-header'
            ? { cookie: value }
            : { cookie: `xems=${valid}`, 'x-xems-token': value }
    const open = await app.inject({ url: '/public', headers })
    const guarded = await app.inject({ url: '/me', headers })
    const problems: string[] = []
    if (open.statusCode >= 500 || guarded.statusCode >= 500) problems.push(`5xx (${open.statusCode}/${guarded.statusCode})`)
    if (open.statusCode !== 200 || open.json().sandbox !== null) problems.push('a session on /public')
    if (guarded.statusCode !== 401) problems.push(`guarded route answered ${guarded.statusCode}`)
    for (const r of [open, guarded]) if (r.headers['set-cookie'] !== undefined || r.headers['x-xems-token'] !== undefined) problems.push('a token set or cleared')
    if (how !== 'raw-cookie-header' && lookups !== before && !mayLookUp(value)) problems.push('a store lookup for a value that is not a token')
    if (lookups !== before) lookupsAllowed++
    if (problems.length > 0) failures.push(`${how} ${JSON.stringify(value.slice(0, 60))}: ${problems.join(', ')}`)
    return problems.length === 0
  }), runs(600))
  t.same(failures, [])
  t.ok(lookupsAllowed > 10, `some junk was well-formed and reached the store (${lookupsAllowed} times), resolving to nothing`)
  t.equal((await app.inject({ url: '/me', cookies: { xems: valid } })).statusCode, 200, 'the valid session was never disturbed by junk')
})

t.test('parseDuration: accepts exactly <digits><unit> and safe whole ms, throws only FST_XEMS_BAD_DURATION, round-trips', async (t) => {
  const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }
  const LONGEST = 10 * 365 * 86_400_000
  const candidate = fc.oneof(
    fc.anything(),
    fc.string({ unit: 'binary', maxLength: 20 }),
    fc.tuple(fc.stringMatching(/^[0-9]{1,11}$/), fc.constantFrom('ms', 's', 'm', 'h', 'd', 'w', 'S', 'M', '', ' ms', 'ms ')).map(([digits, unit]) => digits + unit),
    fc.oneof(fc.integer(), fc.double(), fc.maxSafeInteger(), fc.constantFrom(-0, NaN, Infinity, 2 ** 53, LONGEST, LONGEST + 1))
  )
  fc.assert(fc.property(candidate, (value) => {
    let ms: number
    try {
      ms = parseDuration(value, 'opt')
    } catch (err) {
      return err instanceof XemsError && err.code === 'FST_XEMS_BAD_DURATION' && err.message.includes('"opt"')
    }
    if (!Number.isSafeInteger(ms) || ms < 0 || ms > LONGEST) return false
    if (parseDuration(ms, 'opt') !== ms) return false
    if (typeof value === 'number') return value === ms
    if (typeof value !== 'string') return false
    const match = /^([0-9]{1,9})(ms|s|m|h|d)$/.exec(value)
    if (match === null) return false
    return ms === Number(match[1]) * UNITS[match[2]!]! && parseDuration(`${Number(match[1])}${match[2]}`, 'opt') === ms
  }), runs(3000))
  t.pass('no counterexample')
})

t.test('Keyring.open: random bytes, truncations, bit flips, extensions, other keys and other places all give null, never a throw', async (t) => {
  const secret = randomBytes(32)
  const ring = new Keyring([secret], 'xems/test/v1')
  const otherSecret = new Keyring([randomBytes(32)], 'xems/test/v1')
  const otherPurpose = new Keyring([secret], 'xems/other/v1')
  const sample = ring.seal('x', 'a')

  fc.assert(fc.property(fc.uint8Array({ maxLength: 200 }), fc.boolean(), fc.string(), (bytes, realHeader, aad) => {
    const sealed = Buffer.from(bytes)
    // Half the time give it a real version byte and key id, so the random bytes reach AES-GCM.
    if (realHeader && sealed.length >= 5) sample.copy(sealed, 0, 0, 5)
    return ring.open(sealed, aad) === null
  }), runs(2000))

  const damage = fc.record({
    plain: fc.uint8Array({ maxLength: 300 }),
    aad: fc.string({ unit: 'binary', maxLength: 40 }),
    otherAad: fc.string({ unit: 'binary', maxLength: 40 }),
    cut: fc.nat(),
    flips: fc.array(fc.nat(), { minLength: 1, maxLength: 4 }),
    tail: fc.uint8Array({ minLength: 1, maxLength: 16 })
  })
  fc.assert(fc.property(damage, ({ plain, aad, otherAad, cut, flips, tail }) => {
    const sealed = ring.seal(Buffer.from(plain), aad)
    if (!ring.open(sealed, aad)?.equals(Buffer.from(plain))) return false
    const truncated = sealed.subarray(0, cut % sealed.length)
    const flipped = Buffer.from(sealed)
    for (const bit of flips) flipped[(bit >> 3) % flipped.length]! ^= 1 << (bit & 7)
    const changed = !flipped.equals(sealed)
    const sameAad = Buffer.from(otherAad, 'utf8').equals(Buffer.from(aad, 'utf8'))
    return ring.open(truncated, aad) === null &&
      (!changed || ring.open(flipped, aad) === null) &&
      ring.open(Buffer.concat([sealed, Buffer.from(tail)]), aad) === null &&
      (sameAad || ring.open(sealed, otherAad) === null) &&
      otherSecret.open(sealed, aad) === null &&
      otherPurpose.open(sealed, aad) === null
  }), runs(1000))
  t.pass('no counterexample')
})

t.test('openAsTokenHolder: junk gives null, never a throw; a damaged box or another holder never opens', async (t) => {
  fc.assert(fc.property(fc.oneof(junk, fc.constant(null).map(newSessionToken)), fc.oneof(junk, fc.base64String()), (holder, box) => {
    const opened = openAsTokenHolder(holder, box)
    return opened === null || typeof opened === 'string'
  }), runs(1000))

  // As the engine makes them: the next secret, for the holder of the whole presented token.
  fc.assert(fc.property(fc.oneof(fc.constant(null), junk), fc.nat(), fc.array(fc.nat(), { minLength: 1, maxLength: 4 }), (otherHolder, cut, flips) => {
    const holder = newSessionToken()
    const { secret: next, box } = successorOf(holder)
    if (openAsTokenHolder(holder, box) !== next) return false
    const bytes = Buffer.from(box, 'base64url')
    const truncated = bytes.subarray(0, cut % bytes.length).toString('base64url')
    const flipped = Buffer.from(bytes)
    for (const bit of flips) flipped[(bit >> 3) % flipped.length]! ^= 1 << (bit & 7)
    const wrong = otherHolder ?? generateToken()
    const sameHolder = Buffer.from(wrong, 'utf8').equals(Buffer.from(holder, 'utf8'))
    const { locator, secret } = parseSessionToken(holder)!
    return openAsTokenHolder(holder, truncated) === null &&
      (flipped.equals(bytes) || openAsTokenHolder(holder, flipped.toString('base64url')) === null) &&
      (sameHolder || openAsTokenHolder(wrong, box) === null) &&
      openAsTokenHolder(sessionTokenOf(locator, generateToken()), box) === null && // another token of the same session
      openAsTokenHolder(secret, box) === null && // the secret without its locator
      openAsTokenHolder(sessionTokenOf(generateLocator(), secret), box) === null // the secret under another locator
  }), runs(1000))
  t.pass('no counterexample')
})

t.test('every bit of a grace box is authenticated: any single flipped bit is refused', async (t) => {
  const holder = newSessionToken()
  const { box } = successorOf(holder)
  const bytes = Buffer.from(box, 'base64url')
  let opened = 0
  for (let bit = 0; bit < bytes.length * 8; bit++) {
    const changed = Buffer.from(bytes)
    changed[bit >> 3]! ^= 1 << (bit & 7)
    if (openAsTokenHolder(holder, changed.toString('base64url')) !== null) opened++
  }
  t.equal(opened, 0, `none of ${bytes.length * 8} flipped bits opens`)
  t.equal(openAsTokenHolder(holder, box + 'A'), null, 'nor a longer text')
  // The last character carries 2 data bits and 4 zero bits: the next character of the alphabet encodes
  // the same bytes, non-canonically.
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'
  const sameBytes = box.slice(0, -1) + alphabet[alphabet.indexOf(box.at(-1)!) + 1]!
  t.ok(Buffer.from(sameBytes, 'base64url').equals(bytes), 'the variant decodes to the same bytes')
  t.equal(openAsTokenHolder(holder, sameBytes), null, 'nor a non-canonical encoding of the same bytes')
  const other = successorOf(holder).box
  t.equal(openAsTokenHolder(holder, box.slice(0, 44) + other.slice(44)), null, 'nor a right version and nonce with the check of another box')
})

t.test('session data: decode(encode(x)) diffs to null against x; a change or a removal is exactly the patch', async (t) => {
  const key = fc.oneof(fc.string({ unit: 'binary', maxLength: 12 }), fc.constantFrom('__proto__', 'constructor', 'prototype', 'toString', '0', '1', ''))
  const data = fc.dictionary(key, fc.jsonValue({ maxDepth: 3 }), { maxKeys: 8 })
  fc.assert(fc.property(data, fc.jsonValue({ maxDepth: 2 }), fc.nat(), (x, replacement, pick) => {
    const encoded = encodeData(x)
    const decoded = decodeData(encoded)
    if (diffData(encoded, decoded) !== null) return false
    if (diffData(encoded, x) !== null) return false
    if (JSON.stringify(decoded) !== JSON.stringify(x)) return false
    if (({} as Record<string, unknown>).polluted !== undefined || Object.getPrototypeOf(decoded) !== Object.prototype) return false
    const keys = Object.keys(x)
    if (keys.length === 0) return diffData(encoded, { added: 1 })?.added === '1'
    const k = keys[pick % keys.length]!
    const changed = decodeData(encoded)
    Object.defineProperty(changed, k, { value: replacement, enumerable: true, writable: true, configurable: true })
    const patch = diffData(encoded, changed)
    const text = JSON.stringify(replacement)
    const changePatch = text === encoded[k] ? patch === null : patch !== null && Object.keys(patch).length === 1 && patch[k] === text
    const removed = decodeData(encoded)
    delete removed[k]
    const removal = diffData(encoded, removed)
    return changePatch && removal !== null && Object.keys(removal).length === 1 && removal[k] === null
  }), runs(1000))
  // JSON.parse makes "__proto__" an own key, as a store or vault entry would hold it.
  const stored = JSON.parse('{"__proto__":"{\\"polluted\\":true}","constructor":"{\\"prototype\\":{\\"polluted\\":true}}"}') as Record<string, string>
  const hostile = decodeData(stored)
  t.equal(({} as Record<string, unknown>).polluted, undefined, 'no prototype pollution from stored keys')
  t.same(Object.keys(hostile).sort(), ['__proto__', 'constructor'].sort(), '__proto__ is just a key')
})

t.test('verifyTotp never throws on a random token, and accepts exactly the codes of the window', async (t) => {
  const secret = generateTotpSecret()
  const at = 1_700_000_000_000
  const window = new Set(await Promise.all([-1, 0, 1].map(async (step) => await generateTotp({ secret, at: at + step * 30_000 }))))
  const token = fc.oneof(junk, fc.stringMatching(/^[0-9]{6}$/), fc.constantFrom(...window), fc.anything())
  await fc.assert(fc.asyncProperty(token, async (value) => {
    const result = await verifyTotp({ secret, token: value as string, at })
    return result.valid === (typeof value === 'string' && window.has(value)) && (result.valid ? Number.isInteger(result.step) : result.step === null)
  }), runs(1000))
  fc.assert(fc.property(fc.anything(), junk, (a, b) => {
    for (const input of [a, b]) {
      const normal = normalizeRecoveryCode(input)
      if (normal !== null && !/^[a-z0-9]{12}$/.test(normal)) return false
    }
    return true
  }), runs(1000))
  t.pass('no counterexample')
})

t.test('the MFA code route: any JSON code is a 401, never a 5xx, never a session, never echoed', async (t) => {
  const ctx = await buildMfaApp({ mfa: { maxAttempts: 10 } })
  const { app, users } = ctx
  t.teardown(async () => { await app.close() })
  const secret = generateTotpSecret()
  const recoveryHashes = await hashRecoveryCodes(['abcd-efgh-jkmn'])
  // 40 users, each below the lockout threshold for the 5 runs it gets (pending sessions come from the engine: no argon2 per run).
  const USERS = 40
  for (let i = 0; i < USERS; i++) users.set(`user${i}`, { passwordHash: 'unused', mfa: { totp: { secret, enrolledAt: 0 }, recoveryCodes: [...recoveryHashes] } })
  const code = fc.oneof(
    fc.jsonValue({ maxDepth: 2 }), junk.map((s) => s.slice(0, 2000)), fc.stringMatching(/^[0-9]{6,8}$/), fc.stringMatching(/^[a-z0-9]{4}-[a-z0-9]{4}-[a-z0-9]{4}$/)
  )
  let run = 0
  const failures: string[] = []
  await fc.assert(fc.asyncProperty(code, async (value) => {
    const userId = `user${run++ % USERS}`
    const pending = await app.xems.createSession('otp-pending', {}, { userId, ttl: '15m' })
    const response = await post(app, '/mfa/verify', { code: value }, pending)
    const problems: string[] = []
    if (response.statusCode !== 401) problems.push(`status ${response.statusCode}`)
    const body = response.json() as { code?: string }
    if (body.code !== 'FST_XEMS_MFA_INVALID') problems.push(`code ${String(body.code)}`)
    if (typeof value === 'string' && value.length >= 6 && response.body.includes(value)) problems.push('the code is echoed')
    if (response.cookies.some((cookie) => cookie.name === 'xems' && cookie.value !== '' && cookie.value !== pending)) {
      const next = response.cookies.find((cookie) => cookie.name === 'xems')!.value
      if ((await app.inject({ url: '/me', cookies: { xems: next } })).statusCode !== 401) problems.push('an active session')
    }
    if (problems.length > 0) failures.push(`${JSON.stringify(value)?.slice(0, 60)}: ${problems.join(', ')}`)
    return problems.length === 0
  }), runs(200))
  t.same(failures, [])
})
