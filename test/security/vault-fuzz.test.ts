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
import { MemoryStore, type VaultWarning } from '../../lib/store/memory-store.js'
import { decodeEntry } from '../../lib/store/vault-entries.js'
import { decodeHeader, HEADER_BYTES, scanFrames } from '../../lib/store/vault-format.js'
import { generateToken, tokenKey } from '../../lib/token.js'

const SEED = Number(process.env.FC_SEED ?? 20_251_126)
const SECRET = randomBytes(32).toString('hex')
const HOUR = 3_600_000
const KEYS = Array.from({ length: 8 }, (_, i) => `k${i}`)
const value = (i: number): string => JSON.stringify({ i, pad: 'v'.repeat(10 + i) })

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

  const entryish = fc.oneof(
    fc.anything(),
    fc.jsonValue(),
    fc.tuple(fc.constantFrom('S', 'T', 'D', 'V', 'X', 'C', 'Z', 'Q'), fc.array(fc.jsonValue({ maxDepth: 2 }), { maxLength: 12 })).map(([tag, rest]) => [tag, ...rest])
  )
  const odd: string[] = []
  fc.assert(fc.property(entryish, (raw) => {
    try {
      const entry = decodeEntry(raw)
      return typeof entry.tag === 'string'
    } catch (err) {
      if (err instanceof Error && err.constructor === Error && err.message === 'an entry of unknown shape') return true
      odd.push(String(err))
      return false
    }
  }), { seed: SEED, numRuns: 3000 })
  t.same(odd, [])
})

t.test('a damaged vault gives a clean start-up error, or the written state minus a tail of writes: never a crash, never a wrong value', async (t) => {
  // The pristine vault: an (empty) snapshot and a journal with a session and eight separately awaited values.
  const pristineDir = await mkdtemp(join(tmpdir(), 'xems-fuzz-'))
  t.teardown(async () => { await rm(pristineDir, { recursive: true, force: true }) })
  const now = Date.now()
  const sessionToken = generateToken()
  {
    const store = await MemoryStore.open({ persistence: { path: pristineDir, secret: SECRET } })
    await store.create({ sid: 'sid-1', sandbox: 'auth-active', tokenKey: tokenKey(sessionToken), data: { user: '"ada"' }, userId: 'ada', now, idleTtl: HOUR, absoluteExpiresAt: now + 5 * HOUR })
    for (const [i, key] of KEYS.entries()) await store.kvSet('s', key, value(i), HOUR, now)
    await store.close()
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
        const session = await store.resolve({ tokenKey: tokenKey(sessionToken), now, revokeOnReuse: false })
        const badSession = session.status !== 'none' && (session.status !== 'live' || session.session.data.user !== '"ada"' || session.session.userId !== 'ada')
        const lost = got.filter((v) => v === null).length
        const label = lost === 0 ? 'opened, nothing lost' : warnings.length > 0 ? 'opened, torn tail dropped with a warning' : 'opened, a tail lost silently'
        outcomes.set(label, (outcomes.get(label) ?? 0) + 1)
        if (wrong || notATail || badSession) problems.push(`${kind} ${file}@${at}: ${JSON.stringify(got)} session ${session.status}`)
        return !wrong && !notATail && !badSession
      } finally {
        await store.close()
      }
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  }), { seed: SEED, numRuns: 300 })
  t.same(problems, [])
  t.comment(`outcomes: ${JSON.stringify(Object.fromEntries(outcomes))}`)
  t.ok([...outcomes.keys()].some((key) => key.startsWith('refused')), 'some damage was refused')
  t.ok(outcomes.has('opened, nothing lost'), 'some damage was harmless (e.g. a flipped bit in a frame past the end, or a duplicated frame dropped as a torn tail)')
})

t.test('a journal cut at a record boundary (a logout rolled back) is reported', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'xems-rollback-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  const now = Date.now()
  const token = generateToken()
  const store = await MemoryStore.open({ persistence: { path: dir, secret: SECRET } })
  await store.create({ sid: 'sid-1', sandbox: 'auth-active', tokenKey: tokenKey(token), data: {}, now, idleTtl: HOUR, absoluteExpiresAt: now + 5 * HOUR })
  t.equal(await store.destroy('sid-1'), true, 'the session is logged out')
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
  const resolved = await reopened.resolve({ tokenKey: tokenKey(token), now, revokeOnReuse: false })
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
  const token = generateToken()
  const store = await MemoryStore.open({ persistence: { path: dir, secret: SECRET } })
  await store.create({ sid: 'sid-1', sandbox: 'auth-active', tokenKey: tokenKey(token), data: {}, now, idleTtl: HOUR, absoluteExpiresAt: now + 5 * HOUR })
  await store.close()
  const marker = await readFile(join(dir, 'xems.closed'))
  for (const damage of ['flip', 'truncate', 'delete'] as const) {
    if (damage === 'flip') await writeFile(join(dir, 'xems.closed'), Buffer.from(marker.map((byte, i) => i === marker.length - 1 ? byte ^ 1 : byte)))
    if (damage === 'truncate') await writeFile(join(dir, 'xems.closed'), marker.subarray(0, 10))
    if (damage === 'delete') await rm(join(dir, 'xems.closed'))
    const warnings: VaultWarning[] = []
    const reopened = await MemoryStore.open({ persistence: { path: dir, secret: SECRET }, onWarning: (warning) => { warnings.push(warning) } })
    t.equal((await reopened.resolve({ tokenKey: tokenKey(token), now, revokeOnReuse: false })).status, 'live', `${damage}: the session is there`)
    await reopened.close()
    t.same(warnings.map((warning) => warning.code), ['FST_XEMS_VAULT_UNCLEAN'], `${damage}: reported as an unclean close`)
  }
  const clean: VaultWarning[] = []
  const again = await MemoryStore.open({ persistence: { path: dir, secret: SECRET }, onWarning: (warning) => { clean.push(warning) } })
  await again.close()
  t.same(clean, [], 'after a clean close the next start is quiet')
})
