import type { Cluster, Redis } from 'ioredis'
import { Keyring } from '../../crypto/cipher.js'
import { isXemsError, xemsError } from '../../errors.js'
import type {
  CommitInput, CommitResult, CounterResult, CreateInput, LimitResult, MigrateInput, PresentedCheck, ResolveInput,
  ResolveResult, SessionInfo, SessionStore
} from '../contract.js'
import { admit, type Admission, endAdmitted, undoAdmitted } from './admission.js'
import { type CanaryRings, checkCanary } from './canary-check.js'
import { boxArg, buffer, DEVICE_FIELD, digest, keyArg, list, num, text } from './codec.js'
import { type RedisParts, ScriptRunner } from './commands.js'
import { REDIS_FORMAT_VERSION, REDIS_SEAL_PURPOSE, RedisKeys, SESSION_LIFETIME_BOUND_MS } from './layout.js'
import { parseOptions, type RedisStoreOptions } from './options.js'
import { type Reseal, RedisSealer } from './sealing.js'
import { type Arg, SCRIPT } from './scripts/index.js'
import { listSessions } from './session-list.js'
import { indexAdd, indexRead, unindex } from './user-index.js'

export { ADMISSION_FENCE_MS, REDIS_FORMAT_VERSION, REDIS_SEAL_PURPOSE, SESSION_LIFETIME_BOUND_MS } from './layout.js'
export type { RedisStoreOptions, RedisStoreSecret } from './options.js'

const COMMAND_PREFIX = `xemsRedisF${REDIS_FORMAT_VERSION}`

const NONE: ResolveResult = Object.freeze({ status: 'none' })
const RETIRED_TOKEN: ResolveResult = Object.freeze({ status: 'retired' })

/**
 * Sessions, values and counters in Redis (standalone, Sentinel or Cluster) through a client you supply.
 *
 * Each session is one hash under a hash tag of its own, so sessions spread over every master of a
 * cluster; resolve and commit are one Lua script each on that hash (one atomic step, one round trip).
 * A user's sessions are indexed in a sorted set in another slot, written before the session so that
 * revokeUser never misses one (see indexAdd in user-index.ts). Every payload is sealed with AES-256-GCM before it
 * leaves the process, bound to its place by the associated data. The layout and what a Redis operator
 * can see are documented in docs/stores.md.
 */
export class RedisStore implements SessionStore {
  /** The key prefix. */
  readonly prefix: string
  readonly #client: Redis | Cluster
  readonly #keys: RedisKeys
  readonly #sealer: RedisSealer
  /** One keyring per secret, newest first, with its key id (hex): for the canary. */
  readonly #rings: CanaryRings
  readonly #scripts: ScriptRunner
  readonly #parts: RedisParts
  #verified: Promise<void> | null = null
  #closed = false

  constructor (options: RedisStoreOptions) {
    const { prefix, secrets } = parseOptions(options)
    this.prefix = prefix
    this.#client = options.client
    this.#keys = new RedisKeys(prefix)
    this.#sealer = new RedisSealer(prefix, new Keyring(secrets, REDIS_SEAL_PURPOSE))
    this.#rings = secrets.map((secret) => {
      const ring = new Keyring([secret], REDIS_SEAL_PURPOSE)
      return { id: ring.seal('', 'key-id').subarray(1, 5).toString('hex'), ring }
    })
    this.#scripts = new ScriptRunner(options.client, COMMAND_PREFIX)
    this.#parts = { client: this.#client, scripts: this.#scripts, keys: this.#keys }
  }

  /**
   * Checks the canary the store keeps under `<prefix>canary`: fails with FST_XEMS_STORE_FORMAT when the
   * prefix holds another layout format, FST_XEMS_BAD_SECRET when its data was written with another
   * secret. The first operation runs it anyway; call it at start-up to fail before serving.
   */
  async ready (): Promise<void> {
    this.#assertOpen()
    this.#verified ??= checkCanary({ ...this.#parts, sealer: this.#sealer, rings: this.#rings }).catch((err: unknown) => {
      if (!isXemsError(err)) this.#verified = null
      throw err
    })
    await this.#verified
  }

  async create (input: CreateInput): Promise<LimitResult | void> {
    await this.ready()
    const { id } = input
    let uk = ''
    let sealedUser: Arg = ''
    let admitted: Admission | undefined
    if (input.userId !== undefined) {
      uk = digest('user', input.userId)
      if (input.userLimit === undefined) await indexAdd(this.#parts, uk, id, input.absoluteExpiresAt, input.now)
      else {
        admitted = await admit(this.#parts, uk, id, input.absoluteExpiresAt, input.now, input.userLimit)
        if (admitted.result.status === 'refused') return admitted.result
      }
      sealedUser = this.#sealer.seal(input.userId, 'session', id, 'user')
    }
    const ending = admitted === undefined ? null : endAdmitted(this.#parts, uk, admitted.toEnd, input.now)
    const created = this.#scripts.run(SCRIPT.create, {
      key: this.#keys.session(id),
      sandbox: input.sandbox,
      tokenKey: keyArg(input.tokenKey),
      now: input.now,
      idleTtl: input.idleTtl,
      absoluteExpiresAt: input.absoluteExpiresAt,
      userKey: uk,
      sealedUser,
      sandboxSeal: this.#sealer.sandboxSeal(id, input.sandbox, input.idleTtl),
      timesSeal: this.#sealer.seal('', 'session', id, 'times', input.now, input.absoluteExpiresAt),
      data: this.#sealer.dataPairs(id, input.data)
    })
    if (ending === null) {
      await created
      return
    }
    const [ended] = await Promise.all([ending, created])
    return { status: 'admitted', ended }
  }

  async resolve (input: ResolveInput): Promise<ResolveResult> {
    await this.ready()
    const { id } = input
    const reply = list(await this.#scripts.run(SCRIPT.resolve, {
      key: this.#keys.session(id),
      tokenKey: keyArg(input.tokenKey),
      now: input.now,
      sandbox: input.sandbox ?? '',
      revokeOnReuse: input.revokeOnReuse,
      gracePeriod: input.gracePeriod,
      deviceField: DEVICE_FIELD
    }))
    const status = num(reply[0])
    if (status === 3) {
      const revoked = num(reply[3]) === 1
      const reused: ResolveResult = { status: 'reused', id, sandbox: text(reply[1]), revoked }
      const sealedUser = buffer(reply[2])
      const userId = sealedUser === null ? null : this.#sealer.open(sealedUser, 'session', id, 'user')
      if (userId !== null) reused.userId = userId.toString('utf8')
      const device = this.#sealer.openDataField(id, DEVICE_FIELD.slice(2), buffer(reply[5]))
      if (device !== null) reused.device = device[1]
      const uk = buffer(reply[4])
      if (revoked) this.#sealer.forget(id)
      if (revoked && uk !== null) await unindex(this.#parts, uk.toString('latin1'), id)
      return reused
    }
    if (status === 4) {
      this.#sealer.forget(id)
      const uk = buffer(reply[1])
      if (uk !== null) await unindex(this.#parts, uk.toString('latin1'), id)
      return NONE
    }
    if (status === 5) return RETIRED_TOKEN
    if (status !== 1 && status !== 2) return NONE
    const opened = this.#sealer.openSession(id, list(reply[1]), input.now)
    if (opened === null) return NONE
    if (opened.reseal.length > 0) await this.#reseal(this.#keys.session(id), opened.reseal)
    if (status === 1) return { status: 'live', session: opened.session }
    return { status: 'grace', session: opened.session, chain: list(reply[2]).map(text) }
  }

  async commit (input: CommitInput): Promise<CommitResult> {
    await this.ready()
    const { id } = input
    const deleted: string[] = []
    const written: Arg[] = []
    if (input.patch !== null) {
      for (const [key, value] of Object.entries(input.patch)) {
        if (value === null) deleted.push(`d:${digest('data', key)}`)
        else written.push(...this.#sealer.dataPair(id, key, value))
      }
    }
    const rotate = input.rotate
    const reply = list(await this.#scripts.run(SCRIPT.commit, {
      key: this.#keys.session(id),
      tokenKey: keyArg(input.tokenKey),
      now: input.now,
      rotate: rotate !== null,
      newKey: rotate === null ? '' : keyArg(rotate.newKey),
      box: rotate === null ? '' : boxArg(rotate.box),
      unseenWindow: rotate === null ? 0 : rotate.unseenWindow,
      migrations: Number.isSafeInteger(input.migrations) ? input.migrations! : -1,
      deleted,
      written
    }))
    const status = num(reply[0])
    if (status === 0) return { status: 'gone' }
    if (status === 3) return { status: 'retired' }
    const expiresAt = num(reply[1])
    if (status === 1) return { status: 'ok', rotated: true, expiresAt }
    const chain = reply[2] === null || reply[2] === undefined ? null : list(reply[2]).map(text)
    return { status: 'ok', rotated: false, chain, expiresAt }
  }

  async migrate (input: MigrateInput): Promise<boolean | LimitResult> {
    await this.ready()
    const { id } = input
    let uk = ''
    let sealedUser: Arg = ''
    let admitted: Admission | undefined
    if (input.userId !== undefined) {
      uk = digest('user', input.userId)
      // The absolute deadline is not part of a migration; no session outlives now + the engine's cap.
      if (input.userLimit === undefined) await indexAdd(this.#parts, uk, id, input.now + SESSION_LIFETIME_BOUND_MS, input.now)
      else {
        const fresh = await this.#client.hget(this.#keys.session(id), 'uk') !== uk
        admitted = await admit(this.#parts, uk, id, input.now + SESSION_LIFETIME_BOUND_MS, input.now, input.userLimit, fresh)
        if (admitted.result.status === 'refused') return admitted.result
      }
      sealedUser = this.#sealer.seal(input.userId, 'session', id, 'user')
    }
    const moved = await this.#scripts.run(SCRIPT.migrate, {
      key: this.#keys.session(id),
      tokenKey: keyArg(input.tokenKey),
      from: input.from,
      to: input.to,
      newKey: keyArg(input.newKey),
      retiredUntil: input.retiredUntil,
      idleTtl: input.idleTtl,
      now: input.now,
      sandboxSeal: this.#sealer.sandboxSeal(id, input.to, input.idleTtl),
      replaceData: input.data !== null,
      userKey: uk,
      sealedUser,
      data: input.data === null ? [] : this.#sealer.dataPairs(id, input.data)
    })
    // A user the session no longer names keeps a dangling index entry: harmless (revokeUser and
    // listUser check the record), gone with its score. Removing it here could race a later migration
    // back to that user, whose index entry is written before its record; so does a migration that did
    // not happen, whose admission is undone (none ended). Under maxSessionsPerUser see docs/stores.md.
    if (num(moved) !== 1) {
      if (admitted !== undefined) await undoAdmitted(this.#parts, uk, id, admitted, input.now)
      return false
    }
    if (admitted === undefined) return true
    return { status: 'admitted', ended: await endAdmitted(this.#parts, uk, admitted.toEnd, input.now) }
  }

  async destroy (id: string, presented?: PresentedCheck): Promise<boolean | 'retired'> {
    await this.ready()
    const reply = list(await this.#scripts.run(SCRIPT.destroy, {
      key: this.#keys.session(id),
      checked: presented !== undefined,
      tokenKey: presented === undefined ? '' : keyArg(presented.tokenKey),
      migrations: presented !== undefined && Number.isSafeInteger(presented.migrations) ? presented.migrations! : -1,
      now: presented !== undefined && Number.isSafeInteger(presented.now) ? presented.now! : -1
    }))
    const status = num(reply[0])
    if (status === 2) return 'retired'
    this.#sealer.forget(id)
    if (status !== 1) return false
    const uk = buffer(reply[1])
    if (uk !== null) await unindex(this.#parts, uk.toString('latin1'), id)
    return true
  }

  /**
   * Reads the user's index (one round trip), ends each of its sessions with one script on that
   * session's own key (sent together: one round trip on a standalone Redis, one per master on a
   * cluster), then drops the index entries of the records it ended or fenced.
   */
  async revokeUser (userId: string, now: number, exceptId?: string): Promise<number> {
    await this.ready()
    const uk = digest('user', userId)
    const entries = (await indexRead(this.#parts, uk, now)).filter((entry) => entry.id !== exceptId)
    const outcomes = await Promise.all(entries.map(async (entry) =>
      num(await this.#scripts.run(SCRIPT.revokeOne, { key: this.#keys.session(entry.id), userKey: uk, now, score: entry.score }))))
    const gone = entries.filter((_, i) => outcomes[i] !== 0).map((entry) => entry.id)
    for (const id of gone) this.#sealer.forget(id)
    if (gone.length > 0) await this.#client.zrem(this.#keys.user(uk), ...gone)
    return outcomes.filter((outcome) => outcome === 2).length
  }

  /** One script on the session's key: ends it only if it is a live session of the user; then drops its index entry. */
  async revokeUserSession (userId: string, id: string, now: number): Promise<boolean> {
    await this.ready()
    const uk = digest('user', userId)
    // Score `now`: a record that is not there gets no tombstone (nothing of this user is on its way there).
    const outcome = num(await this.#scripts.run(SCRIPT.revokeOne, { key: this.#keys.session(id), userKey: uk, now, score: now }))
    if (outcome === 2) this.#sealer.forget(id)
    if (outcome !== 0) await this.#client.zrem(this.#keys.user(uk), id)
    return outcome === 2
  }

  /** Reads the user's index, then each session (read-only: no index entry is removed but by its score). */
  async listUser (userId: string, now: number): Promise<SessionInfo[]> {
    await this.ready()
    return await listSessions(this.#parts, this.#sealer, userId, now)
  }

  async kvGet (sandbox: string, key: string, now: number): Promise<string | null> {
    await this.ready()
    const name = this.#keys.value(sandbox, key)
    const sealed = buffer(await this.#scripts.run(SCRIPT.kvGet, { key: name, now }))
    if (sealed === null) return null
    const plain = this.#sealer.open(sealed, 'value', sandbox, key)
    if (plain === null) return null
    if (this.#sealer.isStale(sealed)) await this.#reseal(name, [['v', sealed, this.#sealer.seal(plain, 'value', sandbox, key)]])
    return plain.toString('utf8')
  }

  async kvSet (sandbox: string, key: string, value: string, ttl: number, now: number): Promise<void> {
    await this.ready()
    await this.#scripts.run(
      SCRIPT.kvSet, { key: this.#keys.value(sandbox, key), now, ttl, sealed: this.#sealer.seal(value, 'value', sandbox, key) }
    )
  }

  async kvDel (sandbox: string, key: string): Promise<boolean> {
    await this.ready()
    return await this.#client.del(this.#keys.value(sandbox, key)) > 0
  }

  async kvAdd (sandbox: string, key: string, value: string, ttl: number, now: number): Promise<boolean> {
    await this.ready()
    const added = await this.#scripts.run(
      SCRIPT.kvAdd, { key: this.#keys.value(sandbox, key), now, ttl, sealed: this.#sealer.seal(value, 'value', sandbox, key) }
    )
    return num(added) === 1
  }

  async kvTake (sandbox: string, key: string, now: number): Promise<string | null> {
    await this.ready()
    const sealed = buffer(await this.#scripts.run(SCRIPT.kvTake, { key: this.#keys.value(sandbox, key), now }))
    if (sealed === null) return null
    return this.#sealer.open(sealed, 'value', sandbox, key)?.toString('utf8') ?? null
  }

  async increment (key: string, window: number, now: number): Promise<CounterResult> {
    await this.ready()
    const [count, resetAt] = list(await this.#scripts.run(SCRIPT.increment, { key: this.#keys.counter(key), now, window }))
    return { count: num(count), resetAt: num(resetAt) }
  }

  async resetCounter (key: string): Promise<void> {
    await this.ready()
    await this.#client.del(this.#keys.counter(key))
  }

  /** Stops this store (later calls fail with FST_XEMS_STORE_CLOSED). The ioredis client stays open: it is yours. */
  async close (): Promise<void> {
    this.#closed = true
  }

  #assertOpen (): void {
    if (this.#closed) throw xemsError('FST_XEMS_STORE_CLOSED')
  }

  async #reseal (key: string, items: Reseal[]): Promise<void> {
    await this.#scripts.run(SCRIPT.reseal, { key, items: items.flat() })
  }
}
