// Recovery codes as a person types them from paper: every typical mangling of a code gives that code back,
// no two codes ever meet after normalisation, and the code space is the 60 bits docs/mfa.md states.
import fc from 'fast-check'
import t from 'tap'
import { findRecoveryCode, generateRecoveryCodes, hashRecoveryCodes, normalizeRecoveryCode, RECOVERY_ALPHABET } from '../../../lib/mfa/recovery-codes.js'

const SEED = Number(process.env.FC_SEED ?? 18)
const runs = (numRuns: number): fc.Parameters<unknown> => ({ seed: SEED, numRuns })

/** A canonical code: 12 characters of the alphabet. */
const canonical = fc.array(fc.constantFrom(...RECOVERY_ALPHABET), { minLength: 12, maxLength: 12 }).map((chars) => chars.join(''))
const separator = fc.constantFrom('', '', '-', '--', ' ', '  ', '\t', '–', '—', '−', '_', '.', '\u00a0', '\u3000')

/** What a person may do to a code: any case per character, o/O/ø for 0, full-width forms, separators anywhere. */
function mangled (code: string): fc.Arbitrary<string> {
  const perChar = [...code].map((char) => {
    const forms = [char, char.toUpperCase()]
    if (char === '0') forms.push('o', 'O', 'ø', 'Ø')
    forms.push(String.fromCodePoint(char.toUpperCase().codePointAt(0)! + 0xfee0)) // full-width A–Z, 0–9
    return fc.tuple(separator, fc.constantFrom(...forms)).map(([sep, form]) => sep + form)
  })
  return fc.tuple(fc.tuple(...perChar), separator).map(([chars, end]) => chars.join('') + end)
}

t.test('the alphabet: 32 distinct characters, none of i l o 1, so a code holds 60 bits', async (t) => {
  t.equal(new Set(RECOVERY_ALPHABET).size, 32)
  t.equal(RECOVERY_ALPHABET.length, 32)
  for (const char of 'ilo1') t.notOk(RECOVERY_ALPHABET.includes(char), `no ${char}`)
  t.ok(RECOVERY_ALPHABET.includes('0'), 'keeps 0: o is read as 0')
  t.equal(Math.log2(RECOVERY_ALPHABET.length ** 12), 60)
})

t.test('generated codes: xxxx-xxxx-xxxx from the alphabet, every character used, normalise to themselves minus hyphens', async (t) => {
  const codes = generateRecoveryCodes(400)
  const seen = new Set<string>()
  for (const code of codes) {
    t.match(code, new RegExp(`^[${RECOVERY_ALPHABET}]{4}-[${RECOVERY_ALPHABET}]{4}-[${RECOVERY_ALPHABET}]{4}$`))
    t.equal(normalizeRecoveryCode(code), code.replaceAll('-', ''))
    for (const char of code.replaceAll('-', '')) seen.add(char)
  }
  t.equal(seen.size, 32, 'all 32 characters appear in 4 800 draws')
  t.equal(new Set(codes).size, codes.length, 'no repeats')
})

t.test('every typical mangling of a code normalises to that code', async (t) => {
  fc.assert(fc.property(canonical.chain((code) => fc.tuple(fc.constant(code), mangled(code))), ([code, typed]) =>
    normalizeRecoveryCode(typed) === code), runs(5000))
  t.pass('no counterexample in 5 000 manglings')
  t.equal(normalizeRecoveryCode('  ABCD EFGH JKMN '), 'abcdefghjkmn')
  t.equal(normalizeRecoveryCode('abcd--efgh-jkmn-'), 'abcdefghjkmn')
  t.equal(normalizeRecoveryCode('ab0d-efgh-jkmn'), normalizeRecoveryCode('abOd efgh jkmn'), 'O for 0')
  t.equal(normalizeRecoveryCode('abod–efgh–jkmn'), 'ab0defghjkmn', 'o for 0, en dashes')
})

t.test('normalisation never maps two different codes to one, and its output is always a canonical code', async (t) => {
  fc.assert(fc.property(
    canonical.chain((a) => fc.tuple(fc.constant(a), mangled(a))),
    canonical.chain((b) => fc.tuple(fc.constant(b), mangled(b))),
    ([a, typedA], [b, typedB]) => (normalizeRecoveryCode(typedA) === normalizeRecoveryCode(typedB)) === (a === b)), runs(3000))
  // Two manglings of one code meet.
  fc.assert(fc.property(canonical.chain((a) => fc.tuple(mangled(a), mangled(a))), ([x, y]) =>
    normalizeRecoveryCode(x) !== null && normalizeRecoveryCode(x) === normalizeRecoveryCode(y)), runs(2000))
  // Codes that differ in one place only, including 0 against every other character: still distinct.
  fc.assert(fc.property(canonical, fc.nat(11), fc.constantFrom(...RECOVERY_ALPHABET), (code, at, char) => {
    const other = code.slice(0, at) + char + code.slice(at + 1)
    return (normalizeRecoveryCode(other) === normalizeRecoveryCode(code)) === (other === code)
  }), runs(3000))
  // Any string at all: null, or a canonical code that normalises to itself.
  fc.assert(fc.property(fc.oneof(fc.string(), fc.string({ unit: 'binary' }), fc.string({ unit: 'grapheme' }), canonical.chain(mangled)), (input) => {
    const normal = normalizeRecoveryCode(input)
    return normal === null || (new RegExp(`^[${RECOVERY_ALPHABET}]{12}$`).test(normal) && normalizeRecoveryCode(normal) === normal)
  }), runs(3000))
  t.pass('no counterexample')
})

t.test('what is refused: characters outside the alphabet, wrong lengths, non-strings, oversized input', async (t) => {
  for (const input of [
    'abcd-efgh-jkm1', 'abcd-efgh-jkmi', 'abcd-efgh-jkml', 'abcd-efgh-jkm', 'abcd-efgh-jkmnp', 'abcd-efgh-jkm!', '', '------------', 'a'.repeat(65), 12, null, undefined, {},
    ['abcdefghjkmn']
  ]) {
    t.equal(normalizeRecoveryCode(input), null, JSON.stringify(input))
  }
})

t.test('a hashed code is found from what a person types, and only that one', async (t) => {
  const codes = ['ab0d-efgh-jkmn', 'wxyz-2345-6789']
  const hashes = await hashRecoveryCodes(codes)
  t.equal(await findRecoveryCode(hashes, 'AB0D EFGH JKMN'), 0)
  t.equal(await findRecoveryCode(hashes, 'abod-efgh-jkmn'), 0, 'o typed for 0')
  t.equal(await findRecoveryCode(hashes, 'wxyz23456789'), 1, 'no hyphens')
  t.equal(await findRecoveryCode(hashes, 'WXYZ—2345—6789'), 1, 'em dashes')
  t.equal(await findRecoveryCode(hashes, 'wxyz-2345-6788'), -1, 'another code')
  t.equal(await findRecoveryCode([null, hashes[1]!], 'ab0d-efgh-jkmn'), -1, 'a used slot')
})
