/**
 * Vault files are disk input: property tests that random, truncated, bit-flipped, overwritten,
 * extended or replaced vault files give a clean error at start-up or the state as it was written
 * minus a tail of the last writes, never a crash and never a wrong value. Plus the pure parsers of
 * the vault format on random input. Seeded like properties.test.ts (FC_SEED overrides).
 */
import { randomBytes } from 'node:crypto'
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import fc from 'fast-check'
import t from 'tap'
import { isXemsError } from '../../lib/errors.js'
import { MemoryStore, type VaultWarning } from '../../lib/store/memory/memory-store.js'
import { successorOf } from '../../lib/crypto/cipher.js'
import { generateLocator, recordIdOf, secretKeyOf, sessionTokenOf } from '../../lib/session/token.js'
import type { ResolveResult } from '../../lib/store/contract.js'
import {
  decodeEntry, encodeAllData, encodeCore, encodeCounter, encodeCounterRemoved, encodeDataKey, encodeSessionRemoved, encodeTouch,
  encodeValue, encodeValueRemoved, type SessionCore
} from '../../lib/store/vault/entries.js'
import { decodeHeader, HEADER_BYTES, scanFrames } from '../../lib/store/vault/format.js'
import { generateToken } from '../../lib/crypto/random-token.js'

const SEED = Number(process.env.FC_SEED ?? 20_251_126)
const SECRET = randomBytes(32).toString('hex')
const HOUR = 3_600_000
const KEYS = Array.from({ length: 8 }, (_, i) => `k${i}`)
const value = (i: number): string => JSON.stringify({ i, pad: 'v'.repeat(10 + i) })
const newKey = (): string => secretKeyOf(sessionTokenOf(generateLocator(), generateToken()))
const isPlainMalformed = (err: unknown): boolean => err instanceof Error && err.constructor === Error && err.message === 'an entry of unknown shape'

/** Clean start-up failures: the store refuses to start and says why. */
const CLEAN_CODES = new Set(['FST_XEMS_VAULT_CORRUPT', 'FST_XEMS_BAD_SECRET', 'FST_XEMS_VAULT_OTHER_HOST'])

t.test('vault format parsers never throw on random bytes; entries of unknown shape fail with one plain error', async (t) => {
  fc.assert(fc.property(fc.uint8Array({ maxLength: 300 }), fc.boolean(), (bytes, magic) => {
    const file = Buffer.from(bytes)
    if (magic && file.length >= 8) Buffer.from('XEMSVLT\n', 'latin1').copy(file, 0)
    const header = decodeHeader(file)
    const scan = scanFrames(file, Math.min(HEADER_BYTES, file.length))
    const framesInside = scan.frames.every((frame) => frame.offset + 8 + frame.record.length <= file.length)
    return (typeof header === 'string' || typeof header === 'object') && framesInside
  }), { seed: SEED, numRuns: 2000 })

  const pastish = fc.array(fc.oneof(
    fc.tuple(fc.string(), fc.oneof(fc.string(), fc.constant(null)), fc.integer()),
    fc.array(fc.jsonValue({ maxDepth: 1 }), { maxLength: 4 })
  ), { maxLength: 4 })
  const entryish = fc.oneof(
    fc.anything(),
    fc.jsonValue(),
    fc.tuple(fc.constantFrom('S', 'T', 'D', 'A', 'P', 'V', 'X', 'C', 'Z', 'Q'), fc.array(fc.jsonValue({ maxDepth: 2 }), { maxLength: 12 })).map(([tag, rest]) => [tag, ...rest]),
    // 'S' of the right length with fields of any JSON type, and past lists of near-entries
    fc.tuple(
      fc.array(fc.oneof(fc.string(), fc.integer(), fc.constant(null), fc.constantFrom(0, 1)), { minLength: 9, maxLength: 9 }), pastish
    ).map(([fields, past]) => ['S', ...fields, past])
  )
  const odd: string[] = []
  fc.assert(fc.property(entryish, (raw) => {
    try {
      const entry = decodeEntry(raw)
      return typeof entry.tag === 'string'
    } catch (err) {
      if (isPlainMalformed(err)) return true
      odd.push(String(err))
      return false
    }
  }), { seed: SEED, numRuns: 3000 })
  t.same(odd, [])
})

const time = fc.integer({ min: 0, max: 2 ** 45 })
const core: fc.Arbitrary<SessionCore> = fc.record({
  id: fc.string({ maxLength: 44 }),
  sandbox: fc.string({ maxLength: 64 }),
  userId: fc.oneof(fc.constant(null), fc.string({ maxLength: 20 })),
  createdAt: time,
  lastSeenAt: time,
  idleTtl: time,
  absoluteExpiresAt: time,
  cur: fc.string({ maxLength: 44 }),
  seen: fc.boolean(),
  past: fc.array(fc.record({ key: fc.string({ maxLength: 44 }), box: fc.oneof(fc.constant(null), fc.string({ maxLength: 90 })), until: time }), { maxLength: 10 }),
  migrations: fc.oneof(fc.constant(0), fc.nat())
})

t.test('every entry the store writes reads back exactly; session cores with their rotation state included', async (t) => {
  fc.assert(fc.property(core, (c) => {
    const decoded = decodeEntry(JSON.parse(encodeCore(c)))
    return decoded.tag === 'S' && JSON.stringify(decoded.core) === JSON.stringify(c)
  }), { seed: SEED, numRuns: 2000 })
  const text = fc.string({ unit: 'binary', maxLength: 30 })
  const data = fc.dictionary(fc.oneof(text, fc.constantFrom('__proto__', 'constructor')), text, { maxKeys: 5 })
  fc.assert(fc.property(text, text, fc.oneof(text, fc.constant(null)), time, time, data, (a, b, maybe, n, m, d) => {
    const cases: Array<[string, unknown]> = [
      [encodeTouch(a, n), { tag: 'T', id: a, lastSeenAt: n }],
      [encodeSessionRemoved(a), { tag: 'D', id: a }],
      [encodeAllData(a, d), { tag: 'A', id: a, data: d }],
      [encodeDataKey(a, b, maybe), { tag: 'P', id: a, key: b, value: maybe }],
      [encodeValue(a, b, n), { tag: 'V', key: a, value: b, expiresAt: n }],
      [encodeValueRemoved(a), { tag: 'X', key: a }],
      [encodeCounter(a, n, m), { tag: 'C', key: a, count: n, resetAt: m }],
      [encodeCounterRemoved(a), { tag: 'Z', key: a }]
    ]
    return cases.every(([encoded, expected]) => {
      const decoded = decodeEntry(JSON.parse(encoded))
      if (decoded.tag === 'A' && Object.getPrototypeOf(decoded.data) !== Object.prototype) return false
      return JSON.stringify(decoded) === JSON.stringify(expected) && Object.keys(decoded).length === Object.keys(expected as object).length
    })
  }), { seed: SEED, numRuns: 1000 })
  t.pass('no counterexample')
})

t.test('a session core with any one field of the wrong type, or a past entry of the wrong shape, is refused', async (t) => {
  // Index in ["S", id, sandbox, userId, createdAt, lastSeenAt, idleTtl, absoluteExpiresAt, cur, seen, past] → values that do not fit.
  const strings = fc.oneof(fc.integer(), fc.constant(null), fc.boolean(), fc.array(fc.string(), { maxLength: 1 }), fc.object({ maxDepth: 0 }))
  const times = fc.oneof(fc.string(), fc.constant(null), fc.boolean(), fc.array(fc.integer(), { maxLength: 1 }), fc.constant(Infinity))
  const wrong: Array<fc.Arbitrary<unknown>> = [
    fc.constant(null), strings, strings, fc.oneof(fc.integer(), fc.boolean(), fc.array(fc.string(), { maxLength: 1 })), times, times, times, times, strings,
    fc.oneof(fc.integer({ min: 2 }), fc.integer({ max: -1 }), fc.boolean(), fc.constantFrom('0', '1', null, 0.5)),
    fc.oneof(fc.string(), fc.integer(), fc.constant(null), fc.object({ maxDepth: 0 }))
  ]
  const badPast = fc.oneof(
    fc.constant([]), fc.constant(['k', 'box']), fc.constant(['k', 'box', 1, 2]), fc.tuple(fc.oneof(fc.integer(), fc.constant(null)), fc.constant('box'), fc.nat()),
    fc.tuple(fc.string(), fc.oneof(fc.integer(), fc.boolean(), fc.array(fc.string(), { maxLength: 1 })), fc.nat()),
    fc.tuple(fc.string(), fc.oneof(fc.string(), fc.constant(null)), times), fc.string(), fc.constant(null), fc.object({ maxDepth: 0 })
  )
  const mutated = fc.oneof(
    fc.tuple(core, fc.integer({ min: 1, max: 10 }), fc.nat()).chain(([c, field, seed]) => wrong[field]!.map((bad) => {
      const entry = JSON.parse(encodeCore(c)) as unknown[]
      entry[field] = bad
      return { entry, why: `field ${field} = ${JSON.stringify(bad)} (${seed})` }
    })),
    fc.tuple(core, badPast, fc.nat()).map(([c, bad, at]) => {
      const entry = JSON.parse(encodeCore(c)) as unknown[]
      const past = entry[10] as unknown[]
      past.splice(at % (past.length + 1), 0, bad)
      return { entry, why: `past entry ${JSON.stringify(bad)}` }
    }),
    fc.tuple(core, fc.jsonValue()).map(([c, extra]) => ({ entry: [...JSON.parse(encodeCore(c)) as unknown[], extra], why: 'a 12th field' })),
    core.map((c) => ({ entry: (JSON.parse(encodeCore(c)) as unknown[]).slice(0, 10), why: 'no past list (10 fields, the old shape)' }))
  )
  const accepted: string[] = []
  fc.assert(fc.property(mutated, ({ entry, why }) => {
    try {
      decodeEntry(JSON.parse(JSON.stringify(entry)))
      accepted.push(why)
      return false
    } catch (err) {
      return isPlainMalformed(err)
    }
  }), { seed: SEED, numRuns: 3000 })
  t.same(accepted, [])
})

t.test('a damaged vault gives a clean start-up error, or the written state minus a tail of writes: never a crash, never a wrong value', async (t) => {
  // The pristine vault: an (empty) snapshot and a journal with a session that is created (A), rotated
  // (A → B, B presented), then migrated (A and B retired, C current), then eight separately awaited values.
  const pristineDir = await mkdtemp(join(tmpdir(), 'xems-fuzz-'))
  t.teardown(async () => { await rm(pristineDir, { recursive: true, force: true }) })
  const now = Date.now()
  const id = recordIdOf(generateLocator())
  const [keyA, keyB, keyC] = [newKey(), newKey(), newKey()]
  const boxAB = successorOf(generateToken()).box
  {
    const store = await MemoryStore.open({ persistence: { path: pristineDir, secret: SECRET } })
    await store.create({ id, sandbox: 'auth-active', tokenKey: keyA, data: { user: '"ada"' }, userId: 'ada', now, idleTtl: HOUR, absoluteExpiresAt: now + 5 * HOUR })
    await store.resolve({ id, tokenKey: keyA, now, gracePeriod: 60_000, revokeOnReuse: false })
    await store.commit({ id, tokenKey: keyA, patch: null, rotate: { newKey: keyB, box: boxAB, unseenWindow: HOUR }, now })
    await store.resolve({ id, tokenKey: keyB, now, gracePeriod: 60_000, revokeOnReuse: false })
    await store.migrate({ id, tokenKey: keyB, from: 'auth-active', to: 'auth-active', newKey: keyC, retiredUntil: now + HOUR, data: null, idleTtl: HOUR, now })
    for (const [i, key] of KEYS.entries()) await store.kvSet('s', key, value(i), HOUR, now)
    await store.close()
  }
  /** What [A, B, C] resolve to in each state the journal passes through, oldest first. */
  const states: Array<{ name: string, answers: string[] }> = [
    { name: 'nothing', answers: ['none', 'none', 'none'] },
    { name: 'created', answers: ['live', 'reused', 'reused'] },
    { name: 'rotated', answers: ['grace', 'live', 'reused'] },
    { name: 'migrated', answers: ['retired', 'retired', 'live'] }
  ]
  /** The session's answers, or a description of what is wrong with them. */
  const probeSession = async (store: MemoryStore): Promise<string> => {
    const results: ResolveResult[] = []
    for (const key of [keyA, keyB, keyC]) results.push(await store.resolve({ id, tokenKey: key, now, gracePeriod: 60_000, revokeOnReuse: false }))
    for (const r of results) {
      if (r.status === 'live' || r.status === 'grace') {
        if (r.session.data.user !== '"ada"' || r.session.userId !== 'ada' || r.session.id !== id) return `wrong session ${JSON.stringify(r.session)}`
        if (r.status === 'grace' && JSON.stringify(r.chain) !== JSON.stringify([boxAB])) return `wrong chain ${JSON.stringify(r.chain)}`
      }
      if (r.status === 'reused' && (r.id !== id || r.userId !== 'ada' || r.revoked)) return `wrong reuse ${JSON.stringify(r)}`
    }
    const answers = results.map((r) => r.status).join(',')
    return states.find((state) => state.answers.join(',') === answers)?.name ?? `an impossible state: ${answers}`
  }
  // The close marker is not a framed file; its damage is tested on its own below.
  const names = (await readdir(pristineDir)).filter((name) => name.startsWith('xems.') && !name.startsWith('xems.lock') && name !== 'xems.closed').sort()
  t.equal(names.length, 2, `a snapshot and a journal (${names.join(', ')})`)
  const pristine = new Map(await Promise.all(names.map(async (name): Promise<[string, Buffer]> => [name, await readFile(join(pristineDir, name))])))

  const mutation = fc.record({
    file: fc.constantFrom(...names),
    kind: fc.constantFrom('truncate', 'flip', 'overwrite', 'append', 'replace', 'duplicate-frame', 'delete'),
    at: fc.nat(),
    flips: fc.array(fc.nat(), { minLength: 1, maxLength: 3 }),
    bytes: fc.uint8Array({ minLength: 1, maxLength: 64 })
  })
  const outcomes = new Map<string, number>()
  const sessionStates = new Map<string, number>()
  const problems: string[] = []

  await fc.assert(fc.asyncProperty(mutation, async ({ file, kind, at, flips, bytes }) => {
    const dir = await mkdtemp(join(tmpdir(), 'xems-fuzz-'))
    try {
      for (const [name, content] of pristine) {
        let out: Buffer | null = Buffer.from(content)
        if (name === file) {
          switch (kind) {
            case 'truncate': out = out.subarray(0, at % out.length); break
            case 'flip': for (const bit of flips) out[(bit >> 3) % out.length]! ^= 1 << (bit & 7); break
            case 'overwrite': Buffer.from(bytes).copy(out, at % out.length); break
            case 'append': out = Buffer.concat([out, Buffer.from(bytes)]); break
            case 'replace': out = Buffer.from(bytes); break
            case 'duplicate-frame': {
              const frames = scanFrames(out).frames
              const frame = frames[at % frames.length]!
              out = Buffer.concat([out, out.subarray(frame.offset, frame.offset + 8 + frame.record.length)])
              break
            }
            case 'delete': out = null; break
          }
        }
        if (out !== null) await writeFile(join(dir, name), out)
      }
      const warnings: VaultWarning[] = []
      let store: MemoryStore
      try {
        store = await MemoryStore.open({ persistence: { path: dir, secret: SECRET }, onWarning: (warning) => { warnings.push(warning) } })
      } catch (err) {
        const code = isXemsError(err) ? err.code : `not an XemsError: ${String(err)}`
        outcomes.set(`refused ${code}`, (outcomes.get(`refused ${code}`) ?? 0) + 1)
        if (!CLEAN_CODES.has(code)) problems.push(`${kind} ${file}@${at}: ${code}`)
        return CLEAN_CODES.has(code)
      }
      try {
        const got = await Promise.all(KEYS.map(async (key) => await store.kvGet('s', key, now)))
        const wrong = got.some((v, i) => v !== null && v !== value(i))
        const firstMissing = got.indexOf(null)
        const notATail = firstMissing >= 0 && got.slice(firstMissing).some((v) => v !== null)
        const session = await probeSession(store)
        // Values come after the session in the journal: if any survived, the session is whole.
        const badSession = !states.some((state) => state.name === session) || (got[0] !== null && session !== 'migrated')
        const lost = got.filter((v) => v === null).length
        sessionStates.set(session, (sessionStates.get(session) ?? 0) + 1)
        const label = lost === 0 ? 'opened, nothing lost' : warnings.length > 0 ? 'opened, torn tail dropped with a warning' : 'opened, a tail lost silently'
        outcomes.set(label, (outcomes.get(label) ?? 0) + 1)
        if (wrong || notATail || badSession) problems.push(`${kind} ${file}@${at}: ${JSON.stringify(got)} session ${session}`)
        return !wrong && !notATail && !badSession
      } finally {
        await store.close()
      }
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  }), { seed: SEED, numRuns: 300 })
  t.same(problems, [])
  t.comment(`outcomes: ${JSON.stringify(Object.fromEntries(outcomes))}; session states: ${JSON.stringify(Object.fromEntries(sessionStates))}`)
  t.ok((sessionStates.get('migrated') ?? 0) > 0 && sessionStates.size >= 2, 'the session was seen whole, and at an earlier state of a cut journal')
  t.ok([...outcomes.keys()].some((key) => key.startsWith('refused')), 'some damage was refused')
  t.ok(outcomes.has('opened, nothing lost'), 'some damage was harmless (e.g. a flipped bit in a frame past the end, or a duplicated frame dropped as a torn tail)')
})

t.test('a journal cut at a record boundary (a logout rolled back) is reported', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'xems-rollback-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  const now = Date.now()
  const id = recordIdOf(generateLocator())
  const key = newKey()
  const store = await MemoryStore.open({ persistence: { path: dir, secret: SECRET } })
  await store.create({ id, sandbox: 'auth-active', tokenKey: key, data: {}, now, idleTtl: HOUR, absoluteExpiresAt: now + 5 * HOUR })
  t.equal(await store.destroy(id), true, 'the session is logged out')
  await store.close()
  const journal = (await readdir(dir)).find((name) => name.startsWith('xems.journal.'))!
  const bytes = await readFile(join(dir, journal))
  const frames = scanFrames(bytes).frames
  // Cut the logout record: a cut exactly at a record boundary, which a crash before the write looks like.
  await writeFile(join(dir, journal), bytes.subarray(0, frames.at(-1)!.offset))
  const warnings: VaultWarning[] = []
  let reopened: MemoryStore | null = null
  try {
    reopened = await MemoryStore.open({ persistence: { path: dir, secret: SECRET }, onWarning: (warning) => { warnings.push(warning) } })
  } catch (err) {
    t.ok(isXemsError(err), 'refused at start-up')
    return
  }
  const resolved = await reopened.resolve({ id, tokenKey: key, now, gracePeriod: 2000, revokeOnReuse: false })
  await reopened.close()
  // The cut cannot be told from a crash just before the logout was written, so the session comes back;
  // but a clean close records where the journal ended (xems.closed), so the cut is reported.
  t.equal(resolved.status, 'live', 'the state is that of the cut journal (a crash looks the same)')
  t.same(warnings.map((warning) => warning.code), ['FST_XEMS_VAULT_UNCLEAN'], 'the loss is reported')
})

t.test('a damaged, moved or missing close marker only reports an unclean close; the state is whole', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'xems-marker-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  const now = Date.now()
  const id = recordIdOf(generateLocator())
  const key = newKey()
  const store = await MemoryStore.open({ persistence: { path: dir, secret: SECRET } })
  await store.create({ id, sandbox: 'auth-active', tokenKey: key, data: {}, now, idleTtl: HOUR, absoluteExpiresAt: now + 5 * HOUR })
  await store.close()
  const marker = await readFile(join(dir, 'xems.closed'))
  for (const damage of ['flip', 'truncate', 'delete'] as const) {
    if (damage === 'flip') await writeFile(join(dir, 'xems.closed'), Buffer.from(marker.map((byte, i) => i === marker.length - 1 ? byte ^ 1 : byte)))
    if (damage === 'truncate') await writeFile(join(dir, 'xems.closed'), marker.subarray(0, 10))
    if (damage === 'delete') await rm(join(dir, 'xems.closed'))
    const warnings: VaultWarning[] = []
    const reopened = await MemoryStore.open({ persistence: { path: dir, secret: SECRET }, onWarning: (warning) => { warnings.push(warning) } })
    t.equal((await reopened.resolve({ id, tokenKey: key, now, gracePeriod: 2000, revokeOnReuse: false })).status, 'live', `${damage}: the session is there`)
    await reopened.close()
    t.same(warnings.map((warning) => warning.code), ['FST_XEMS_VAULT_UNCLEAN'], `${damage}: reported as an unclean close`)
  }
  const clean: VaultWarning[] = []
  const again = await MemoryStore.open({ persistence: { path: dir, secret: SECRET }, onWarning: (warning) => { clean.push(warning) } })
  await again.close()
  t.same(clean, [], 'after a clean close the next start is quiet')
})
