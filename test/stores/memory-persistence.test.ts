import { randomBytes } from 'node:crypto'
import { appendFile, mkdtemp, readdir, readFile, rm, stat, symlink, truncate, writeFile } from 'node:fs/promises'
import { hostname, tmpdir } from 'node:os'
import { join } from 'node:path'
import Fastify from 'fastify'
import t, { type Test } from 'tap'
import { xemsSession } from '../../index.js'
import type { SessionStore } from '../../lib/store/contract.js'
import { MemoryStore, type MemoryStoreOptions, type VaultWarning } from '../../lib/store/memory/memory-store.js'
import { scanFrames } from '../../lib/store/vault/format.js'
import { successorOf } from '../../lib/crypto/cipher.js'
import { generateLocator, recordIdOf, secretKeyOf, sessionTokenOf } from '../../lib/session/token.js'
import { generateToken } from '../../lib/crypto/random-token.js'
import { runStoreConformance } from './conformance.js'

const SECRET = randomBytes(32).toString('hex')
const NEW_SECRET = randomBytes(32).toString('base64')
const OTHER_SECRET = randomBytes(32)
const HOUR = 3_600_000
const DAY = 24 * HOUR
const newId = (): string => recordIdOf(generateLocator())
const newKey = (): string => secretKeyOf(sessionTokenOf(generateLocator(), generateToken()))
/** A grace box as the engine makes them (the store keeps it as opaque text). */
const newBox = (): string => successorOf(generateToken()).box

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

t.test('a restart keeps sessions and their rotation state: current token, seen flag, past tokens with boxes and deadlines', async (t) => {
  const dir = await tempDir(t)
  const now = Date.now()
  let store = await MemoryStore.open(options(dir))
  const restart = async (): Promise<void> => {
    await store.close()
    store = await MemoryStore.open(options(dir))
  }
  t.teardown(async () => { await store.close() })
  const resolve = async (id: string, tokenKey: string, at: number, extra: { grace?: number, sandbox?: string, revoke?: boolean } = {}) =>
    await store.resolve({
      id, tokenKey, now: at, gracePeriod: extra.grace ?? 2000, revokeOnReuse: extra.revoke ?? false, ...(extra.sandbox === undefined ? {} : { sandbox: extra.sandbox })
    })

  // s1: a → b (b presented, so a has a 5 s grace) → c (not presented yet: b has its unseen window).
  const s1 = newId()
  const [a, b, c] = [newKey(), newKey(), newKey()]
  const [ab, bc] = [newBox(), newBox()]
  await store.create({ id: s1, sandbox: 'auth-active', tokenKey: a, data: { user: '"ada"', n: '1' }, userId: 'u1', now, idleTtl: HOUR, absoluteExpiresAt: now + 5 * DAY })
  t.equal((await resolve(s1, a, now)).status, 'live')
  t.match(await store.commit({ id: s1, tokenKey: a, patch: { n: '2', cart: '["x"]' }, rotate: { newKey: b, box: ab, unseenWindow: 60_000 }, now: now + 1 }), { rotated: true })
  t.equal((await resolve(s1, b, now + 2, { grace: 5000 })).status, 'live', 'b presented: a keeps 5 s')
  t.match(await store.commit({ id: s1, tokenKey: b, patch: { user: null }, rotate: { newKey: c, box: bc, unseenWindow: 600_000 }, now: now + 3 }), { rotated: true })
  // s2: x → y with a 5 s window, y never presented.
  const s2 = newId()
  const [x, y] = [newKey(), newKey()]
  await store.create({ id: s2, sandbox: 'auth-active', tokenKey: x, data: {}, now, idleTtl: HOUR, absoluteExpiresAt: now + 5 * DAY })
  await resolve(s2, x, now)
  t.match(await store.commit({ id: s2, tokenKey: x, patch: null, rotate: { newKey: y, box: newBox(), unseenWindow: 5000 }, now }), { rotated: true })
  // s3: pending p0 → p1, then migrated to auth-active with p0 (within its window): p0 and p1 retired for 5 s.
  const s3 = newId()
  const [p0, p1, p2] = [newKey(), newKey(), newKey()]
  await store.create({ id: s3, sandbox: 'otp-pending', tokenKey: p0, data: { step: '"otp"' }, now, idleTtl: 600_000, absoluteExpiresAt: now + 5 * DAY })
  await resolve(s3, p0, now)
  await store.commit({ id: s3, tokenKey: p0, patch: null, rotate: { newKey: p1, box: newBox(), unseenWindow: 600_000 }, now })
  t.equal(
    await store.migrate({
      id: s3,
      tokenKey: p0,
      from: 'otp-pending',
      to: 'auth-active',
      newKey: p2,
      retiredUntil: now + 5000,
      data: { user: '"ada"', mfa: 'true' },
      idleTtl: HOUR,
      userId: 'u1',
      now: now + 1
    }),
    true
  )
  await store.kvSet('users-registry', 'ada', '{"name":"Ada"}', HOUR, now)
  await store.kvSet('auth-active', 'ada', '"other sandbox"', HOUR, now)
  await store.increment('mfa:u1', 60_000, now)
  await store.increment('mfa:u1', 60_000, now)
  await restart()

  t.same(store.size, { sessions: 3, values: 2, counters: 1 }, 'one record per session, whatever its tokens')
  // s1 after the restart, before c is presented.
  const grace = await resolve(s1, b, now + 100_000)
  t.equal(grace.status, 'grace', 'b still works long after its rotation: c was never presented')
  if (grace.status === 'grace') {
    t.same(grace.chain, [bc], 'with the box that leads to c')
    t.same({ ...grace.session.data }, { n: '2', cart: '["x"]' })
    t.equal(grace.session.userId, 'u1')
    t.equal(grace.session.createdAt, now)
    t.equal(grace.session.absoluteExpiresAt, now + 5 * DAY)
    t.equal(grace.session.idleTtl, HOUR)
  }
  const older = await resolve(s1, a, now + 5001)
  t.same(older.status === 'grace' ? older.chain : older, [ab, bc], 'a, within the grace b\'s presentation gave it, has the whole chain')
  t.same(await resolve(s1, a, now + 5002), { status: 'reused', id: s1, sandbox: 'auth-active', userId: 'u1', revoked: false }, 'and its deadline held across the restart')
  // s2: the unseen window given at rotation; past it, y never presented, a quiet end.
  t.equal((await resolve(s2, x, now + 4999)).status, 'grace')
  t.same(await resolve(s2, x, now + 5000, { revoke: true }), { status: 'none' }, 'past its window, y never presented: no session, no theft signal')
  t.same(await resolve(s2, y, now + 5001), { status: 'none' }, 'and the session ended quietly: y opens nothing either')
  // s3: retired tokens answer retired (no session, no theft signal) until retiredUntil, the migrated session lives, its user index is rebuilt.
  t.same(await resolve(s3, p0, now + 4999, { revoke: true }), { status: 'retired' })
  t.same(await resolve(s3, p1, now + 4999, { revoke: true }), { status: 'retired' })
  t.same(await store.commit({ id: s3, tokenKey: p1, patch: null, rotate: { newKey: newKey(), box: newBox(), unseenWindow: 600_000 }, now: now + 4999 }),
    { status: 'retired' }, 'an in-flight commit with a retired token learns no token and writes nothing')
  t.equal(await store.migrate({
    id: s3, tokenKey: p1, from: 'auth-active', to: 'auth-active', newKey: newKey(), retiredUntil: now + 9000, data: null, idleTtl: HOUR, now: now + 4999
  }), false, 'nor can it migrate the session again')
  const migrated = await resolve(s3, p2, now + 4999, { sandbox: 'auth-active' })
  t.equal(migrated.status, 'live')
  if (migrated.status === 'live') t.same({ ...migrated.session.data }, { user: '"ada"', mfa: 'true' })
  t.same(await resolve(s3, p0, now + 5000), { status: 'reused', id: s3, sandbox: 'auth-active', userId: 'u1', revoked: false }, 'after retiredUntil, the theft signal')
  t.same((await store.listUser('u1', now + 6)).map((info) => info.id).sort(), [s1, s3].sort(), 'the user index is rebuilt')
  t.equal(await store.kvGet('users-registry', 'ada', now + 7), '{"name":"Ada"}')
  t.equal(await store.kvGet('auth-active', 'ada', now + 7), '"other sandbox"', 'values of two sandboxes stay apart')
  t.same(await store.increment('mfa:u1', 60_000, now + 8), { count: 3, resetAt: now + 60_000 }, 'counters are persisted')

  // The seen flag survives a restart: c presented with a 1 s grace, then presented again with more.
  t.equal((await resolve(s1, c, now + 200_000, { grace: 1000 })).status, 'live')
  await restart()
  t.equal((await resolve(s1, c, now + 200_001, { grace: 60_000 })).status, 'live', 'a second presentation after the restart')
  t.equal((await resolve(s1, b, now + 200_999)).status, 'grace', 'b keeps the grace of the first presentation…')
  t.same(
    await resolve(s1, b, now + 201_000, { revoke: true }), { status: 'reused', id: s1, sandbox: 'auth-active', userId: 'u1', revoked: true },
    '…and no more; the theft signal revokes'
  )
  await restart()
  t.same(await resolve(s1, c, now + 201_001), { status: 'none' }, 'the revocation survived a restart')
  t.equal((await resolve(s3, p2, now + 201_001)).status, 'live', 'the other sessions did not go with it')
  t.same(store.size, { sessions: 1, values: 2, counters: 1 }, 's3 is left: s1 was revoked, s2 ended quietly')
})

t.test('a token rotated long ago is still the theft signal after restarts and compactions; the record stays the same size', async (t) => {
  const dir = await tempDir(t)
  const t0 = Date.now()
  const compacting = options(dir, {}, { compactAfter: 2000 })
  let store = await MemoryStore.open(compacting)
  const id = newId()
  const keys = [newKey()]
  await store.create({ id, sandbox: 'auth-active', tokenKey: keys[0]!, data: {}, now: t0, idleTtl: HOUR, absoluteExpiresAt: t0 + DAY })
  let now = t0
  const snapshotSizes: number[] = []
  for (let i = 0; i < 60; i++) {
    t.equal((await store.resolve({ id, tokenKey: keys.at(-1)!, now, gracePeriod: 2000, revokeOnReuse: false })).status, 'live', `token ${i} is current`)
    const next = newKey()
    const result = await store.commit({ id, tokenKey: keys.at(-1)!, patch: { [`k${i % 3}`]: String(i) }, rotate: { newKey: next, box: newBox(), unseenWindow: 600_000 }, now })
    if (result.status !== 'ok' || !result.rotated) return t.fail(`rotation ${i} did not happen: ${JSON.stringify(result)}`)
    keys.push(next)
    now += 2001
    if (i % 7 === 3) {
      await store.close()
      store = await MemoryStore.open(compacting)
      // A start folds the journal into a fresh snapshot: the whole state, now.
      snapshotSizes.push((await stat(join(dir, 'xems.snapshot'))).size)
    }
  }
  await store.close()
  store = await MemoryStore.open(options(dir))
  t.teardown(async () => { await store.close() })
  t.same(store.size, { sessions: 1, values: 0, counters: 0 })
  const spread = Math.max(...snapshotSizes) - Math.min(...snapshotSizes)
  t.ok(spread < 200, `snapshot sizes after 4 to 60 rotations stay within ${spread} bytes of each other (${snapshotSizes.join(', ')})`)
  const predecessor = await store.resolve({ id, tokenKey: keys.at(-2)!, now, gracePeriod: 2000, revokeOnReuse: false })
  t.equal(predecessor.status, 'grace', 'the last rotated token is within its unseen window (its successor was never presented)')
  if (predecessor.status === 'grace') t.same({ ...predecessor.session.data }, { k0: '57', k1: '58', k2: '59' })
  for (const i of [0, 1, 20, 58]) {
    t.same(await store.resolve({ id, tokenKey: keys[i]!, now, gracePeriod: 2000, revokeOnReuse: false }), { status: 'reused', id, sandbox: 'auth-active', revoked: false },
      `token ${i}, rotated ${60 - i} times ago, is the theft signal`)
  }
  t.same(await store.resolve({ id, tokenKey: newKey(), now, gracePeriod: 2000, revokeOnReuse: false }), { status: 'reused', id, sandbox: 'auth-active', revoked: false },
    'as is a key the session never had: only a holder of one of its tokens knows the record')

  const active = newKey()
  t.equal(
    await store.migrate({
      id, tokenKey: keys.at(-1)!, from: 'auth-active', to: 'auth-active', newKey: active, retiredUntil: now + 10_000, data: { fresh: 'true' }, idleTtl: HOUR, userId: 'u9', now
    }),
    true
  )
  await store.close()
  store = await MemoryStore.open(options(dir))
  t.same(
    await store.resolve({ id, tokenKey: keys.at(-1)!, now: now + 1, gracePeriod: 2000, revokeOnReuse: true }), { status: 'retired' }, 'the token the migration replaced is retired'
  )
  t.same(await store.resolve({ id, tokenKey: keys.at(-2)!, now: now + 1, gracePeriod: 2000, revokeOnReuse: true }), { status: 'retired' }, 'and so is the one within its window')
  t.same(await store.resolve({
    id, tokenKey: keys[10]!, now: now + 1, gracePeriod: 2000, revokeOnReuse: false
  }), { status: 'reused', id, sandbox: 'auth-active', userId: 'u9', revoked: false }, 'an old one stays the theft signal')
  const live = await store.resolve({ id, tokenKey: active, now: now + 2, gracePeriod: 2000, revokeOnReuse: false })
  if (live.status !== 'live') return t.fail('expected live')
  t.same({ ...live.session.data }, { fresh: 'true' })
  t.equal(live.session.userId, 'u9')
  t.same((await store.listUser('u9', now)).map((info) => info.id), [id])
  t.same(await store.resolve({
    id, tokenKey: keys.at(-1)!, now: now + 10_000, gracePeriod: 2000, revokeOnReuse: true
  }), { status: 'reused', id, sandbox: 'auth-active', userId: 'u9', revoked: true }, 'after retiredUntil the replaced token is the theft signal too, and revokes')
  await store.close()
  store = await MemoryStore.open(options(dir))
  t.same(await store.resolve({ id, tokenKey: active, now: now + 10_001, gracePeriod: 2000, revokeOnReuse: false }), { status: 'none' }, 'the revocation survived the restart')
  t.same(store.size, { sessions: 0, values: 0, counters: 0 })
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

t.test('a wrong secret stops start-up with FST_XEMS_WRONG_SECRET and leaves the files untouched', async (t) => {
  const dir = await tempDir(t)
  await threeRecords(dir)
  const before = await contents(dir)
  const store = new MemoryStore(options(dir, {}, { secret: OTHER_SECRET }))
  const early = store.kvGet('s', 'a', Date.now())
  await t.rejects(store.ready(), { code: 'FST_XEMS_WRONG_SECRET', message: /persistence\.secret/ })
  await t.rejects(early, { code: 'FST_XEMS_WRONG_SECRET' }, 'an operation that waited for the start fails with its error')
  await t.rejects(store.kvSet('s', 'x', '1', HOUR, Date.now()), { code: 'FST_XEMS_WRONG_SECRET' }, 'and so does every later one')
  await store.close()
  await t.rejects(MemoryStore.open(options(dir, {}, { secret: [OTHER_SECRET] })), { code: 'FST_XEMS_WRONG_SECRET' })
  t.same(await contents(dir), before, 'not a byte changed, no file added or removed')
  const good = await MemoryStore.open(options(dir))
  t.same(await values(good, ['a', 'b', 'c']), ['1', '2', '3'], 'the right secret still opens everything')
  await good.close()
})

t.test('secret rotation: [new, old] opens the old vault and rewrites it with the new secret', async (t) => {
  const dir = await tempDir(t)
  await threeRecords(dir)
  const warnings: VaultWarning[] = []
  const onWarning = (w: VaultWarning): void => { warnings.push(w) }
  let store = await MemoryStore.open(options(dir, { onWarning }, { secret: [NEW_SECRET, SECRET] }))
  t.same(await values(store, ['a', 'b', 'c']), ['1', '2', '3'], 'nobody is logged out')
  await store.kvSet('s', 'd', '4', HOUR, Date.now())
  await store.close()
  store = await MemoryStore.open(options(dir, { onWarning }, { secret: NEW_SECRET }))
  t.same(await values(store, ['a', 'b', 'c', 'd']), ['1', '2', '3', '4'], 'after one start, the new secret alone opens everything')
  await store.close()
  await t.rejects(MemoryStore.open(options(dir, { onWarning }, { secret: SECRET })), { code: 'FST_XEMS_WRONG_SECRET' }, 'the old secret no longer does')
  // The close marker of a run is sealed with that run's secret: the next run, with a new secret first,
  // still reads it (it used to report every rotation as an unclean close).
  t.same(warnings, [], 'no warning: each run closed cleanly')
})

t.test('host binding: another host id does not open, the same one does', async (t) => {
  const dir = await tempDir(t)
  const warnings: VaultWarning[] = []
  const onWarning = (w: VaultWarning): void => { warnings.push(w) }
  let store = await MemoryStore.open(options(dir, { onWarning, bindToHost: true, hostId: 'host-a' }))
  await store.kvSet('s', 'k', 'v', HOUR, Date.now())
  await store.close()
  const before = await contents(dir)
  await t.rejects(MemoryStore.open(options(dir, { onWarning, bindToHost: true, hostId: 'host-b' })), { code: 'FST_XEMS_VAULT_OTHER_HOST', message: /another host/ })
  await t.rejects(MemoryStore.open(options(dir, { onWarning, hostId: 'host-b' })), { code: 'FST_XEMS_VAULT_OTHER_HOST' }, 'turning bindToHost off does not open it elsewhere')
  t.same(await contents(dir), before, 'files untouched')
  store = await MemoryStore.open(options(dir, { onWarning, bindToHost: true, hostId: 'host-a' }))
  t.equal(await store.kvGet('s', 'k', Date.now()), 'v')
  await store.close()
  for (const name of await readdir(dir)) {
    const file = await readFile(join(dir, name))
    t.notOk(file.includes(Buffer.from('host-a')), `${name} does not show the host id`)
  }

  // On its own host a vault can be unbound, and bound again (here to the real machine id).
  store = await MemoryStore.open(options(dir, { onWarning, bindToHost: false, hostId: 'host-a' }))
  await store.close()
  store = await MemoryStore.open(options(dir, { onWarning }))
  t.equal(await store.kvGet('s', 'k', Date.now()), 'v', 'unbound now: opens without a host id')
  await store.close()
  store = await MemoryStore.open(options(dir, { onWarning, bindToHost: true }))
  await store.close()
  await t.rejects(MemoryStore.open(options(dir, { onWarning, bindToHost: true, hostId: 'not-this-machine' })), { code: 'FST_XEMS_VAULT_OTHER_HOST' },
    'bound to /etc/machine-id, it does not open with another host id')
  store = await MemoryStore.open(options(dir, { onWarning, bindToHost: true }))
  t.equal(await store.kvGet('s', 'k', Date.now()), 'v', 'and opens with the machine id')
  await store.close()
  t.same(warnings, [], 'no warning: binding or unbinding a vault is not an unclean close')
})

t.test('a vault of another format version is refused at start-up, naming the version, and left untouched', async (t) => {
  const dir = await tempDir(t)
  const now = Date.now()
  {
    const store = await MemoryStore.open(options(dir))
    await store.create({ id: newId(), sandbox: 'auth-active', tokenKey: newKey(), data: { user: '"ada"' }, now, idleTtl: HOUR, absoluteExpiresAt: now + DAY })
    await store.kvSet('s', 'a', '1', HOUR, now)
    await store.close()
  }
  const snapshot = join(dir, 'xems.snapshot')
  const journal = join(dir, await journalName(dir))
  const original = await contents(dir)
  t.equal((await readFile(snapshot)).readUInt16BE(8), 2, 'this version writes format 2')
  const setVersion = async (file: string, version: number): Promise<void> => {
    const bytes = await readFile(file)
    bytes.writeUInt16BE(version, 8)
    await writeFile(file, bytes)
  }
  const restore = async (): Promise<void> => {
    for (const [name, hex] of Object.entries(original)) await writeFile(join(dir, name), Buffer.from(hex, 'hex'))
  }

  // Format 1 (a token entry per token, rotation state outside the session core), in every file.
  await setVersion(snapshot, 1)
  await setVersion(journal, 1)
  const before = await contents(dir)
  const store = new MemoryStore(options(dir))
  const early = store.kvGet('s', 'a', now)
  const refused = /format version 1; this version of fastify-xems reads format 2\. Sessions cannot be carried over from another format.*move the vault directory away/
  await t.rejects(store.ready(), { code: 'FST_XEMS_VAULT_FORMAT', message: refused })
  await t.rejects(early, { code: 'FST_XEMS_VAULT_FORMAT', message: refused }, 'an operation that waited for the start fails with the same error')
  await store.close()
  await t.rejects(MemoryStore.open(options(dir)), { message: /xems\.snapshot/ }, 'it names the file')
  t.same(await contents(dir), before, 'not a byte changed, no file added or removed')

  // What an application sees: the plugin's register fails with that message.
  const app = Fastify()
  const plugged = new MemoryStore(options(dir))
  await t.rejects(async () => {
    await app.register(xemsSession, { store: plugged, cookie: { secure: false } })
    await app.ready()
  }, { code: 'FST_XEMS_VAULT_FORMAT', message: refused }, 'register fails: the server does not start')
  await app.close().catch(() => {})
  await plugged.close()

  // One file of another version is enough; a newer version is named as well.
  await restore()
  await setVersion(journal, 1)
  await t.rejects(
    MemoryStore.open(options(dir)), { code: 'FST_XEMS_VAULT_FORMAT', message: /xems\.journal\.\d+\b.*format version 1;/ }, 'a journal of format 1 beside a snapshot of format 2'
  )
  await restore()
  await setVersion(snapshot, 3)
  await t.rejects(MemoryStore.open(options(dir)), { code: 'FST_XEMS_VAULT_FORMAT', message: /format version 3; this version of fastify-xems reads format 2/ })

  // The version alone made the difference: restored, the same files open with everything in them.
  await restore()
  const good = await MemoryStore.open(options(dir))
  t.equal(await good.kvGet('s', 'a', now), '1')
  t.same(good.size, { sessions: 1, values: 1, counters: 0 })
  await good.close()
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
  await t.rejects(MemoryStore.open(options(dir)), { code: 'FST_XEMS_VAULT_CORRUPT', message: /xems\.snapshot cannot be read: record 1 .* does not authenticate/ })
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
  await store.create({ id: newId(), sandbox: 's', tokenKey: newKey(), data: {}, now: t0, idleTtl: 1000, absoluteExpiresAt: t0 + 5 * DAY })
  const cappedId = newId()
  const capped = newKey()
  await store.create({ id: cappedId, sandbox: 's', tokenKey: capped, data: {}, now: t0, idleTtl: 10 * DAY, absoluteExpiresAt: t0 + 5 * DAY })
  await store.kvSet('s', 'brief', '1', 1000, t0)
  await store.kvSet('s', 'lasting', '2', DAY, t0)
  await store.increment('c', 1000, t0)
  await store.close()

  clock = t0 + 5000
  store = await open()
  t.same(store.size, { sessions: 1, values: 1, counters: 0 }, 'what expired is not loaded')
  await store.close()
  clock = t0
  store = await open()
  t.same(store.size, { sessions: 1, values: 1, counters: 0 }, 'nor written back: back in time, it is still gone')
  t.equal(await store.kvGet('s', 'brief', t0 + 1), null)
  await store.close()

  clock = t0 + 5 * DAY - 1000
  store = await open()
  t.equal((await store.resolve({ id: cappedId, tokenKey: capped, now: t0 + 5 * DAY - 500, gracePeriod: 2000, revokeOnReuse: true })).status, 'live', 'used just before its cap')
  await store.close()
  clock = t0 + 5 * DAY + 1
  store = await open()
  t.same(store.size.sessions, 0, 'the 5-day cap ends it although it was used and its idle ttl is 10 days')
  t.same(await store.resolve({ id: cappedId, tokenKey: capped, now: t0 + 5 * DAY + 2, gracePeriod: 2000, revokeOnReuse: true }), { status: 'none' })
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
  const reopened: VaultWarning[] = []
  const again = await MemoryStore.open(options(dir, { onWarning: (w) => reopened.push(w) }))
  t.equal(await again.kvGet('s', 'a', Date.now()), '1', 'a restart recovers what was written')
  t.match(reopened, [{ code: 'FST_XEMS_VAULT_UNCLEAN' }], 'and says the last run did not close cleanly (it stopped writing at the failure)')
  t.equal(reopened.length, 1)
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
    [options(dir, {}, { secret: bad }), 'FST_XEMS_BAD_SECRET', /"persistence\.secret" is not a usable secret: it must be exactly 32 bytes/],
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
  // A mock reaches only the module that imports it by name (a `.js` name of a `.ts` file is not followed
  // further down), so each module from the one that opens the files up to the store is mocked with the one below.
  let mocks: Record<string, unknown> = { 'node:fs/promises': failing }
  for (const path of ['vault/generation.js', 'vault/write.js', 'vault/vault.js', 'memory/persistence.js']) {
    const specifier = `../../lib/store/${path}`
    mocks = { [specifier]: await t.mockImport(specifier, mocks) }
  }
  const mocked = await t.mockImport<typeof import('../../lib/store/memory/memory-store.js')>('../../lib/store/memory/memory-store.js', mocks)
  return mocked.MemoryStore
}
