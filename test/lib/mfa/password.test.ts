import t from 'tap'
import argon2 from 'argon2'
import fc from 'fast-check'
import {
  hashPassword,
  MAX_PASSWORD_LENGTH,
  needsRehash,
  PASSWORD_DEFAULTS,
  verifyPassword,
  type PasswordHashOptions
} from '../../../lib/mfa/password.js'

const PASSWORD = 'correct horse battery staple'

/** A pattern for t.throws / t.rejects: a XemsError with this code (and status). */
function xemsError (code: string, statusCode?: number): { name: string, code: string, statusCode?: number } {
  return { name: 'XemsError', code, ...(statusCode === undefined ? {} : { statusCode }) }
}

/** A configuration error naming `option`. */
function badOptionError (option: string): { name: string, code: string, message: RegExp } {
  return { name: 'XemsError', code: 'FST_XEMS_BAD_OPTION', message: new RegExp(`option "${option}"`) }
}

/** The parameters of a PHC string, e.g. { m: '19456', t: '2', p: '1' }. */
function phcParams (hash: string): Record<string, string> {
  return Object.fromEntries(hash.split('$')[3]!.split(',').map((entry) => entry.split('=')))
}

function median (values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)]!
}

async function elapsed (fn: () => Promise<unknown>): Promise<number> {
  const start = process.hrtime.bigint()
  await fn()
  return Number(process.hrtime.bigint() - start) / 1e6
}

t.test('hash / verify round trip', async (t) => {
  const hash = await hashPassword(PASSWORD)
  t.equal(await verifyPassword(hash, PASSWORD), true)
  t.equal(await verifyPassword(hash, 'correct horse battery stapler'), false, 'wrong password')
  t.equal(await verifyPassword(hash, PASSWORD.toUpperCase()), false, 'case matters')
  t.equal(await verifyPassword(hash, ''), false, 'empty password')
})

t.test('argon2id with the OWASP parameters m=19456, t=2, p=1 in the PHC string', async (t) => {
  const hash = await hashPassword(PASSWORD)
  // argon2@0.45 writes the parameters in the order m, p, t: compare them as a set.
  t.match(hash, /^\$argon2id\$v=19\$[mpt=0-9,]+\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$/, '16-byte salt, 32-byte hash')
  t.same(phcParams(hash), { m: '19456', t: '2', p: '1' })
  t.same(PASSWORD_DEFAULTS, { memoryCost: 19456, timeCost: 2, parallelism: 1 })
  t.equal(needsRehash(hash), false)
})

t.test('salts are unique: two hashes of the same password differ', async (t) => {
  const [a, b] = await Promise.all([hashPassword(PASSWORD), hashPassword(PASSWORD)])
  t.not(a, b)
  t.not(a.split('$')[4], b.split('$')[4], 'different salts')
  t.equal(await verifyPassword(a, PASSWORD), true)
  t.equal(await verifyPassword(b, PASSWORD), true)
})

t.test('stronger options are used and recorded', async (t) => {
  const options: PasswordHashOptions = { memoryCost: 32768, timeCost: 3, parallelism: 2 }
  const hash = await hashPassword(PASSWORD, options)
  t.match(hash, /^\$argon2id\$v=19\$/)
  t.same(phcParams(hash), { m: '32768', t: '3', p: '2' })
  t.equal(await verifyPassword(hash, PASSWORD), true, 'a hash carries its parameters')
  t.equal(await verifyPassword(hash, PASSWORD, options), true)
  t.equal(needsRehash(hash, options), false)
  t.equal(needsRehash(hash), false, 'a stronger hash is not rewritten at lower parameters')
  const current = await hashPassword(PASSWORD)
  t.equal(needsRehash(current, options), true, 'a hash below raised options needs a rehash')
  t.equal(needsRehash(current, { timeCost: 3 }), true)
  t.equal(needsRehash(current, { parallelism: 2 }), true)
})

t.test('weak or absurd options are refused with FST_XEMS_BAD_OPTION naming the option', async (t) => {
  const hash = await hashPassword(PASSWORD)
  const cases: Array<[string, PasswordHashOptions]> = [
    ['memoryCost', { memoryCost: 19455 }],
    ['memoryCost', { memoryCost: 4096 }],
    ['memoryCost', { memoryCost: 19456 * 1024 }], // bytes instead of KiB
    ['memoryCost', { memoryCost: 20000.5 }],
    ['timeCost', { timeCost: 1 }],
    ['timeCost', { timeCost: 0 }],
    ['timeCost', { timeCost: 101 }],
    ['parallelism', { parallelism: 0 }],
    ['parallelism', { parallelism: 65 }],
    ['parallelism', { parallelism: Number.NaN }],
    ['timeCost', { timeCost: '3' as unknown as number }]
  ]
  for (const [option, options] of cases) {
    const match = badOptionError(option)
    await t.rejects(hashPassword(PASSWORD, options), match, `hashPassword ${JSON.stringify(options)}`)
    await t.rejects(verifyPassword(hash, PASSWORD, options), match, `verifyPassword ${JSON.stringify(options)}`)
    await t.rejects(verifyPassword(null, PASSWORD, options), match)
    t.throws(() => needsRehash(hash, options), match, `needsRehash ${JSON.stringify(options)}`)
  }
})

t.test('empty, over-long and non-string passwords', async (t) => {
  await t.rejects(hashPassword(''), xemsError('FST_XEMS_BAD_PASSWORD', 400), 'empty refused')
  const tooLong = 'a'.repeat(MAX_PASSWORD_LENGTH + 1)
  await t.rejects(hashPassword(tooLong), xemsError('FST_XEMS_BAD_PASSWORD', 400), `${MAX_PASSWORD_LENGTH + 1} characters refused`)
  await t.rejects(hashPassword(42 as unknown as string), xemsError('FST_XEMS_BAD_PASSWORD', 400))
  await t.rejects(hashPassword(undefined as unknown as string), xemsError('FST_XEMS_BAD_PASSWORD', 400))

  const longest = 'é'.repeat(MAX_PASSWORD_LENGTH)
  const hash = await hashPassword(longest)
  t.equal(await verifyPassword(hash, longest), true, `${MAX_PASSWORD_LENGTH} characters accepted`)
  t.equal(await verifyPassword(hash, longest + 'é'), false, 'one more answers false without throwing')
  t.equal(await verifyPassword(null, tooLong), false)
  t.equal(await verifyPassword(hash, 42 as unknown as string), false)
  t.equal(await verifyPassword(hash, Buffer.from(longest) as unknown as string), false)
})

t.test('passwords are compared after Unicode NFKC normalisation', async (t) => {
  const composed = 'caf\u00e9 \uff11\uff12\uff13' // "café" and full-width "123"
  const decomposed = 'cafe\u0301 123'
  const hash = await hashPassword(composed)
  t.equal(await verifyPassword(hash, decomposed), true)
  t.equal(await verifyPassword(await hashPassword(decomposed), composed), true)
  t.equal(await argon2.verify(hash, 'cafe\u0301 123'.normalize('NFKC')), true, 'what is hashed is the NFKC form')
})

t.test('unknown user: false, after the same work as a real verification', async (t) => {
  t.equal(await verifyPassword(null, PASSWORD), false)
  t.equal(await verifyPassword(undefined, PASSWORD), false)
  t.same(await Promise.all([verifyPassword(null, 'a'), verifyPassword(null, 'b')]), [false, false], 'concurrent first use')

  const hash = await hashPassword(PASSWORD)
  await verifyPassword(hash, 'warm-up')
  const known: number[] = []
  const unknown: number[] = []
  for (let i = 0; i < 7; i++) {
    known.push(await elapsed(async () => await verifyPassword(hash, 'not the password')))
    unknown.push(await elapsed(async () => await verifyPassword(null, 'not the password')))
  }
  const ratio = median(unknown) / median(known)
  t.ok(ratio > 0.5 && ratio < 2, `unknown/known median time ratio ${ratio.toFixed(2)} is within 0.5–2`)

  // With raised options the dummy hash is made with those, so the timing still matches.
  const options = { timeCost: 4 }
  const strong = await hashPassword(PASSWORD, options)
  await verifyPassword(null, 'warm-up', options)
  const knownStrong: number[] = []
  const unknownStrong: number[] = []
  for (let i = 0; i < 5; i++) {
    knownStrong.push(await elapsed(async () => await verifyPassword(strong, 'nope', options)))
    unknownStrong.push(await elapsed(async () => await verifyPassword(null, 'nope', options)))
  }
  const strongRatio = median(unknownStrong) / median(knownStrong)
  t.ok(strongRatio > 0.5 && strongRatio < 2, `with timeCost 4, ratio ${strongRatio.toFixed(2)} is within 0.5–2`)
})

t.test('parameters verify in any order (the reference implementation writes m, t, p)', async (t) => {
  const hash = await hashPassword(PASSWORD)
  const [, id, version, , salt, digest] = hash.split('$')
  for (const params of ['m=19456,t=2,p=1', 't=2,p=1,m=19456']) {
    const reordered = `$${id}$${version}$${params}$${salt}$${digest}`
    t.equal(await verifyPassword(reordered, PASSWORD), true, params)
    t.equal(await verifyPassword(reordered, 'wrong'), false)
    t.equal(needsRehash(reordered), false)
  }
})

t.test('a malformed or hostile stored hash answers false and never throws', async (t) => {
  const hash = await hashPassword(PASSWORD)
  const [, , version, params, salt, digest] = hash.split('$')
  const malformed = [
    '',
    'not a hash',
    hash.slice(0, -10),
    `${hash}$extra`,
    hash.replace('argon2id', 'argon2x'),
    hash.replace(salt!, '!!!!'),
    `$argon2id$${version}$${params}$${salt}`,
    '$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW', // bcrypt
    `$argon2id$${version}$m=8,t=2,p=2$${salt}$${digest}`, // the argon2 binding refuses m < 8p
    `$argon2id$${version}$m=999999999,t=2,p=1$${salt}$${digest}`, // a tampered store asking for ~1 TiB
    `$argon2id$${version}$m=19456,t=100000,p=1$${salt}$${digest}`,
    `$argon2id$${version}$m=19456,t=2,p=100$${salt}$${digest}`,
    `$argon2id$${version}$m=19456,t=2,p=1$${salt}$${digest}`.padEnd(600, 'A')
  ]
  for (const stored of malformed) {
    t.equal(await verifyPassword(stored, PASSWORD), false, stored.slice(0, 60))
  }
  for (const params of ['m=19456,t=2', 'm=19456,t=2,p=1,m=19456', 'm=19456,t=2,p=1,x=1', 'm=19456,t=two,p=1', 'm=19456,,t=2,p=1']) {
    t.equal(await verifyPassword(`$argon2id$${version}$${params}$${salt}$${digest}`, PASSWORD), false, params)
  }
  for (const stored of [42, {}, ['x'], Buffer.from(hash)]) {
    t.equal(await verifyPassword(stored as unknown as string, PASSWORD), false, `non-string ${typeof stored}`)
  }
})

t.test('needsRehash', async (t) => {
  const current = await hashPassword(PASSWORD)
  t.equal(needsRehash(current), false, 'a current hash does not')

  const weak = await argon2.hash(PASSWORD, { type: argon2.argon2id, memoryCost: 19456, timeCost: 1, parallelism: 1 })
  t.same(phcParams(weak), { m: '19456', t: '1', p: '1' })
  t.equal(needsRehash(weak), true, 'timeCost 1 is below the minimum')
  t.equal(await verifyPassword(weak, PASSWORD), true, 'but it still verifies, so it can be upgraded at login')

  const lowMemory = await argon2.hash(PASSWORD, { type: argon2.argon2id, memoryCost: 4096, timeCost: 3, parallelism: 1 })
  t.equal(needsRehash(lowMemory), true, 'memoryCost 4 MiB is below the minimum')

  const argon2i = await argon2.hash(PASSWORD, { type: argon2.argon2i, ...PASSWORD_DEFAULTS })
  t.equal(needsRehash(argon2i), true, 'argon2i with the same parameters is not argon2id')
  t.equal(await verifyPassword(argon2i, PASSWORD), true)

  const argon2d = await argon2.hash(PASSWORD, { type: argon2.argon2d, ...PASSWORD_DEFAULTS })
  t.equal(needsRehash(argon2d), true)

  const oldVersion = await argon2.hash(PASSWORD, { type: argon2.argon2id, version: 0x10, ...PASSWORD_DEFAULTS })
  t.match(oldVersion, /^\$argon2id\$v=16\$/)
  t.equal(needsRehash(oldVersion), true, 'argon2 1.0 (v=16) is not the current version')
  const noVersion = oldVersion.replace('$v=16', '')
  t.equal(needsRehash(noVersion), true, 'no version field means 1.0')
  t.equal(await verifyPassword(noVersion, PASSWORD), true)

  const longerOutput = await argon2.hash(PASSWORD, { type: argon2.argon2id, hashLength: 64, ...PASSWORD_DEFAULTS })
  t.equal(needsRehash(longerOutput), false, 'the output length is not a parameter')

  for (const junk of ['', 'not a hash', '$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW', 42]) {
    t.equal(needsRehash(junk as string), true, `unreadable ${String(junk)}: rehash (it cannot have verified anyway)`)
  }
})

t.test('a failed dummy hash computation is not cached', async (t) => {
  let failures = 1
  const { verifyPassword: verifyWithFlakyArgon2 } = await t.mockImport<typeof import('../../../lib/mfa/password.js')>('../../../lib/mfa/password.js', {
    argon2: {
      default: {
        ...argon2,
        hash: async (...args: Parameters<typeof argon2.hash>): Promise<string> => {
          if (failures-- > 0) throw new Error('out of memory')
          return await argon2.hash(...args)
        }
      }
    }
  })
  await t.rejects(verifyWithFlakyArgon2(null, PASSWORD), /out of memory/, 'the failure reaches the caller once')
  t.equal(await verifyWithFlakyArgon2(null, PASSWORD), false, 'the next call computes the dummy hash again')
})

t.test('property: needsRehash never throws on PHC-shaped junk', async (t) => {
  const [, , , , salt, digest] = (await hashPassword(PASSWORD)).split('$')
  const phc = fc.tuple(
    fc.constantFrom('argon2id', 'argon2i', 'argon2d', 'argon2x', ''),
    fc.constantFrom('v=19$', 'v=16$', 'v=$', 'v=1x$', ''),
    fc.array(fc.constantFrom('m=19456', 'm=65536', 't=2', 't=1', 't=3', 'p=1', 'p=4', 'data=AAAA', 'data=', 'x=1', 'm=', 't=x', ''),
      { maxLength: 6 }),
    fc.constantFrom(salt!, 'AAAA', '!!', ''),
    fc.constantFrom(digest!, 'AAAA', '')
  ).map(([id, version, params, s, d]) => `$${id}$${version}${params.join(',')}$${s}$${d}`)
  fc.assert(fc.property(phc, (candidate) => typeof needsRehash(candidate) === 'boolean'), { numRuns: 3000 })
  t.pass()
})
