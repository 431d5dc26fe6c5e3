import { randomBytes } from 'node:crypto'
import { appendFile, mkdtemp, readdir, readFile, rm, stat, symlink, truncate, writeFile } from 'node:fs/promises'
import { hostname, tmpdir } from 'node:os'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import type { SessionStore } from '../../lib/store/contract.js'
import { MemoryStore, type MemoryStoreOptions, type VaultWarning } from '../../lib/store/memory-store.js'
import { HEADER_BYTES, scanFrames } from '../../lib/store/vault-format.js'
import { generateSessionId, generateToken, tokenKey } from '../../lib/token.js'
import { runStoreConformance } from './conformance.js'

const SECRET = randomBytes(32).toString('hex')
const NEW_SECRET = randomBytes(32).toString('base64')
const OTHER_SECRET = randomBytes(32)
const HOUR = 3_600_000
const DAY = 24 * HOUR
const newKey = (): string => tokenKey(generateToken())

async function tempDir (t: Test): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'xems-vault-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  return dir
}

function options (dir: string, extra: Partial<MemoryStoreOptions> = {}, persistence: Partial<NonNullable<MemoryStoreOptions['persistence']>> = {}): MemoryStoreOptions {
  return { ...extra, persistence: { path: dir, secret: SECRET, fsync: 'always', ...persistence } }
}

/** Every file of the directory with its bytes, to prove that a failed start wrote nothing. */
async function contents (dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {}
  for (const name of (await readdir(dir)).sort()) out[name] = (await readFile(join(dir, name))).toString('hex')
  return out
}

async function journalName (dir: string): Promise<string> {
  const names = (await readdir(dir)).filter((name) => /^xems\.journal\.\d+$/.test(name))
  if (names.length !== 1) throw new Error(`expected one journal, found ${names.join(', ')}`)
  return names[0]!
}

async function flipByte (file: string, offset: number): Promise<void> {
  const bytes = await readFile(file)
  bytes[offset] = bytes[offset]! ^ 0x01
  await writeFile(file, bytes)
}

/** Writes three separately awaited values (three journal records after the header record) and closes. */
async function threeRecords (dir: string): Promise<void> {
  const store = await MemoryStore.open(options(dir))
  await store.kvSet('s', 'a', '1', HOUR, Date.now())
  await store.kvSet('s', 'b', '2', HOUR, Date.now())
  await store.kvSet('s', 'c', '3', HOUR, Date.now())
  await store.close()
}

async function values (store: SessionStore, keys: string[]): Promise<Array<string | null>> {
  return await Promise.all(keys.map(async (key) => await store.kvGet('s', key, Date.now())))
}

t.test('the conformance suite passes with persistence on', async (t) => {
  for (const fsync of ['always', 'everysec'] as const) {
    t.test(`fsync: ${fsync}`, async (t) => {
      runStoreConformance(t, async () => {
        const dir = await mkdtemp(join(tmpdir(), 'xems-vault-'))
        const store = await MemoryStore.open(options(dir, {}, { fsync }))
        return {
          store,
          cleanup: async () => {
            await store.close()
            await rm(dir, { recursive: true, force: true })
          }
        }
      })
    })
  }
})

t.test('a restart keeps sessions, rotation state and grace chains, values, sandboxes, users and counters', async (t) => {
  const dir = await tempDir(t)
  const now = Date.now()
  let store = await MemoryStore.open(options(dir))
  const sid = generateSessionId()
  const [a, b, c] = [newKey(), newKey(), newKey()]
  await store.create({ sid, sandbox: 'auth-active', tokenKey: a, data: { user: '"ada"', n: '1' }, userId: 'u1', now, idleTtl: HOUR, absoluteExpiresAt: now + 5 * DAY })
  await store.commit({ sid, tokenKey: a, patch: { n: '2', cart: '["x"]' }, rotate: { newKey: b, box: 'a→b', graceUntil: now + 60_000 }, now: now + 1 })
  await store.commit({ sid, tokenKey: b, patch: { user: null }, rotate: { newKey: c, box: 'b→c', graceUntil: now + 10 }, now: now + 2 })
  const pending = generateSessionId()
  const pendingKey = newKey()
  await store.create({ sid: pending, sandbox: 'otp-pending', tokenKey: pendingKey, data: {}, userId: 'u1', now, idleTtl: 600_000, absoluteExpiresAt: now + 5 * DAY })
  await store.kvSet('users-registry', 'ada', '{"name":"Ada"}', HOUR, now)
  await store.kvSet('auth-active', 'ada', '"other sandbox"', HOUR, now)
  await store.increment('mfa:u1', 60_000, now)
  await store.increment('mfa:u1', 60_000, now)
  t.equal((await store.resolve({ tokenKey: c, now: now + 3, revokeOnReuse: false })).status, 'live', 'a use refreshes lastSeenAt')
  await store.close()

  store = await MemoryStore.open(options(dir))
  t.teardown(async () => { await store.close() })
  t.same(store.size, { sessions: 2, tokens: 4, values: 2, counters: 1 })
  const live = await store.resolve({ tokenKey: c, now: now + 4, revokeOnReuse: false })
  t.equal(live.status, 'live')
  if (live.status === 'live') {
    t.same({ ...live.session.data }, { n: '2', cart: '["x"]' })
    t.equal(live.session.userId, 'u1')
    t.equal(live.session.sandbox, 'auth-active')
    t.equal(live.session.createdAt, now)
    t.equal(live.session.absoluteExpiresAt, now + 5 * DAY)
    t.equal(live.session.idleTtl, HOUR)
  }
  const grace = await store.resolve({ tokenKey: a, now: now + 5, revokeOnReuse: false })
  t.equal(grace.status, 'grace', 'the first token is still in its grace period')
  if (grace.status === 'grace') t.same(grace.chain, ['a→b', 'b→c'], 'and its chain leads to the current token')
  t.same(await store.resolve({ tokenKey: b, now: now + 11, revokeOnReuse: false }), { status: 'reused', sid, sandbox: 'auth-active', userId: 'u1', revoked: false },
    'the second token, past its grace, is recognised as replayed')
  t.same(await store.resolve({ tokenKey: pendingKey, now: now + 5, sandbox: 'auth-active', revokeOnReuse: false }), { status: 'none' }, 'sandboxes stay separate')
  t.equal((await store.resolve({ tokenKey: pendingKey, now: now + 5, sandbox: 'otp-pending', revokeOnReuse: false })).status, 'live')
  t.same((await store.listUser('u1', now + 6)).map((info) => info.sid).sort(), [sid, pending].sort(), 'the user index is rebuilt')
  t.equal(await store.kvGet('users-registry', 'ada', now + 7), '{"name":"Ada"}')
  t.equal(await store.kvGet('auth-active', 'ada', now + 7), '"other sandbox"')
  t.same(await store.increment('mfa:u1', 60_000, now + 8), { count: 3, resetAt: now + 60_000 }, 'counters are persisted')
  t.same(await store.resolve({ tokenKey: a, now: now + 60_000, revokeOnReuse: true }), { status: 'reused', sid, sandbox: 'auth-active', userId: 'u1', revoked: true })
  await store.close()

  store = await MemoryStore.open(options(dir))
  t.same(await store.resolve({ tokenKey: c, now: now + 60_001, revokeOnReuse: false }), { status: 'none' }, 'a revocation survives a restart too')
  t.equal((await store.resolve({ tokenKey: pendingKey, now: now + 60_001, revokeOnReuse: false })).status, 'live')
})

t.test('a restart keeps exactly the last 16 rotated tokens, in order, and migrations kill the old ones', async (t) => {
  const dir = await tempDir(t)
  const now = Date.now()
  let store = await MemoryStore.open(options(dir, {}, { compactAfter: 2000 }))
  const sid = generateSessionId()
  const keys = [newKey()]
  await store.create({ sid, sandbox: 'auth-active', tokenKey: keys[0]!, data: {}, now, idleTtl: HOUR, absoluteExpiresAt: now + DAY })
  for (let i = 0; i < 20; i++) {
    const next = newKey()
    await store.commit({ sid, tokenKey: keys.at(-1)!, patch: { [`k${i % 3}`]: String(i) }, rotate: { newKey: next, box: `box${i}`, graceUntil: now + 60_000 }, now })
    keys.push(next)
    if (i % 7 === 3) {
      await store.close()
      store = await MemoryStore.open(options(dir, {}, { compactAfter: 2000 }))
    }
  }
  await store.close()
  store = await MemoryStore.open(options(dir))
  t.same(store.size, { sessions: 1, tokens: 17, values: 0, counters: 0 }, 'the current token and 16 rotated ones')
  for (let i = 0; i < 4; i++) t.same(await store.resolve({ tokenKey: keys[i]!, now, revokeOnReuse: false }), { status: 'none' }, `token ${i} is forgotten`)
  const grace = await store.resolve({ tokenKey: keys[4]!, now, revokeOnReuse: false })
  if (grace.status !== 'grace') return t.fail(`expected grace, got ${grace.status}`)
  t.same(grace.chain, Array.from({ length: 16 }, (_, i) => `box${i + 4}`), 'the chain from the oldest remembered token is whole and in order')
  t.same({ ...grace.session.data }, { k0: '18', k1: '19', k2: '17' })
  const active = newKey()
  t.equal(await store.migrate({ sid, from: 'auth-active', to: 'auth-active', newKey: active, data: { fresh: 'true' }, idleTtl: HOUR, userId: 'u9', now }), true)
  await store.close()
  store = await MemoryStore.open(options(dir))
  t.teardown(async () => { await store.close() })
  t.same(store.size, { sessions: 1, tokens: 1, values: 0, counters: 0 }, 'after a migration only the new token is held')
  t.same(await store.resolve({ tokenKey: keys.at(-1)!, now, revokeOnReuse: false }), { status: 'none' })
  const live = await store.resolve({ tokenKey: active, now, revokeOnReuse: false })
  if (live.status !== 'live') return t.fail('expected live')
  t.same({ ...live.session.data }, { fresh: 'true' })
  t.equal(live.session.userId, 'u9')
  t.same((await store.listUser('u9', now)).map((info) => info.sid), [sid])
})

t.test('operations called before the vault is loaded wait for it', async (t) => {
  const dir = await tempDir(t)
  let store = await MemoryStore.open(options(dir))
  await store.kvSet('s', 'k', 'v', HOUR, Date.now())
  await store.close()
  store = new MemoryStore(options(dir))
  t.teardown(async () => { await store.close() })
  const early = store.kvGet('s', 'k', Date.now())
  const write = store.kvSet('s', 'k2', 'v2', HOUR, Date.now())
  t.equal(await early, 'v', 'a read issued before ready sees the loaded state')
  await write
  await store.ready()
  t.equal(await store.kvGet('s', 'k2', Date.now()), 'v2')
})

t.test('without persistence, ready() resolves at once and MemoryStore.open works too', async (t) => {
  const store = await MemoryStore.open()
  await store.ready()
  await store.kvSet('s', 'k', 'v', HOUR, Date.now())
  t.equal(await store.kvGet('s', 'k', Date.now()), 'v')
  await store.close()
})

t.test('a wrong secret stops start-up with FST_XEMS_BAD_SECRET and leaves the files untouched', async (t) => {
  const dir = await tempDir(t)
  await threeRecords(dir)
  const before = await contents(dir)
  const store = new MemoryStore(options(dir, {}, { secret: OTHER_SECRET }))
  const early = store.kvGet('s', 'a', Date.now())
  await t.rejects(store.ready(), { code: 'FST_XEMS_BAD_SECRET', message: /persistence\.secret/ })
  await t.rejects(early, { code: 'FST_XEMS_BAD_SECRET' }, 'an operation that waited for the start fails with its error')
  await t.rejects(store.kvSet('s', 'x', '1', HOUR, Date.now()), { code: 'FST_XEMS_BAD_SECRET' }, 'and so does every later one')
  await store.close()
  await t.rejects(MemoryStore.open(options(dir, {}, { secret: [OTHER_SECRET] })), { code: 'FST_XEMS_BAD_SECRET' })
  t.same(await contents(dir), before, 'not a byte changed, no file added or removed')
  const good = await MemoryStore.open(options(dir))
  t.same(await values(good, ['a', 'b', 'c']), ['1', '2', '3'], 'the right secret still opens everything')
  await good.close()
})

t.test('secret rotation: [new, old] opens the old vault and rewrites it with the new secret', async (t) => {
  const dir = await tempDir(t)
  await threeRecords(dir)
  let store = await MemoryStore.open(options(dir, {}, { secret: [NEW_SECRET, SECRET] }))
  t.same(await values(store, ['a', 'b', 'c']), ['1', '2', '3'], 'nobody is logged out')
  await store.kvSet('s', 'd', '4', HOUR, Date.now())
  await store.close()
  store = await MemoryStore.open(options(dir, {}, { secret: NEW_SECRET }))
  t.same(await values(store, ['a', 'b', 'c', 'd']), ['1', '2', '3', '4'], 'after one start, the new secret alone opens everything')
  await store.close()
  await t.rejects(MemoryStore.open(options(dir, {}, { secret: SECRET })), { code: 'FST_XEMS_BAD_SECRET' }, 'the old secret no longer does')
})

t.test('host binding: another host id does not open, the same one does', async (t) => {
  const dir = await tempDir(t)
  let store = await MemoryStore.open(options(dir, { bindToHost: true, hostId: 'host-a' }))
  await store.kvSet('s', 'k', 'v', HOUR, Date.now())
  await store.close()
  const before = await contents(dir)
  await t.rejects(MemoryStore.open(options(dir, { bindToHost: true, hostId: 'host-b' })), { code: 'FST_XEMS_VAULT_OTHER_HOST', message: /another host/ })
  await t.rejects(MemoryStore.open(options(dir, { hostId: 'host-b' })), { code: 'FST_XEMS_VAULT_OTHER_HOST' }, 'turning bindToHost off does not open it elsewhere')
  t.same(await contents(dir), before, 'files untouched')
  store = await MemoryStore.open(options(dir, { bindToHost: true, hostId: 'host-a' }))
  t.equal(await store.kvGet('s', 'k', Date.now()), 'v')
  await store.close()
  for (const name of await readdir(dir)) {
    const file = await readFile(join(dir, name))
    t.notOk(file.includes(Buffer.from('host-a')), `${name} does not show the host id`)
  }

  // On its own host a vault can be unbound, and bound again (here to the real machine id).
  store = await MemoryStore.open(options(dir, { bindToHost: false, hostId: 'host-a' }))
  await store.close()
  store = await MemoryStore.open(options(dir))
  t.equal(await store.kvGet('s', 'k', Date.now()), 'v', 'unbound now: opens without a host id')
  await store.close()
  store = await MemoryStore.open(options(dir, { bindToHost: true }))
  await store.close()
  await t.rejects(MemoryStore.open(options(dir, { bindToHost: true, hostId: 'not-this-machine' })), { code: 'FST_XEMS_VAULT_OTHER_HOST' },
    'bound to /etc/machine-id, it does not open with another host id')
  store = await MemoryStore.open(options(dir, { bindToHost: true }))
  t.equal(await store.kvGet('s', 'k', Date.now()), 'v', 'and opens with the machine id')
  await store.close()
})

t.test('a tampered byte in the snapshot stops start-up with FST_XEMS_VAULT_CORRUPT', async (t) => {
  const dir = await tempDir(t)
  await threeRecords(dir)
  // A start folds the journal into the snapshot.
  await (await MemoryStore.open(options(dir))).close()
  const file = join(dir, 'xems.snapshot')
  const frames = scanFrames(await readFile(file)).frames
  t.equal(frames.length, 3, 'header record, one chunk, end record')
  await flipByte(file, frames[1]!.offset + 8 + 40)
  const before = await contents(dir)
  await t.rejects(MemoryStore.open(options(dir)), { code: 'FST_XEMS_VAULT_CORRUPT', message: /xems\.snapshot record 1 .* does not authenticate/ })
  t.same(await contents(dir), before, 'files untouched')
})

t.test('a tampered byte in the snapshot header or its last record is refused too', async (t) => {
  const dir = await tempDir(t)
  await threeRecords(dir)
  await (await MemoryStore.open(options(dir))).close()
  const file = join(dir, 'xems.snapshot')
  const original = await readFile(file)
  await flipByte(file, 30)
  await t.rejects(MemoryStore.open(options(dir)), { code: 'FST_XEMS_VAULT_CORRUPT' }, 'vault id changed: no record authenticates')
  await writeFile(file, original)
  const frames = scanFrames(original).frames
  await flipByte(file, frames.at(-1)!.offset + 8 + 20)
  await t.rejects(MemoryStore.open(options(dir)), { code: 'FST_XEMS_VAULT_CORRUPT' }, 'a snapshot has no torn tail')
  await writeFile(file, original.subarray(0, frames.at(-1)!.offset))
  await t.rejects(MemoryStore.open(options(dir)), { code: 'FST_XEMS_VAULT_CORRUPT', message: /end record/ }, 'nor may it lose its end')
})

t.test('a tampered byte in the middle of the journal stops start-up; swapped records too', async (t) => {
  const dir = await tempDir(t)
  await threeRecords(dir)
  const file = join(dir, await journalName(dir))
  const original = await readFile(file)
  const frames = scanFrames(original).frames
  t.equal(frames.length, 4, 'header record and three batches')
  const before = await contents(dir)

  await flipByte(file, frames[2]!.offset + 8 + 30)
  await t.rejects(MemoryStore.open(options(dir)), { code: 'FST_XEMS_VAULT_CORRUPT', message: /record 2 .* does not authenticate/ })
  t.equal((await readFile(file)).length, original.length, 'not truncated')

  await writeFile(file, original)
  await flipByte(file, frames[1]!.offset + 1)
  await t.rejects(MemoryStore.open(options(dir)), { code: 'FST_XEMS_VAULT_CORRUPT', message: /damaged record frame/ }, 'a damaged frame length')

  const one = original.subarray(frames[1]!.offset, frames[2]!.offset)
  const two = original.subarray(frames[2]!.offset, frames[3]!.offset)
  await writeFile(file, Buffer.concat([original.subarray(0, frames[1]!.offset), two, one, original.subarray(frames[3]!.offset)]))
  await t.rejects(MemoryStore.open(options(dir)), { code: 'FST_XEMS_VAULT_CORRUPT' }, 'records cannot be reordered')

  await writeFile(file, original)
  await flipByte(file, 20)
  await t.rejects(MemoryStore.open(options(dir)), { code: 'FST_XEMS_VAULT_CORRUPT' }, 'nor the journal header changed')

  await writeFile(file, original)
  t.same(await contents(dir), before)
  const store = await MemoryStore.open(options(dir))
  t.same(await values(store, ['a', 'b', 'c']), ['1', '2', '3'], 'the restored files open')
  await store.close()
})

t.test('a record moved from another vault or file does not open', async (t) => {
  const dirA = await tempDir(t)
  const dirB = await tempDir(t)
  await threeRecords(dirA)
  await threeRecords(dirB)
  const fileA = join(dirA, await journalName(dirA))
  const fileB = join(dirB, await journalName(dirB))
  const a = await readFile(fileA)
  const b = await readFile(fileB)
  const framesA = scanFrames(a).frames
  const framesB = scanFrames(b).frames
  // Record 2 of vault B, same secret, same generation, same position, put in vault A.
  await writeFile(fileA, Buffer.concat([a.subarray(0, framesA[2]!.offset), b.subarray(framesB[2]!.offset, framesB[3]!.offset), a.subarray(framesA[3]!.offset)]))
  await t.rejects(MemoryStore.open(options(dirA)), { code: 'FST_XEMS_VAULT_CORRUPT' })
})

t.test('a torn last journal record is dropped with a warning and the rest is loaded', async (t) => {
  for (const [name, tear] of [
    ['cut in the middle of its record', async (file: string, last: number, size: number) => { await truncate(file, last + Math.floor((size - last) / 2)) }],
    ['cut in its frame header', async (file: string, last: number) => { await truncate(file, last + 3) }],
    ['damaged in its last bytes', async (file: string, _last: number, size: number) => { await flipByte(file, size - 2) }],
    ['followed by zeros of an extended file', async (file: string, last: number) => {
      await truncate(file, last + 20)
      await appendFile(file, Buffer.alloc(300))
    }]
  ] as const) {
    t.test(name, async (t) => {
      const dir = await tempDir(t)
      await threeRecords(dir)
      const file = join(dir, await journalName(dir))
      const bytes = await readFile(file)
      await tear(file, scanFrames(bytes).frames.at(-1)!.offset, bytes.length)
      const warnings: VaultWarning[] = []
      const store = await MemoryStore.open(options(dir, { onWarning: (warning) => warnings.push(warning) }))
      t.same(await values(store, ['a', 'b', 'c']), ['1', '2', null], 'everything but the torn record')
      t.equal(warnings.length, 1)
      t.match(warnings[0], { code: 'FST_XEMS_VAULT_TORN_TAIL', file, message: /incomplete record/ })
      t.notMatch(warnings[0]!.message, SECRET, 'no secret in the warning')
      await store.kvSet('s', 'd', '4', HOUR, Date.now())
      await store.close()
      const again = await MemoryStore.open(options(dir, { onWarning: (warning) => warnings.push(warning) }))
      t.same(await values(again, ['a', 'b', 'c', 'd']), ['1', '2', null, '4'], 'the next start is clean')
      t.equal(warnings.length, 1, 'and warns no more')
      await again.close()
    })
  }
})

t.test('a torn tail followed by records in a later journal is not a crash: refused', async (t) => {
  const dir = await tempDir(t)
  await threeRecords(dir)
  const name = await journalName(dir)
  const generation = Number(name.split('.').at(-1))
  const file = join(dir, name)
  const bytes = await readFile(file)
  // Make a later journal by letting a store start (it writes journal N+1 and a snapshot), keep it,
  // then restore the older snapshot and put the torn journal N back beside it.
  const snapshot = await readFile(join(dir, 'xems.snapshot'))
  const store = await MemoryStore.open(options(dir))
  await store.kvSet('s', 'later', 'x', HOUR, Date.now())
  await store.close()
  await writeFile(join(dir, 'xems.snapshot'), snapshot)
  await writeFile(file, bytes.subarray(0, bytes.length - 5))
  t.ok((await readdir(dir)).includes(`xems.journal.${generation + 1}`))
  await t.rejects(MemoryStore.open(options(dir)), { code: 'FST_XEMS_VAULT_CORRUPT', message: /later journal holds records/ })
})

t.test('a start that fails while compacting leaves a vault the next start opens, torn tail included', async (t) => {
  const dir = await tempDir(t)
  await threeRecords(dir)
  const file = join(dir, await journalName(dir))
  const bytes = await readFile(file)
  await truncate(file, bytes.length - 7)
  const disk = { failFsync: false, failSnapshot: true }
  const Store = await storeOnFailingDisk(t, disk)
  const warnings: VaultWarning[] = []
  await t.rejects(Store.open(options(dir, { onWarning: (w) => warnings.push(w) })), { code: 'FST_XEMS_VAULT_IO', message: /ENOSPC/ })
  const journals = (await readdir(dir)).filter((name) => name.startsWith('xems.journal.'))
  t.equal(journals.length, 2, 'it had begun a new journal')
  const store = await MemoryStore.open(options(dir, { onWarning: (w) => warnings.push(w) }))
  t.same(await values(store, ['a', 'b', 'c']), ['1', '2', null])
  t.same(warnings.map((w) => w.code), ['FST_XEMS_VAULT_TORN_TAIL', 'FST_XEMS_VAULT_TORN_TAIL'])
  await store.close()
})

t.test('expired entries are not written back, and the absolute cap holds across restarts', async (t) => {
  const dir = await tempDir(t)
  const t0 = Date.now()
  let clock = t0
  const open = async (): Promise<MemoryStore> => await MemoryStore.open(options(dir, { clock: () => clock }))
  let store = await open()
  await store.create({ sid: 'short', sandbox: 's', tokenKey: newKey(), data: {}, now: t0, idleTtl: 1000, absoluteExpiresAt: t0 + 5 * DAY })
  const capped = newKey()
  await store.create({ sid: 'capped', sandbox: 's', tokenKey: capped, data: {}, now: t0, idleTtl: 10 * DAY, absoluteExpiresAt: t0 + 5 * DAY })
  await store.kvSet('s', 'brief', '1', 1000, t0)
  await store.kvSet('s', 'lasting', '2', DAY, t0)
  await store.increment('c', 1000, t0)
  await store.close()

  clock = t0 + 5000
  store = await open()
  t.same(store.size, { sessions: 1, tokens: 1, values: 1, counters: 0 }, 'what expired is not loaded')
  await store.close()
  clock = t0
  store = await open()
  t.same(store.size, { sessions: 1, tokens: 1, values: 1, counters: 0 }, 'nor written back: back in time, it is still gone')
  t.equal(await store.kvGet('s', 'brief', t0 + 1), null)
  await store.close()

  clock = t0 + 5 * DAY - 1000
  store = await open()
  t.equal((await store.resolve({ tokenKey: capped, now: t0 + 5 * DAY - 500, revokeOnReuse: true })).status, 'live', 'used just before its cap')
  await store.close()
  clock = t0 + 5 * DAY + 1
  store = await open()
  t.same(store.size.sessions, 0, 'the 5-day cap ends it although it was used and its idle ttl is 10 days')
  t.same(await store.resolve({ tokenKey: capped, now: t0 + 5 * DAY + 2, revokeOnReuse: true }), { status: 'none' })
  await store.close()
})

t.test('writes of one turn share one record (group commit), and close() flushes everysec writes', async (t) => {
  const dir = await tempDir(t)
  let store = await MemoryStore.open(options(dir, {}, { fsync: 'everysec' }))
  const now = Date.now()
  await Promise.all(Array.from({ length: 200 }, async (_, i) => { await store.kvSet('s', `k${i}`, String(i), HOUR, now) }))
  const name = await journalName(dir)
  const frames = scanFrames(await readFile(join(dir, name))).frames
  t.ok(frames.length <= 3, `200 parallel writes took ${frames.length - 1} record(s)`)
  for (let i = 0; i < 50; i++) void store.kvSet('s', `late${i}`, String(i), HOUR, now)
  await store.close()
  store = await MemoryStore.open(options(dir))
  t.equal(store.size.values, 250, 'everything written before close is there')
  await store.close()
})

t.test('the journal is compacted into a new snapshot while writes go on', async (t) => {
  const dir = await tempDir(t)
  const warnings: VaultWarning[] = []
  let store = await MemoryStore.open(options(dir, { onWarning: (w) => warnings.push(w) }, { compactAfter: 4096 }))
  const now = Date.now()
  const generationAtStart = Number((await journalName(dir)).split('.').at(-1))
  for (let round = 0; round < 40; round++) {
    await Promise.all(Array.from({ length: 10 }, async (_, i) => { await store.kvSet('s', `k${(round * 10 + i) % 150}`, `${round}-${i}`, HOUR, now) }))
    await store.increment('rounds', HOUR, now)
  }
  await store.close()
  const names = (await readdir(dir)).sort()
  const journals = names.filter((name) => name.startsWith('xems.journal.'))
  t.equal(journals.length, 1, `one journal left after compactions: ${names.join(', ')}`)
  t.ok(Number(journals[0]!.split('.').at(-1)) > generationAtStart + 2, 'several compactions happened')
  t.notOk(names.some((name) => name.endsWith('.tmp') || name === 'xems.lock'), 'no temp file or lock left')
  t.ok(names.includes('xems.closed'), 'a clean close leaves its marker')
  t.same(warnings, [])
  store = await MemoryStore.open(options(dir))
  t.equal(store.size.values, 150)
  t.equal(await store.kvGet('s', 'k99', now), '39-9')
  t.equal(await store.kvGet('s', 'k149', now), '29-9')
  t.equal(await store.kvGet('s', 'k0', now), '30-0')
  t.same(await store.increment('rounds', HOUR, now), { count: 41, resetAt: now + HOUR })
  await store.close()
})

t.test('a snapshot that cannot be written is only a warning: the journals keep everything, it is tried again', async (t) => {
  const dir = await tempDir(t)
  const disk = { failFsync: false, failSnapshot: false }
  const Store = await storeOnFailingDisk(t, disk)
  const warnings: VaultWarning[] = []
  let store = await Store.open(options(dir, { onWarning: (w) => warnings.push(w) }, { compactAfter: 1024 }))
  disk.failSnapshot = true
  const now = Date.now()
  for (let i = 0; i < 40; i++) await store.kvSet('s', `k${i}`, 'x'.repeat(100), HOUR, now)
  t.match(warnings[0], { code: 'FST_XEMS_VAULT_COMPACTION_FAILED', message: /ENOSPC/ })
  t.equal(await store.kvGet('s', 'k0', now), 'x'.repeat(100), 'the store goes on')
  disk.failSnapshot = false
  const failures = warnings.length
  for (let i = 40; i < 80; i++) await store.kvSet('s', `k${i}`, 'y', HOUR, now)
  await store.close()
  t.equal(warnings.length, failures, 'the next compaction succeeded')
  t.notOk((await readdir(dir)).some((name) => name.endsWith('.tmp')), 'no temp file left')
  store = await MemoryStore.open(options(dir))
  t.equal(store.size.values, 80, 'nothing was lost')
  await store.close()
})

t.test('a file planted at a temp name is replaced, never written through', async (t) => {
  const dir = await tempDir(t)
  const target = join(await tempDir(t), 'victim')
  await writeFile(target, 'precious')
  await (await MemoryStore.open(options(dir))).close()
  await symlink(target, join(dir, 'xems.snapshot.tmp'))
  await (await MemoryStore.open(options(dir))).close()
  t.equal(await readFile(target, 'utf8'), 'precious')
})

t.test('one vault directory, one store: a second one is refused, a stale lock is taken over', async (t) => {
  const dir = await tempDir(t)
  const store = await MemoryStore.open(options(dir))
  await t.rejects(MemoryStore.open(options(dir)), { code: 'FST_XEMS_VAULT_LOCKED' })
  await store.close()
  await writeFile(join(dir, 'xems.lock'), JSON.stringify({ pid: 2 ** 30, host: hostname() }))
  const again = await MemoryStore.open(options(dir))
  const link = join(await tempDir(t), 'link')
  await symlink(dir, link)
  await t.rejects(MemoryStore.open(options(link)), { code: 'FST_XEMS_VAULT_LOCKED' }, 'also under another name')
  await again.close()
  t.notOk((await readdir(dir)).includes('xems.lock'), 'close releases the lock')
})

t.test('a failed write or fsync stops the store: 503 for everything until a restart', async (t) => {
  const dir = await tempDir(t)
  const disk = { failFsync: false, failSnapshot: false }
  const Store = await storeOnFailingDisk(t, disk)
  const warnings: VaultWarning[] = []
  const store = await Store.open(options(dir, { onWarning: (w) => warnings.push(w) }))
  await store.kvSet('s', 'a', '1', HOUR, Date.now())
  disk.failFsync = true
  await t.rejects(store.kvSet('s', 'b', '2', HOUR, Date.now()), { code: 'FST_XEMS_STORE_UNAVAILABLE', statusCode: 503 })
  await t.rejects(store.kvGet('s', 'a', Date.now()), { code: 'FST_XEMS_STORE_UNAVAILABLE' }, 'reads too: memory may be ahead of the disk')
  t.match(warnings, [{ code: 'FST_XEMS_VAULT_WRITE_FAILED', message: /EIO/ }])
  await store.close()
  const again = await MemoryStore.open(options(dir))
  t.equal(await again.kvGet('s', 'a', Date.now()), '1', 'a restart recovers what was written')
  await again.close()
})

t.test('files are private to their owner', async (t) => {
  const dir = join(await tempDir(t), 'nested', 'vault')
  const store = await MemoryStore.open(options(dir))
  await store.kvSet('s', 'k', 'secret-value', HOUR, Date.now())
  t.equal((await stat(dir)).mode & 0o777, 0o700)
  for (const name of await readdir(dir)) {
    if (name === 'xems.lock') continue
    const file = join(dir, name)
    t.equal((await stat(file)).mode & 0o777, 0o600, `${name} is 0600`)
    t.notOk((await readFile(file)).includes(Buffer.from('secret-value')), `${name} holds no plaintext`)
  }
  await store.close()
})

t.test('bad options fail at construction, naming the option, never echoing a secret', async (t) => {
  const dir = await tempDir(t)
  const bad = 'x'.repeat(31)
  const cases: Array<[MemoryStoreOptions, string, RegExp]> = [
    [options(dir, {}, { secret: bad }), 'FST_XEMS_BAD_SECRET', /"persistence\.secret" must be exactly 32 bytes/],
    [options(dir, {}, { secret: [SECRET, bad] }), 'FST_XEMS_BAD_SECRET', /"persistence\.secret\[1\]"/],
    [options(dir, {}, { secret: [] }), 'FST_XEMS_BAD_SECRET', /"persistence\.secret"/],
    [options(dir, {}, { secret: undefined as unknown as string }), 'FST_XEMS_BAD_SECRET', /"persistence\.secret"/],
    [options(dir, {}, { fsync: 'sometimes' as 'always' }), 'FST_XEMS_BAD_OPTION', /"persistence\.fsync"/],
    [options(dir, {}, { compactAfter: 0 }), 'FST_XEMS_BAD_OPTION', /"persistence\.compactAfter"/],
    [options('', {}), 'FST_XEMS_BAD_OPTION', /"persistence\.path"/],
    [{ persistence: 'yes' as unknown as MemoryStoreOptions['persistence'] }, 'FST_XEMS_BAD_OPTION', /"persistence"/],
    [{ bindToHost: true }, 'FST_XEMS_BAD_OPTION', /"bindToHost" only applies with option "persistence"/],
    [options(dir, { bindToHost: 'yes' as unknown as boolean }), 'FST_XEMS_BAD_OPTION', /"bindToHost"/],
    [options(dir, { hostId: '' }), 'FST_XEMS_BAD_OPTION', /"hostId"/],
    [options(dir, { onWarning: 'log' as unknown as () => void }), 'FST_XEMS_BAD_OPTION', /"onWarning"/]
  ]
  for (const [opts, code, message] of cases) {
    let error: unknown
    try {
      new MemoryStore(opts).close().catch(() => {})
    } catch (err) {
      error = err
    }
    t.match(error, { code, message }, message.source)
    t.notMatch((error as Error | undefined)?.message ?? '', bad)
  }
  t.same(await readdir(dir), [], 'nothing was created')
})

t.test('closing before the vault has loaded waits for it, then releases it', async (t) => {
  const dir = await tempDir(t)
  const store = new MemoryStore(options(dir))
  await store.close()
  await t.rejects(store.kvGet('s', 'k', Date.now()), { code: 'FST_XEMS_STORE_CLOSED' })
  const again = await MemoryStore.open(options(dir))
  await again.close()
})

/** MemoryStore on a vault whose disk fails on demand: fsync (EIO), or the snapshot's writes (ENOSPC). */
async function storeOnFailingDisk (t: Test, disk: { failFsync: boolean, failSnapshot: boolean }): Promise<typeof MemoryStore> {
  const fs = await import('node:fs/promises')
  const failing = t.createMock(fs, {
    open: async (...args: Parameters<typeof fs.open>) => {
      const handle = await fs.open(...args)
      const snapshot = String(args[0]).endsWith('xems.snapshot.tmp')
      return new Proxy(handle, {
        get (target, property) {
          if (property === 'datasync' && disk.failFsync) return async () => { throw Object.assign(new Error('i/o error'), { code: 'EIO' }) }
          if (property === 'write' && snapshot && disk.failSnapshot) return async () => { throw Object.assign(new Error('no space left on device'), { code: 'ENOSPC' }) }
          const value = Reflect.get(target, property) as unknown
          return typeof value === 'function' ? value.bind(target) : value
        }
      })
    }
  })
  const vault = await t.mockImport<typeof import('../../lib/store/vault.js')>('../../lib/store/vault.js', { 'node:fs/promises': failing })
  const mocked = await t.mockImport<typeof import('../../lib/store/memory-store.js')>('../../lib/store/memory-store.js', { '../../lib/store/vault.js': vault })
  return mocked.MemoryStore
}
