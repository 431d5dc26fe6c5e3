import t from 'tap'
import fc from 'fast-check'
import {
  generateTotp,
  generateTotpSecret,
  totpUri,
  verifyTotp,
  TOTP_MAX_WINDOW,
  type TotpAlgorithm,
  type TotpVerifyOptions
} from '../../../lib/mfa/totp.js'
import { XemsError } from '../../../lib/errors.js'

// An independent RFC 4648 base32 codec (upper case, no padding), so the tests do not trust the
// implementation under test to encode the RFC secrets.
const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567'

function base32Encode (bytes: Uint8Array): string {
  let out = ''
  let buffer = 0
  let bits = 0
  for (const byte of bytes) {
    buffer = (buffer << 8) | byte
    bits += 8
    while (bits >= 5) {
      out += ALPHABET[(buffer >>> (bits - 5)) & 31]
      bits -= 5
    }
    buffer &= (1 << bits) - 1
  }
  if (bits > 0) out += ALPHABET[(buffer << (5 - bits)) & 31]
  return out
}

function base32Decode (text: string): Buffer {
  const out: number[] = []
  let buffer = 0
  let bits = 0
  for (const char of text) {
    const value = ALPHABET.indexOf(char)
    if (value < 0) throw new Error(`not base32: ${char}`)
    buffer = (buffer << 5) | value
    bits += 5
    if (bits >= 8) {
      out.push((buffer >>> (bits - 8)) & 255)
      bits -= 8
    }
    buffer &= (1 << bits) - 1
  }
  return Buffer.from(out)
}

const ascii = (text: string): string => base32Encode(Buffer.from(text, 'ascii'))

// RFC 6238 Appendix B: the seeds are ASCII strings of 20, 32 and 64 bytes, one per hash.
const SECRETS: Record<TotpAlgorithm, string> = {
  SHA1: ascii('12345678901234567890'),
  SHA256: ascii('12345678901234567890123456789012'),
  SHA512: ascii('1234567890123456789012345678901234567890123456789012345678901234')
}

const RFC6238_VECTORS: Array<[seconds: number, algorithm: TotpAlgorithm, totp: string]> = [
  [59, 'SHA1', '94287082'],
  [59, 'SHA256', '46119246'],
  [59, 'SHA512', '90693936'],
  [1111111109, 'SHA1', '07081804'],
  [1111111109, 'SHA256', '68084774'],
  [1111111109, 'SHA512', '25091201'],
  [1111111111, 'SHA1', '14050471'],
  [1111111111, 'SHA256', '67062674'],
  [1111111111, 'SHA512', '99943326'],
  [1234567890, 'SHA1', '89005924'],
  [1234567890, 'SHA256', '91819424'],
  [1234567890, 'SHA512', '93441116'],
  [2000000000, 'SHA1', '69279037'],
  [2000000000, 'SHA256', '90698825'],
  [2000000000, 'SHA512', '38618901'],
  [20000000000, 'SHA1', '65353130'],
  [20000000000, 'SHA256', '77737706'],
  [20000000000, 'SHA512', '47863826']
]

// RFC 4226 Appendix D: HOTP values of the secret "12345678901234567890" for counters 0 to 9.
const RFC4226_HOTP = ['755224', '287082', '359152', '969429', '338314', '254676', '287922', '162583', '399871', '520489']

const SECRET = SECRETS.SHA1
const NOW = 1_700_000_000_000 // ms; step 56666666 with a 30 s period
const NOW_STEP = 56666666
const STEP_MS = 30_000

/** A pattern for t.throws / t.rejects: a XemsError with this code. */
function xemsError (code: string): { name: string, code: string } {
  return { name: 'XemsError', code }
}

/** A configuration error naming `option`. */
function badOptionError (option: string): { name: string, code: string, message: RegExp } {
  return { name: 'XemsError', code: 'FST_XEMS_BAD_OPTION', message: new RegExp(`option "${option}"`) }
}

t.test('RFC 6238 Appendix B vectors, 8 digits, SHA1 / SHA256 / SHA512', async (t) => {
  for (const [seconds, algorithm, totp] of RFC6238_VECTORS) {
    const options = { secret: SECRETS[algorithm], algorithm, digits: 8, at: seconds * 1000 }
    t.equal(await generateTotp(options), totp, `generate ${algorithm} at T=${seconds}`)
    t.same(await verifyTotp({ ...options, token: totp, window: 0 }),
      { valid: true, step: Math.floor(seconds / 30) }, `verify ${algorithm} at T=${seconds}`)
  }
})

t.test('RFC 4226 Appendix D HOTP values, as TOTP with period 30 at t = counter × 30', async (t) => {
  for (const [counter, hotp] of RFC4226_HOTP.entries()) {
    const at = counter * STEP_MS
    t.equal(await generateTotp({ secret: SECRET, at }), hotp, `counter ${counter}`)
    // The last millisecond of the step still gives the same code.
    t.equal(await generateTotp({ secret: SECRET, at: at + STEP_MS - 1 }), hotp, `end of step ${counter}`)
    t.same(await verifyTotp({ secret: SECRET, token: hotp, at, window: 0 }), { valid: true, step: counter })
  }
})

t.test('defaults: 6 digits, SHA1, period 30, now', async (t) => {
  const code = await generateTotp({ secret: SECRET })
  t.match(code, /^[0-9]{6}$/)
  const result = await verifyTotp({ secret: SECRET, token: code })
  t.equal(result.valid, true)
  t.ok(Math.abs(result.step! - Math.floor(Date.now() / STEP_MS)) <= 1)
  t.equal(await generateTotp({ secret: SECRET, at: 0 }), RFC4226_HOTP[0])
})

t.test('other periods and digit counts', async (t) => {
  const at = 1_111_111_111_000
  const code = await generateTotp({ secret: SECRET, at, period: 60, digits: 7 })
  t.match(code, /^[0-9]{7}$/)
  t.same(await verifyTotp({ secret: SECRET, token: code, at, period: 60, digits: 7 }),
    { valid: true, step: Math.floor(1_111_111_111 / 60) })
  // The same code at the same time fails under other parameters.
  t.same(await verifyTotp({ secret: SECRET, token: code, at, digits: 7 }), { valid: false, step: null })
})

t.test('drift window', async (t) => {
  const codeAt = async (offset: number): Promise<string> => await generateTotp({ secret: SECRET, at: NOW + offset * STEP_MS })
  const verify = async (token: string, window?: number): Promise<unknown> =>
    await verifyTotp({ secret: SECRET, token, at: NOW, ...(window === undefined ? {} : { window }) })

  t.same(await verify(await codeAt(0)), { valid: true, step: NOW_STEP }, 'current step')
  t.same(await verify(await codeAt(-1)), { valid: true, step: NOW_STEP - 1 }, 'previous step inside the default window 1')
  t.same(await verify(await codeAt(1)), { valid: true, step: NOW_STEP + 1 }, 'next step inside the default window 1')
  t.same(await verify(await codeAt(-2)), { valid: false, step: null }, 'two steps back is outside')
  t.same(await verify(await codeAt(2)), { valid: false, step: null }, 'two steps ahead is outside')

  t.same(await verify(await codeAt(-1), 0), { valid: false, step: null }, 'window 0 takes the current step only')
  t.same(await verify(await codeAt(0), 0), { valid: true, step: NOW_STEP })
  t.same(await verify(await codeAt(-2), 2), { valid: true, step: NOW_STEP - 2 }, 'window 2 takes ±2')
  t.same(await verify(await codeAt(TOTP_MAX_WINDOW), TOTP_MAX_WINDOW), { valid: true, step: NOW_STEP + TOTP_MAX_WINDOW })

  // Near the epoch there are no negative steps to try.
  t.same(await verifyTotp({ secret: SECRET, token: RFC4226_HOTP[0]!, at: 0, window: 3 }), { valid: true, step: 0 })
  t.same(await verifyTotp({ secret: SECRET, token: RFC4226_HOTP[1]!, at: 0 }), { valid: true, step: 1 })
})

t.test('afterStep replay guard', async (t) => {
  const code = await generateTotp({ secret: SECRET, at: NOW })
  const base: TotpVerifyOptions = { secret: SECRET, token: code, at: NOW }
  const first = await verifyTotp(base)
  t.same(first, { valid: true, step: NOW_STEP })
  t.same(await verifyTotp({ ...base, afterStep: first.step }), { valid: false, step: null }, 'the same step is refused')
  t.same(await verifyTotp({ ...base, afterStep: NOW_STEP + 1 }), { valid: false, step: null }, 'a later step is refused')
  t.same(await verifyTotp({ ...base, afterStep: NOW_STEP + 50 }), { valid: false, step: null }, 'nothing left to try')
  t.same(await verifyTotp({ ...base, afterStep: NOW_STEP - 1 }), { valid: true, step: NOW_STEP }, 'an earlier last step')
  t.same(await verifyTotp({ ...base, afterStep: null }), { valid: true, step: NOW_STEP })
  t.same(await verifyTotp({ ...base, afterStep: -1 }), { valid: true, step: NOW_STEP })

  // A previous-step code used after the current step was accepted is refused too.
  const previous = await generateTotp({ secret: SECRET, at: NOW - STEP_MS })
  t.same(await verifyTotp({ ...base, token: previous, afterStep: NOW_STEP }), { valid: false, step: null })
  t.same(await verifyTotp({ ...base, token: previous, afterStep: NOW_STEP - 2 }), { valid: true, step: NOW_STEP - 1 })
})

t.test('when a code matches two steps in the window, the latest acceptable one is returned', async (t) => {
  // With the RFC secret, steps 56721294 and 56721310 share the 6-digit code 903408 (found offline).
  const [early, late, token] = [56721294, 56721310, '903408']
  const at = (early + 8) * STEP_MS
  t.equal(await generateTotp({ secret: SECRET, at: early * STEP_MS }), token)
  t.equal(await generateTotp({ secret: SECRET, at: late * STEP_MS }), token)
  const base = { secret: SECRET, token, at, window: 10 }
  // Returning the earliest would let the same code be replayed at the later step.
  t.same(await verifyTotp(base), { valid: true, step: late })
  t.same(await verifyTotp({ ...base, afterStep: early }), { valid: true, step: late })
  t.same(await verifyTotp({ ...base, afterStep: late }), { valid: false, step: null })
  t.same(await verifyTotp({ ...base, window: 8 }), { valid: true, step: late })
  t.same(await verifyTotp({ ...base, at: (early - 2) * STEP_MS, window: 3 }), { valid: true, step: early })
})

t.test('malformed tokens are refused', async (t) => {
  const code = await generateTotp({ secret: SECRET, at: NOW })
  const malformed = ['', '12345', 'abcdef', '1234567', ' 123456', '123456 ', '１２３４５６', '-12345', '+12345',
    '12 456', '١٢٣٤٥٦', '12345\n', `${code} `, ` ${code}`, `${code}0`, code.slice(1)]
  for (const token of malformed) {
    t.same(await verifyTotp({ secret: SECRET, token, at: NOW }), { valid: false, step: null }, JSON.stringify(token))
  }
  for (const token of [undefined, null, 123456, ['123456'], { toString: () => code }]) {
    t.same(await verifyTotp({ secret: SECRET, token: token as unknown as string, at: NOW }), { valid: false, step: null },
      `non-string ${String(token)}`)
  }
  // 8-digit parameters take exactly 8 digits.
  const code8 = await generateTotp({ secret: SECRET, at: NOW, digits: 8 })
  t.equal((await verifyTotp({ secret: SECRET, token: code8, at: NOW, digits: 8 })).valid, true)
  t.equal((await verifyTotp({ secret: SECRET, token: code8.slice(2), at: NOW, digits: 8 })).valid, false)
})

t.test('property: a generated code verifies at its own time, and only well-formed tokens can', async (t) => {
  await fc.assert(fc.asyncProperty(
    fc.integer({ min: 0, max: 4_000_000_000_000 }),
    fc.constantFrom<TotpAlgorithm>('SHA1', 'SHA256', 'SHA512'),
    fc.integer({ min: 6, max: 8 }),
    async (at, algorithm, digits) => {
      const secret = SECRETS[algorithm]
      const token = await generateTotp({ secret, at, algorithm, digits })
      const result = await verifyTotp({ secret, token, at, algorithm, digits, window: 0 })
      return token.length === digits && result.valid && result.step === Math.floor(at / STEP_MS)
    }), { numRuns: 200 })
  await fc.assert(fc.asyncProperty(fc.string({ maxLength: 10 }), async (token) => {
    fc.pre(!/^[0-9]{6}$/.test(token))
    return !(await verifyTotp({ secret: SECRET, token, at: NOW, window: TOTP_MAX_WINDOW })).valid
  }), { numRuns: 200 })
  t.pass()
})

t.test('generateTotpSecret: at least 160 bits from the CSPRNG, base32 without padding', async (t) => {
  const secret = generateTotpSecret()
  t.match(secret, /^[A-Z2-7]{32}$/, '20 bytes are 32 base32 characters')
  t.equal(base32Decode(secret).length, 20)
  t.equal(base32Encode(base32Decode(secret)), secret)
  const longer = generateTotpSecret(32)
  t.match(longer, /^[A-Z2-7]{52}$/, 'no padding')
  t.equal(base32Decode(longer).length, 32)
  t.equal(base32Decode(generateTotpSecret(64)).length, 64)

  const many = new Set(Array.from({ length: 200 }, () => generateTotpSecret()))
  t.equal(many.size, 200, 'no repeats')

  for (const bytes of [19, 16, 0, 65, 20.5, Number.NaN]) {
    t.throws(() => generateTotpSecret(bytes), xemsError('FST_XEMS_BAD_OPTION'), `${bytes} bytes refused`)
  }
  t.throws(() => generateTotpSecret(10), /option "bytes"/)

  // A fresh secret works end to end.
  const code = await generateTotp({ secret, at: NOW })
  t.equal((await verifyTotp({ secret, token: code, at: NOW })).valid, true)
})

t.test('secrets that are not canonical base32 of 20 to 64 bytes are refused', async (t) => {
  const short = base32Encode(Buffer.alloc(16, 1))
  const long = base32Encode(Buffer.alloc(65, 1))
  const valid52 = generateTotpSecret(32)
  // 52 characters carry 260 bits: the last character's 4 low bits must be zero.
  const nonCanonical = valid52.slice(0, -1) + (valid52.endsWith('B') ? 'C' : 'B')
  const bad = ['', short, long, SECRET.toLowerCase(), `${SECRET}====`, `${SECRET.slice(0, 31)}1`, `${SECRET}A`,
    ` ${SECRET}`, nonCanonical, 'A'.repeat(1000)]
  for (const secret of [...bad, undefined, 42]) {
    const s = secret as string
    await t.rejects(generateTotp({ secret: s, at: NOW }), xemsError('FST_XEMS_BAD_TOTP_SECRET'), `generate: ${String(secret).slice(0, 40)}`)
    await t.rejects(verifyTotp({ secret: s, token: '123456', at: NOW }), xemsError('FST_XEMS_BAD_TOTP_SECRET'))
    t.throws(() => totpUri({ secret: s, label: 'a', issuer: 'b' }), xemsError('FST_XEMS_BAD_TOTP_SECRET'))
  }
  const err = await generateTotp({ secret: SECRET.toLowerCase() }).catch((err: unknown) => err) as XemsError
  t.notMatch(err.message, SECRET.toLowerCase(), 'the message does not echo the secret')
  t.equal(err.statusCode, 500)
})

t.test('bad parameters fail with FST_XEMS_BAD_OPTION naming the option', async (t) => {
  const cases: Array<[string, Partial<TotpVerifyOptions>]> = [
    ['digits', { digits: 5 }],
    ['digits', { digits: 9 }],
    ['digits', { digits: 6.5 }],
    ['period', { period: 14 }],
    ['period', { period: 121 }],
    ['period', { period: 30.5 }],
    ['algorithm', { algorithm: 'MD5' as TotpAlgorithm }],
    ['algorithm', { algorithm: 'sha1' as TotpAlgorithm }],
    ['algorithm', { algorithm: 'toString' as TotpAlgorithm }],
    ['at', { at: -1 }],
    ['at', { at: Number.NaN }],
    ['at', { at: Number.POSITIVE_INFINITY }]
  ]
  for (const [option, patch] of cases) {
    const match = badOptionError(option)
    await t.rejects(generateTotp({ secret: SECRET, ...patch }), match, `generate ${JSON.stringify(patch)}`)
    await t.rejects(verifyTotp({ secret: SECRET, token: '123456', ...patch }), match, `verify ${JSON.stringify(patch)}`)
    if (option !== 'at') t.throws(() => totpUri({ secret: SECRET, label: 'a', issuer: 'b', ...patch }), match)
  }
  const verifyCases: Array<[string, Partial<TotpVerifyOptions>]> = [
    ['window', { window: -1 }],
    ['window', { window: TOTP_MAX_WINDOW + 1 }],
    ['window', { window: 1.5 }],
    ['afterStep', { afterStep: 1.5 }],
    ['afterStep', { afterStep: Number.NaN }],
    ['afterStep', { afterStep: '5' as unknown as number }]
  ]
  for (const [option, patch] of verifyCases) {
    await t.rejects(verifyTotp({ secret: SECRET, token: '123456', ...patch }),
      badOptionError(option), JSON.stringify(patch))
  }
  // Options are checked even when the token is malformed, so a misconfiguration cannot hide.
  await t.rejects(verifyTotp({ secret: SECRET, token: 'junk', window: 99 }), xemsError('FST_XEMS_BAD_OPTION'))
})

t.test('totpUri: Key Uri Format, percent-encoded, every parameter written out', async (t) => {
  const secret = generateTotpSecret()
  t.equal(totpUri({ secret, label: 'alice@example.com', issuer: 'Example' }),
    `otpauth://totp/Example:alice%40example.com?secret=${secret}&issuer=Example&algorithm=SHA1&digits=6&period=30`)
  t.equal(totpUri({ secret, label: 'john+doe@example.com', issuer: 'ACME Co', algorithm: 'SHA512', digits: 8, period: 60 }),
    `otpauth://totp/ACME%20Co:john%2Bdoe%40example.com?secret=${secret}&issuer=ACME%20Co&algorithm=SHA512&digits=8&period=60`)

  const uri = totpUri({ secret, label: 'Zoë & co/?#=%', issuer: 'Ünïcode Ltd & Sons', algorithm: 'SHA256' })
  t.notMatch(uri, /[ +]/, 'no raw space, and + never stands for a space')
  const parsed = new URL(uri)
  t.equal(parsed.protocol, 'otpauth:')
  t.equal(parsed.host, 'totp')
  t.equal(decodeURIComponent(parsed.pathname), '/Ünïcode Ltd & Sons:Zoë & co/?#=%')
  t.equal(parsed.pathname.split(':').length, 2, 'exactly one unencoded colon in the label')
  t.same(Object.fromEntries(parsed.searchParams), {
    secret, issuer: 'Ünïcode Ltd & Sons', algorithm: 'SHA256', digits: '6', period: '30'
  })

  for (const [option, value] of [['label', 'a:b'], ['issuer', 'Ex:ample'], ['label', ''], ['issuer', ''],
    ['label', 'x'.repeat(257)], ['label', 'line\nbreak'], ['issuer', 'tab\there'], ['label', '\u007f'],
    ['label', 'lone \ud800 surrogate'], ['issuer', undefined], ['label', 42]] as const) {
    t.throws(() => totpUri({ secret, label: 'alice', issuer: 'Example', [option]: value as string }),
      badOptionError(option),
      `${option} ${JSON.stringify(value)}`)
  }
  t.doesNotThrow(() => totpUri({ secret, label: 'x'.repeat(256), issuer: 'Example' }))
})
