import { createHash } from 'node:crypto'
import t from 'tap'
import { generateToken, isWellFormedToken, TOKEN_LENGTH, tokenKey } from '../../../lib/crypto/random-token.js'

t.test('tokens are 32 CSPRNG bytes in canonical base64url, all distinct', async (t) => {
  const seen = new Set<string>()
  let malformed = 0
  for (let i = 0; i < 5000; i++) {
    const token = generateToken()
    if (token.length !== TOKEN_LENGTH || !isWellFormedToken(token) || Buffer.from(token, 'base64url').length !== 32) malformed++
    seen.add(token)
  }
  t.equal(malformed, 0, 'every token is 43 canonical base64url characters of 32 bytes')
  t.equal(seen.size, 5000, 'no duplicates')
  // every bit position takes both values: a crude check that the bytes are not constant
  const ones = new Array(256).fill(0)
  for (const token of seen) {
    const bytes = Buffer.from(token, 'base64url')
    for (let bit = 0; bit < 256; bit++) ones[bit] += (bytes[bit >> 3]! >> (bit & 7)) & 1
  }
  t.ok(ones.every((n) => n > 2200 && n < 2800), 'each bit is set about half the time')
})

t.test('strict syntax: junk, wrong length, padding and non-canonical endings are refused', async (t) => {
  const good = generateToken()
  t.ok(isWellFormedToken(good))
  const bad: unknown[] = [
    undefined, null, 42, {}, [good], '', 'junk', good + 'A', good.slice(1), good + '=',
    good.slice(0, 42) + '.', good.slice(0, 42) + 'B', // B has a low bit set: not the end of a 32-byte value
    good.replace(/^./, '+'), good.replace(/^./, '/'), ' ' + good.slice(1), 'A'.repeat(4096)
  ]
  for (const value of bad) t.notOk(isWellFormedToken(value), `refuses ${typeof value === 'string' ? value.slice(0, 12) + '…' : String(value)}`)
})

t.test('the store key is SHA-256 of the token', async (t) => {
  const token = generateToken()
  t.equal(tokenKey(token), createHash('sha256').update(token).digest('base64url'))
  t.not(tokenKey(token), token)
})
