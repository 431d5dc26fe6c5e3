import { createHash, randomBytes } from 'node:crypto'
import t from 'tap'
import { deriveKey, Keyring, openAsTokenHolder, parseSecret, sealForTokenHolder, sha256Prefix16 } from '../../../lib/crypto/cipher.js'
import { generateToken } from '../../../lib/crypto/random-token.js'

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

t.test('grace boxes open only with the old token', async (t) => {
  const oldToken = generateToken()
  const newToken = generateToken()
  const box = sealForTokenHolder(oldToken, newToken)
  t.notMatch(box, newToken)
  t.equal(openAsTokenHolder(oldToken, box), newToken)
  t.equal(openAsTokenHolder(generateToken(), box), null, 'another token cannot open it')
  t.equal(openAsTokenHolder(oldToken, box.slice(0, 10)), null)
  t.equal(openAsTokenHolder(oldToken, 'AAAA' + box.slice(4)), null)
  t.equal(deriveKey(Buffer.from('a'), 'p').length, 32)
})

// The box format is stored (vault, Redis, PostgreSQL): it must stay byte for byte the documented
// construction, whatever the code computing it. Rebuilt here independently, with Hash objects.
function documentedBox (holder: string, secret: string): string {
  const keys = createHash('sha512').update('xems/grace/v3|' + holder).digest()
  const ciphertext = Buffer.from(secret, 'base64url').map((byte, i) => byte ^ keys[i]!)
  const head = Buffer.concat([Buffer.from([3]), ciphertext])
  const tag = createHash('sha256').update(keys.subarray(32)).update(head).digest().subarray(0, 16)
  return Buffer.concat([head, tag]).toString('base64url')
}

t.test('grace boxes are exactly the documented construction (version 3)', async (t) => {
  for (let i = 0; i < 200; i++) {
    const holder = `${generateToken().slice(0, 21)}A.${generateToken()}`
    const secret = generateToken()
    const box = sealForTokenHolder(holder, secret)
    if (box !== documentedBox(holder, secret)) {
      t.fail('a box differs from the documented construction')
      return
    }
    if (openAsTokenHolder(holder, box) !== secret) {
      t.fail('a box does not open')
      return
    }
  }
  t.pass('200 boxes: the documented bytes, and each opens with its holder token')
})
