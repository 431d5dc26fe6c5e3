/**
 * Session tokens (`<locator>.<secret>`, lib/session/token.ts): the exact syntax a presented value must
 * have before any store work, and the three names derived from a token (record id, public id, token
 * key), which must be one-way, domain-separated and distinct, so that neither a store dump nor a log
 * line gives a locator or a token.
 */
import { createHash } from 'node:crypto'
import t from 'tap'
import { XemsEngine } from '../../../lib/session/engine.js'
import {
  generateLocator, isWellFormedSessionToken, LOCATOR_BYTES, LOCATOR_LENGTH, parseSessionToken, publicIdOf, recordIdOf,
  secretKeyOf, SESSION_TOKEN_LENGTH, sessionTokenOf
} from '../../../lib/session/token.js'
import { MemoryStore } from '../../../lib/store/memory/memory-store.js'
import { generateToken, isWellFormedToken, TOKEN_LENGTH } from '../../../lib/crypto/random-token.js'

const B64URL = [...'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_']
const sha256 = (text: string): Buffer => createHash('sha256').update(text, 'utf8').digest()
const newToken = (): string => sessionTokenOf(generateLocator(), generateToken())

/** An oracle that does not use the regular expression under test: canonical base64url of n bytes. */
function canonical (text: string, bytes: number): boolean {
  if (!/^[A-Za-z0-9_-]*$/.test(text)) return false
  const raw = Buffer.from(text, 'base64url')
  return raw.length === bytes && raw.toString('base64url') === text
}

t.test('the shape: 22-character locator of 16 bytes, a dot, 43-character secret of 32 bytes', async (t) => {
  t.equal(LOCATOR_BYTES, 16)
  t.equal(LOCATOR_LENGTH, 22)
  t.equal(TOKEN_LENGTH, 43)
  t.equal(SESSION_TOKEN_LENGTH, 66)
  let bad = 0
  for (let i = 0; i < 2000; i++) {
    const locator = generateLocator()
    const secret = generateToken()
    const token = sessionTokenOf(locator, secret)
    const parsed = parseSessionToken(token)
    if (token.length !== 66 || !canonical(locator, 16) || !canonical(secret, 32) || !isWellFormedSessionToken(token) ||
      parsed?.locator !== locator || parsed.secret !== secret || parsed.token !== token) bad++
  }
  t.equal(bad, 0, 'every generated token is well formed and splits back into its locator and secret')
})

t.test('tokens the engine issues have the shape, share their locator across rotations, and change their secret', async (t) => {
  const engine = new XemsEngine({ store: new MemoryStore() })
  t.teardown(async () => { await engine.close() })
  const token = await engine.createSession('auth-active', { n: 1 })
  t.ok(isWellFormedSessionToken(token))
  t.notOk(isWellFormedToken(token), 'a session token is not a bare 43-character secret')
  const rotated = await engine.resolveSession(token, { rotate: true })
  if (rotated === null) return t.fail('did not resolve')
  t.ok(isWellFormedSessionToken(rotated.token))
  t.not(rotated.token, token, 'rotation gives a new token')
  t.equal(parseSessionToken(rotated.token)!.locator, parseSessionToken(token)!.locator, 'with the same locator')
  t.not(parseSessionToken(rotated.token)!.secret, parseSessionToken(token)!.secret, 'and a new secret')
  t.equal(rotated.id, publicIdOf(recordIdOf(parseSessionToken(token)!.locator)), 'the session is named by its public id')
})

t.test('exactly the canonical last characters are accepted, for the locator and for the secret', async (t) => {
  const locator = generateLocator()
  const secret = generateToken()
  const locatorEnds = B64URL.filter((c) => isWellFormedSessionToken(sessionTokenOf(locator.slice(0, 21) + c, secret)))
  t.same(locatorEnds.sort(), [...'AQgw'].sort(), 'a 16-byte locator ends in A, Q, g or w')
  const secretEnds = B64URL.filter((c) => isWellFormedSessionToken(sessionTokenOf(locator, secret.slice(0, 42) + c)))
  t.same(secretEnds.sort(), [...'AEIMQUYcgkosw048'].sort(), 'a 32-byte secret ends in one of 16 characters')
  // The same sets, from the oracle: canonical base64url of 16 and 32 bytes.
  t.same(B64URL.filter((c) => canonical(locator.slice(0, 21) + c, 16)).sort(), locatorEnds.sort())
  t.same(B64URL.filter((c) => canonical(secret.slice(0, 42) + c, 32)).sort(), secretEnds.sort())
})

t.test('junk, wrong lengths, padding, other alphabets and misplaced separators are refused, and parse to null', async (t) => {
  const good = newToken()
  const locator = good.slice(0, 22)
  const secret = good.slice(23)
  const notCanonicalLocator = locator.slice(0, 21) + (locator.endsWith('B') ? 'C' : 'B')
  const bad: unknown[] = [
    undefined, null, 0, 66, true, {}, [good], Buffer.from(good), new String(good), '', '.', 'junk',
    good + 'A', good.slice(1), good.slice(0, -1), 'A' + good, good + '=', good + '.', '.' + good,
    locator + secret, // no separator
    locator + '.' + secret.slice(0, 42), // secret short
    locator.slice(0, 21) + '.' + secret + 'A', // separator one place early (still 66 characters)
    locator + 'A.' + secret.slice(1), // separator one place late
    locator + ':' + secret, locator + '_' + secret, locator + '-' + secret, locator + ' ' + secret, locator + '%2E' + secret.slice(2),
    locator + '..' + secret.slice(1),
    notCanonicalLocator + '.' + secret,
    locator + '.' + secret.slice(0, 42) + 'B',
    locator.replace(/^./, '+') + '.' + secret, locator + '.' + secret.replace(/^./, '/'),
    locator + '==.' + secret.slice(2), // padding
    ' ' + good.slice(1), good.slice(0, -1) + ' ', good.slice(0, -1) + '\n', good.replace('.', '\u2024'),
    secret + '.' + locator, // halves swapped
    generateToken(), // a bare secret (the old token shape)
    generateLocator(), // a bare locator
    `${generateToken()}.${generateToken()}`, // two secrets
    `${generateLocator()}.${generateLocator()}`,
    'A'.repeat(66), 'A'.repeat(22) + '.' + 'A'.repeat(43) + 'A', 'A'.repeat(100_000)
  ]
  for (const value of bad) {
    const label = typeof value === 'string' ? JSON.stringify(value.slice(0, 30)) + (value.length > 30 ? `… (${value.length})` : '') : String(value)
    t.notOk(isWellFormedSessionToken(value), `refuses ${label}`)
    t.equal(parseSessionToken(value), null, `parses ${label} to null`)
  }
  t.ok(isWellFormedSessionToken(good), 'the token it was all made from is fine')
  t.ok(isWellFormedSessionToken('A'.repeat(22) + '.' + 'A'.repeat(43)), 'all zeros is canonical (the syntax does not judge randomness)')
})

t.test('the syntax check agrees with the oracle on random near-tokens', async (t) => {
  let disagreements = 0
  for (let i = 0; i < 20_000; i++) {
    const chars = [...newToken()]
    // one to three random edits: replace a character by any base64url character, or by the dot
    for (let e = 0; e < 1 + (i % 3); e++) {
      const at = Math.floor(Math.random() * chars.length)
      chars[at] = Math.random() < 0.05 ? '.' : B64URL[Math.floor(Math.random() * 64)]!
    }
    const value = chars.join('')
    const parts = value.split('.')
    const expected = value.length === 66 && parts.length === 2 && canonical(parts[0]!, 16) && canonical(parts[1]!, 32)
    if (isWellFormedSessionToken(value) !== expected) disagreements++
  }
  t.equal(disagreements, 0)
})

t.test('record id, public id and token key: fixed domain-separated hashes, one-way and distinct', async (t) => {
  const locator = generateLocator()
  const token = sessionTokenOf(locator, generateToken())
  const recordId = recordIdOf(locator)
  const publicId = publicIdOf(recordId)
  const key = secretKeyOf(token)
  // The exact derivations, computed here independently.
  t.equal(recordId, sha256('xems/record|' + locator).subarray(0, 16).toString('base64url'))
  t.equal(publicId, sha256('xems/public|' + recordId).subarray(0, 16).toString('base64url'))
  t.equal(key, sha256(token).subarray(0, 16).toString('base64url'))
  t.equal(recordId.length, 22)
  t.equal(publicId.length, 22)
  t.equal(key.length, 22)
  t.equal(recordIdOf(locator), recordId, 'deterministic')

  const names = [locator, token, recordId, publicId, key]
  t.equal(new Set(names).size, names.length, 'all five differ')
  for (const derived of [recordId, publicId, key]) {
    t.notOk(derived.includes(locator), 'no derived name contains the locator')
    t.notOk(derived.includes(token.slice(23)), 'nor the secret')
  }
  t.not(recordId, sha256(locator).toString('base64url'), 'the record id is not a bare hash of the locator')
  t.not(recordIdOf(locator), secretKeyOf(locator), 'record ids and token keys are different hashes of the same text')
  t.not(publicIdOf(recordId), recordIdOf(recordId), 'public ids are not record ids of record ids')

  // Tokens of one session: one record, one public id, a key each. The key covers the whole token.
  const secret = generateToken()
  const other = generateLocator()
  t.equal(recordIdOf(parseSessionToken(sessionTokenOf(locator, secret))!.locator), recordId)
  t.not(secretKeyOf(sessionTokenOf(locator, secret)), key)
  t.not(secretKeyOf(sessionTokenOf(locator, secret)), secretKeyOf(sessionTokenOf(other, secret)), 'the same secret under another locator has another key')
  t.not(recordIdOf(other), recordId)
})

t.test('a name found in a log or a store dump used as a locator opens nothing and is no theft signal', async (t) => {
  const engine = new XemsEngine({ store: new MemoryStore() })
  t.teardown(async () => { await engine.close() })
  const token = await engine.createSession('auth-active', {}, { userId: 'u1' })
  const [listed] = await engine.listUserSessions('u1')
  const publicId = listed!.id
  const recordId = recordIdOf(parseSessionToken(token)!.locator)
  t.equal(publicId, publicIdOf(recordId), 'listUserSessions gives the public id')
  t.not(publicId, parseSessionToken(token)!.locator, 'never the locator')
  const reuses: unknown[] = []
  engine.on('reuse', (event) => reuses.push(event))
  // Record ids (a store dump) and public ids (logs, lists) have the shape of a locator; neither is one.
  for (const fake of [publicId, recordId]) {
    const crafted = sessionTokenOf(fake, generateToken())
    t.ok(isWellFormedSessionToken(crafted), 'well formed, so it does reach the store')
    t.same(await engine.open(crafted), { status: 'none' }, 'it names another record: no session')
  }
  t.same(reuses, [], 'and no reuse event: a log reader cannot revoke a session')
  t.not(await engine.resolveSession(token), null, 'the session is untouched')
})

t.test('10 000 generated locators are distinct (and every bit of them varies)', async (t) => {
  const seen = new Set<string>()
  const ones = new Array(128).fill(0)
  for (let i = 0; i < 10_000; i++) {
    const locator = generateLocator()
    seen.add(locator)
    const bytes = Buffer.from(locator, 'base64url')
    for (let bit = 0; bit < 128; bit++) ones[bit] += (bytes[bit >> 3]! >> (bit & 7)) & 1
  }
  t.equal(seen.size, 10_000)
  t.ok(ones.every((n) => n > 4500 && n < 5500), 'each bit is set about half the time')
  const records = new Set([...seen].map(recordIdOf))
  t.equal(records.size, 10_000, 'and so are their record ids')
  t.equal(new Set([...records].map(publicIdOf)).size, 10_000, 'and their public ids')
})
