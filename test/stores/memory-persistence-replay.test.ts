/**
 * Replay is exact: a persistent store that is restarted again and again, and compacted every few
 * kilobytes while operations run in parallel, answers every operation exactly as a store that never
 * left memory. A restart drops what has expired, as a full sweep does, so the reference is swept at
 * each restart and neither store sweeps on its own (a sweep's timing is visible: kvDel and destroy
 * answer true for an expired entry not yet swept). listUser answers in no promised order.
 */
import { randomBytes } from 'node:crypto'
import { mkdtemp, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { generateLocator, recordIdOf, secretKeyOf, sessionTokenOf } from '../../lib/session/token.js'
import { MAX_PAST_TOKENS, type SessionInfo, type SessionStore } from '../../lib/store/contract.js'
import { MemoryStore, type FsyncPolicy, type VaultWarning } from '../../lib/store/memory/memory-store.js'
import { generateToken } from '../../lib/crypto/random-token.js'

type Op = (store: SessionStore) => Promise<unknown>

const newKey = (): string => secretKeyOf(sessionTokenOf(generateLocator(), generateToken()))

function prng (seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0
    let x = Math.imul(seed ^ (seed >>> 15), 1 | seed)
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296
  }
}

const SANDBOXES = ['auth-active', 'otp-pending']
const USERS = ['u0', 'u1', 'u2', 'u3']

for (const [seed, fsync] of [[1, 'always'], [2, 'everysec'], [7, 'always']] as Array<[number, FsyncPolicy]>) {
  t.test(`seed ${seed}, fsync ${fsync}: restarts and compactions change no answer`, async (t) => {
    const random = prng(seed)
    const pick = <T>(items: T[]): T => items[Math.floor(random() * items.length)]!
    const chance = (p: number): boolean => random() < p
    let now = Date.now()
    const clock = (): number => now
    const dir = await mkdtemp(join(tmpdir(), 'xems-replay-'))
    t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
    const warnings: VaultWarning[] = []
    const key = randomBytes(32)
    const open = async (): Promise<MemoryStore> => await MemoryStore.open({
      clock,
      sweepInterval: '20d',
      onWarning: (w) => warnings.push(w),
      persistence: { path: dir, secret: key, fsync, compactAfter: 2048 }
    })
    const reference = new MemoryStore({ clock, sweepInterval: '20d' })
    let persistent = await open()
    const sessions: Array<{ id: string, keys: string[] }> = []
    /** Sessions only heavyOps uses (random operations on them would leave its idea of the current token behind). */
    const heavySessions: Array<{ id: string, keys: string[] }> = []
    const statuses = new Map<string, number>()
    /** Rotations that happened, per session (on the reference). */
    const rotations = new Map<string, number>()
    const allKeys = (): Array<[string, string]> => [...sessions, ...heavySessions].flatMap((s) => s.keys.map((key): [string, string] => [s.id, key]))

    function nextOp (): Op {
      const roll = random()
      if (roll < 0.06 || sessions.length === 0) {
        const id = recordIdOf(generateLocator())
        const key = newKey()
        sessions.push({ id, keys: [key] })
        const userId = chance(0.7) ? pick(USERS) : undefined
        const sandbox = pick(SANDBOXES)
        const idleTtl = 2000 + Math.floor(random() * 30_000)
        const absolute = now + 1000 + Math.floor(random() * 60_000)
        const at = now
        return async (s) => {
          await s.create({
            id, sandbox, tokenKey: key, data: { a: `"${id.slice(0, 8)}"` }, now: at, idleTtl, absoluteExpiresAt: absolute, ...(userId === undefined ? {} : { userId })
          })
        }
      }
      // Favour recent sessions and their current token, so that some rotate many times (and some
      // rotations are refused while the record is full).
      const session = chance(0.5) ? sessions.at(-1)! : chance(0.7) ? pick(sessions.slice(-5)) : pick(sessions)
      const which = random()
      const key = which < 0.7
        ? session.keys.at(-1)!
        : which < 0.9 ? session.keys.at(-2 - Math.floor(random() * 2)) ?? session.keys[0]! : which < 0.95 ? newKey() : pick(session.keys)
      const at = now
      if (roll < 0.35) {
        const revokeOnReuse = chance(0.3)
        const sandbox = chance(0.5) ? pick(SANDBOXES) : undefined
        const gracePeriod = Math.floor(random() * 3000)
        return async (s) => {
          const result = await s.resolve({ id: session.id, tokenKey: key, now: at, gracePeriod, revokeOnReuse, ...(sandbox === undefined ? {} : { sandbox }) })
          if (s === reference) statuses.set(result.status, (statuses.get(result.status) ?? 0) + 1)
          return result
        }
      }
      if (roll < 0.55) {
        const patch = chance(0.6) ? { [`k${Math.floor(random() * 5)}`]: chance(0.2) ? null : String(random()) } : null
        let rotate = null
        if (chance(0.7)) {
          const newKey_ = newKey()
          session.keys.push(newKey_)
          rotate = { newKey: newKey_, box: `box-${newKey_.slice(0, 6)}`, unseenWindow: 1 + Math.floor(random() * 6000) }
        }
        return async (s) => {
          const result = await s.commit({ id: session.id, tokenKey: key, patch, rotate, now: at })
          if (s === reference && result.status === 'ok' && result.rotated) rotations.set(session.id, (rotations.get(session.id) ?? 0) + 1)
          return result
        }
      }
      if (roll < 0.6) {
        const newKey_ = newKey()
        session.keys.push(newKey_)
        const from = pick(SANDBOXES)
        const to = pick(SANDBOXES)
        const data = chance(0.5) ? { m: '"migrated"' } : null
        const userId = chance(0.5) ? pick(USERS) : undefined
        const retiredUntil = at + Math.floor(random() * 6000)
        return async (s) => await s.migrate({
          id: session.id, tokenKey: key, from, to, newKey: newKey_, retiredUntil, data, idleTtl: 10_000, now: at, ...(userId === undefined ? {} : { userId })
        })
      }
      if (roll < 0.63) return async (s) => await s.destroy(session.id)
      if (roll < 0.65) {
        const user = pick(USERS)
        const except = chance(0.5) ? session.id : undefined
        return async (s) => await s.revokeUser(user, at, except)
      }
      if (roll < 0.66) {
        const user = pick(USERS)
        return async (s) => await s.revokeUserSession(user, session.id, at)
      }
      if (roll < 0.68) {
        const user = pick(USERS)
        return async (s) => sortedInfos(await s.listUser(user, at))
      }
      const sandbox = pick(['s1', 's2'])
      const name = `v${Math.floor(random() * 20)}`
      const value = String(random())
      const ttl = 200 + Math.floor(random() * 10_000)
      const counter = `c${Math.floor(random() * 5)}`
      const kv: Op[] = [
        async (s) => { await s.kvSet(sandbox, name, value, ttl, at) },
        async (s) => await s.kvGet(sandbox, name, at),
        async (s) => await s.kvDel(sandbox, name),
        async (s) => await s.kvAdd(sandbox, name, value, ttl, at),
        async (s) => await s.kvTake(sandbox, name, at),
        async (s) => await s.increment(counter, ttl, at),
        async (s) => await s.increment(counter, ttl, at),
        async (s) => { await s.resetCounter(counter) }
      ]
      return pick(kv)
    }

    /**
     * One session used as a client that follows rotation would: most groups present its current token
     * (as the reference answered it) and commit a rotation, so it rotates hundreds of times, fills its
     * record at times (a refused rotation), and has its old tokens replayed.
     */
    let heavy = { id: '', keys: [] as string[], current: '' }
    function heavyOps (): Op[] {
      if (heavy.id === '' || chance(0.01)) {
        heavy = { id: recordIdOf(generateLocator()), keys: [newKey()], current: '' }
        heavy.current = heavy.keys[0]!
        heavySessions.push(heavy)
        const { id, current } = heavy
        const at = now
        return [async (s) => { await s.create({ id, sandbox: 'auth-active', tokenKey: current, data: {}, now: at, idleTtl: 600_000, absoluteExpiresAt: at + 86_400_000 }) }]
      }
      const { id, current } = heavy
      const next = newKey()
      heavy.keys.push(next)
      const at = now
      const session = heavy
      const ops: Op[] = [
        async (s) => await s.resolve({ id, tokenKey: current, now: at, gracePeriod: 2000, revokeOnReuse: false }),
        async (s) => {
          const result = await s.commit({ id, tokenKey: current, patch: { h: String(at) }, rotate: { newKey: next, box: `box-${next.slice(0, 6)}`, unseenWindow: 3000 }, now: at })
          if (s === reference && result.status === 'ok' && result.rotated) {
            session.current = next
            rotations.set(id, (rotations.get(id) ?? 0) + 1)
          }
          return result
        }
      ]
      if (chance(0.15)) {
        const old = pick(heavy.keys)
        ops.push(async (s) => await s.resolve({ id, tokenKey: old, now: at, gracePeriod: 2000, revokeOnReuse: false }))
      }
      return ops
    }

    let mismatches = 0
    let restarts = 0
    for (let group = 0; group < 800; group++) {
      const ops = [...(chance(0.7) ? heavyOps() : []), ...Array.from({ length: 1 + Math.floor(random() * 8) }, nextOp)]
      const expected = JSON.stringify(await Promise.all(ops.map(async (op) => await op(reference))))
      const actual = JSON.stringify(await Promise.all(ops.map(async (op) => await op(persistent))))
      if (expected !== actual && mismatches++ < 3) t.equal(actual, expected, `group ${group}`)
      now += Math.floor(random() * 400)
      if (chance(0.05)) {
        await persistent.close()
        persistent = await open()
        reference.sweep(now)
        restarts++
      }
    }
    t.equal(mismatches, 0, `every answer identical across ${restarts} restarts`)
    const most = Math.max(...rotations.values())
    t.ok(most > 2 * MAX_PAST_TOKENS, `a session rotated ${most} times`)
    t.comment(`resolve answers: ${JSON.stringify(Object.fromEntries(statuses))}`)
    for (const status of ['none', 'live', 'grace', 'reused']) t.ok((statuses.get(status) ?? 0) > 10, `the run had '${status}' answers`)
    const journal = (await readdir(dir)).find((name) => name.startsWith('xems.journal.'))!
    const generations = Number(journal.split('.').at(-1))
    t.ok(generations - restarts - 1 >= 5, `and ${generations - restarts - 1} compactions while running`)

    // Probe the final state with both, after one more restart.
    await persistent.close()
    persistent = await open()
    reference.sweep(now)
    const probe = async (s: SessionStore): Promise<string> => JSON.stringify([
      await Promise.all(allKeys().map(async ([id, key]) => await s.resolve({ id, tokenKey: key, now, gracePeriod: 2000, revokeOnReuse: false }))),
      await Promise.all(['s1', 's2'].flatMap((sb) => Array.from({ length: 20 }, async (_, i) => await s.kvGet(sb, `v${i}`, now)))),
      await Promise.all(USERS.map(async (user) => sortedInfos(await s.listUser(user, now)))),
      await Promise.all(Array.from({ length: 5 }, async (_, i) => await s.increment(`c${i}`, 1000, now)))
    ])
    t.equal(await probe(persistent), await probe(reference), 'the final states agree')
    t.same(persistent.size, reference.size, 'and hold the same number of live entries')
    t.same(warnings, [], 'no warning')
    await persistent.close()
    await reference.close()
  })
}

function sortedInfos (infos: SessionInfo[]): SessionInfo[] {
  return infos.sort((a, b) => a.id < b.id ? -1 : 1)
}
