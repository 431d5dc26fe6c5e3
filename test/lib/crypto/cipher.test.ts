import { createHash, randomBytes } from 'node:crypto'
import t from 'tap'
import { deriveKey, Keyring, openAsTokenHolder, parseSecret, successorOf, sha256Prefix16 } from '../../../lib/crypto/cipher.js'
import { generateToken, isWellFormedToken } from '../../../lib/crypto/random-token.js'
import { generateLocator, isWellFormedSessionToken, sessionTokenOf } from '../../../lib/session/token.js'

const secretA = randomBytes(32)
const secretB = randomBytes(32)

t.test('parseSecret takes exactly 32 bytes in the documented forms', async (t) => {
  t.same(parseSecret(secretA, 's'), secretA)
  t.same(parseSecret(new Uint8Array(secretA), 's'), secretA)
  t.same(parseSecret(secretA.toString('hex'), 's'), secretA)
  t.same(parseSecret(secretA.toString('base64'), 's'), secretA)
  t.same(parseSecret(secretA.toString('base64url'), 's'), secretA)
  t.same(parseSecret('my-32-character-ultra-secure-key', 's'), Buffer.from('my-32-character-ultra-secure-key'))
  for (const bad of [randomBytes(31), randomBytes(33), 'short', 'a'.repeat(31), 'a'.repeat(33), 'é'.repeat(32), secretA.toString('hex').slice(2), 42, null, undefined]) {
    t.throws(
      () => parseSecret(bad, 'persistence.secret'), { code: 'FST_XEMS_BAD_SECRET', message: /option "persistence.secret" is not a usable secret: it must be exactly 32 bytes/ }
    )
  }
  try {
    parseSecret('x'.repeat(31), 'secret')
  } catch (err) {
    t.notMatch((err as Error).message, 'x'.repeat(31), 'the message never echoes the value')
  }
})

t.test('sha256Prefix16 is the first 16 bytes of SHA-256 in base64url, for any input (stored ids and keys keep their values)', async (t) => {
  const inputs = [
    '', 'a', 'xems/record|' + 'A'.repeat(22), '\u00e9\u{1F600}', ...Array.from({ length: 2000 }, () => randomBytes(1 + (randomBytes(1)[0]! % 90)).toString('base64url'))
  ]
  let same = 0
  for (const input of inputs) {
    if (sha256Prefix16(input) === createHash('sha256').update(input, 'utf8').digest().subarray(0, 16).toString('base64url')) same++
  }
  t.equal(same, inputs.length, 'every input gives the same 22 characters as the Buffer route')
  t.match(sha256Prefix16('x'), /^[A-Za-z0-9_-]{21}[AQgw]$/, 'canonical: the last character carries 2 bits')
})

t.test('seal/open round trip with a fresh nonce each time', async (t) => {
  const ring = new Keyring([secretA], 'test/v1')
  const one = ring.seal('hello', 'place-1')
  const two = ring.seal('hello', 'place-1')
  t.not(one.toString('hex'), two.toString('hex'), 'same plaintext, different ciphertext')
  t.equal(ring.open(one, 'place-1')?.toString(), 'hello')
  t.notOk(one.includes(Buffer.from('hello')), 'no plaintext in the sealed bytes')
})

t.test('a sealed value opens only at its place, under its key, untampered', async (t) => {
  const ring = new Keyring([secretA], 'test/v1')
  const sealed = ring.seal(JSON.stringify({ admin: false }), 'session:1:data:role')
  t.equal(ring.open(sealed, 'session:2:data:role'), null, 'moved to another key: does not open')
  t.equal(new Keyring([secretB], 'test/v1').open(sealed, 'session:1:data:role'), null, 'wrong secret')
  t.equal(new Keyring([secretA], 'other/v1').open(sealed, 'session:1:data:role'), null, 'other purpose')
  for (let i = 0; i < sealed.length; i++) {
    const flipped = Buffer.from(sealed)
    flipped[i]! ^= 0x01
    if (ring.open(flipped, 'session:1:data:role') !== null) t.fail(`flipped byte ${i} still opened`)
  }
  t.equal(ring.open(sealed.subarray(0, 20), 'session:1:data:role'), null, 'truncated')
  t.equal(ring.open(Buffer.alloc(0), 'x'), null, 'empty')
})

t.test('a keyring rotates: new key seals, old keys still open', async (t) => {
  const old = new Keyring([secretA], 'test/v1')
  const sealedOld = old.seal('kept', 'k')
  const rotated = new Keyring([secretB, secretA], 'test/v1')
  t.equal(rotated.open(sealedOld, 'k')?.toString(), 'kept')
  t.ok(rotated.isStale(sealedOld), 'old payloads are reported for rewriting')
  const sealedNew = rotated.seal('fresh', 'k')
  t.notOk(rotated.isStale(sealedNew))
  t.ok(rotated.isStale(Buffer.alloc(3)))
  t.equal(old.open(sealedNew, 'k'), null, 'a keyring without the new key cannot open new data')
  t.throws(() => new Keyring([], 'x'), { code: 'FST_XEMS_BAD_SECRET' })
})

t.test('grace boxes open only with the old token, to the secret the rotation made', async (t) => {
  const oldToken = generateToken()
  const { secret, box } = successorOf(oldToken)
  t.ok(isWellFormedToken(secret), 'the new secret has the shape of every secret (canonical base64url, 32 bytes)')
  t.not(secret, successorOf(oldToken).secret, 'each rotation from one token makes another secret (a fresh nonce)')
  t.notMatch(box, secret)
  t.equal(box.length, 66)
  t.equal(openAsTokenHolder(oldToken, box), secret)
  t.equal(openAsTokenHolder(generateToken(), box), null, 'another token cannot open it')
  t.equal(openAsTokenHolder(oldToken, box.slice(0, 10)), null)
  t.equal(openAsTokenHolder(oldToken, 'AAAA' + box.slice(4)), null)
  t.equal(deriveKey(Buffer.from('a'), 'p').length, 32)
})

t.test('a chain of successors: every token has the shape of a session token, and none repeats', async (t) => {
  const locator = generateLocator()
  const seen = new Set<string>()
  let token = sessionTokenOf(locator, generateToken())
  let malformed = 0
  for (let i = 0; i < 5000; i++) {
    const { secret, box } = successorOf(token)
    if (openAsTokenHolder(token, box) !== secret) {
      t.fail(`rotation ${i}: the box does not give the secret back`)
      return
    }
    token = sessionTokenOf(locator, secret)
    if (!isWellFormedSessionToken(token)) malformed++
    seen.add(secret)
  }
  t.equal(malformed, 0, 'the session token syntax (canonical last characters) accepts all 5000')
  t.equal(seen.size, 5000, 'no secret comes twice')
})

/** Bits `from` to `from + 8 * bytes - 1` of `buffer`, most significant first, as bytes. */
function bitsOf (buffer: Buffer, from: number, bytes: number): Buffer {
  const all = BigInt('0x' + buffer.toString('hex'))
  const width = BigInt(buffer.length * 8)
  const value = (all >> (width - BigInt(from) - BigInt(bytes * 8))) & ((1n << BigInt(bytes * 8)) - 1n)
  return Buffer.from(value.toString(16).padStart(bytes * 2, '0'), 'hex')
}

// The box format is stored (vault, Redis, PostgreSQL) and the secret it gives is the client's next token:
// both must stay exactly the documented construction, whatever the code computing them. Rebuilt here
// independently, with Hash objects, Buffers and BigInt bit arithmetic.
function documented (holder: string, box: string): { secret: string, box: string } | null {
  const head = Buffer.from(box.slice(0, 44), 'base64url')
  if (head.length !== 33 || head[0] !== 4) return null
  const o = createHash('sha512').update('xems/grace/v4|' + holder + '|' + box.slice(0, 44)).digest()
  const check = bitsOf(o, 258, 16)
  return { secret: o.subarray(0, 32).toString('base64url'), box: Buffer.concat([head, check]).toString('base64url') }
}

t.test('successors and grace boxes are exactly the documented construction (version 4)', async (t) => {
  for (let i = 0; i < 200; i++) {
    const holder = `${generateToken().slice(0, 21)}A.${generateToken()}`
    const { secret, box } = successorOf(holder)
    const expected = documented(holder, box)
    if (expected === null || box !== expected.box || secret !== expected.secret) {
      t.fail('a successor or its box differs from the documented construction')
      return
    }
    if (openAsTokenHolder(holder, box) !== secret) {
      t.fail('a box does not open')
      return
    }
  }
  t.pass('200 rotations: the documented secret and box bytes, and each box opens with its holder token')
})
