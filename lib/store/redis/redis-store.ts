import { createHash } from 'node:crypto'
import type { Cluster, Redis } from 'ioredis'
import { Keyring, parseSecret } from '../../crypto/cipher.js'
import { badOption, isXemsError, XemsError, xemsError } from '../../errors.js'
import type {
  CommitInput, CommitResult, CounterResult, CreateInput, EncodedData, LimitResult, MigrateInput, ResolveInput,
  ResolveResult, SessionInfo, SessionStore, StoredSession, UserLimit
} from '../contract.js'
import { DEVICE_KEY } from '../contract.js'
import { type Arg, BOX_LENGTH, KEY_LENGTH, SCRIPT } from './scripts/index.js'
import type { Script } from './scripts/define.js'

/** A 32-byte secret as `parseSecret` reads it: 32 bytes, 64 hex characters, base64 of 32 bytes, 32 ASCII characters. */
export type RedisStoreSecret = string | Uint8Array

export interface RedisStoreOptions {
  /**
   * An ioredis client, `new Redis(...)` or `new Redis.Cluster(...)`. It stays yours: `close()` does not
   * quit it. Configure it to fail fast (`enableOfflineQueue: false`, `maxRetriesPerRequest`,
   * `commandTimeout`): see docs/stores.md.
   */
  client: Redis | Cluster
  /** Prefix of every key (default `xems:`): 1 to 64 characters from `[A-Za-z0-9:_./-]`. */
  prefix?: string | undefined
  /**
   * The secret that seals everything written to Redis: one 32-byte secret, or `[newest, ...older]`
   * while rotating (data sealed under an older one still opens and is rewritten under the newest).
   */
  secret: RedisStoreSecret | RedisStoreSecret[]
}

/** The HKDF purpose of the keys that seal what RedisStore writes (key ids in sealed values derive from it). */
export const REDIS_SEAL_PURPOSE = 'xems/redis/v1'
/**
 * The layout of the keys under a prefix. 1: one hash tag per prefix, a key per token (never released).
 * 2: one hash per session under a hash tag of its own, the rotation state inside it, user indexes apart.
 * The canary records it; a store refuses a prefix written in another format (FST_XEMS_STORE_FORMAT).
 */
export const REDIS_FORMAT_VERSION = 2
/**
 * No session outlives this from any moment (the engine's MAX_AGE_CAP_MS, 5 days; kept here so the
 * store does not import the engine): the index score of a migration, which does not know the deadline.
 */
export const SESSION_LIFETIME_BOUND_MS = 5 * 86_400_000
/**
 * maxSessionsPerUser with 'refuse': a counted record that is still missing this long after its
 * admission is fenced (a tombstone) and no longer counted. Its create, if it ever arrives, is born
 * revoked; a younger missing record is taken for a create on its way and counts.
 */
export const ADMISSION_FENCE_MS = 60_000
const PREFIX_SYNTAX = /^[A-Za-z0-9:_./-]{1,64}$/
const COMMAND_PREFIX = `xemsRedisF${REDIS_FORMAT_VERSION}`
const CANARY_TEXT = `fastify-xems redis canary, format ${REDIS_FORMAT_VERSION}`
/** The marker format 1 wrote (its canary had no `format` field). */
const CANARY_TEXT_V1 = 'fastify-xems redis canary v1'

type Reply = Buffer | string | number | null | Reply[]
type ScriptFunction = (...args: Arg[]) => Promise<Reply>

/** A sealed field of one hash to rewrite under the newest key: field, old, new. */
type Reseal = [field: string, old: Buffer, fresh: Buffer]

/** The numkeys argument of EVALSHA, by the number of keys. */
const NUMKEYS = ['0', '1', '2'] as const

const NONE: ResolveResult = Object.freeze({ status: 'none' })

/** A name that does not show what it names: SHA-256 of a label and the value, base64url. */
function digest (label: string, value: string): string {
  return createHash('sha256').update(label).update('\u0000').update(value, 'utf8').digest('base64url')
}

/** The hash field of the device data key (see DEVICE_KEY). */
const DEVICE_FIELD = `d:${digest('data', DEVICE_KEY)}`

/** An opened data field: 4-byte key length, key, JSON text; null unless it names `field`. */
function dataPairOf (plain: Buffer, field: string): [string, string] | null {
  if (plain.length < 4) return null
  const end = 4 + plain.readUInt32BE(0)
  if (end > plain.length) return null
  const key = plain.subarray(4, end).toString('utf8')
  if (digest('data', key) !== field) return null
  return [key, plain.subarray(end).toString('utf8')]
}

function text (reply: Reply | undefined): string {
  if (Buffer.isBuffer(reply)) return reply.toString('utf8')
  if (typeof reply === 'number' || typeof reply === 'string') return String(reply)
  throw new TypeError('RedisStore: unexpected reply from Redis')
}

function num (reply: Reply | undefined): number {
  return typeof reply === 'number' ? reply : Number(text(reply))
}

function list (reply: Reply | undefined): Reply[] {
  if (!Array.isArray(reply)) throw new TypeError('RedisStore: unexpected reply from Redis')
  return reply
}

function buffer (reply: Reply | undefined): Buffer | null {
  return Buffer.isBuffer(reply) ? reply : null
}

const KEY_SHAPE = new RegExp(`^[A-Za-z0-9_-]{${KEY_LENGTH}}$`)
const BOX_SHAPE = new RegExp(`^[A-Za-z0-9_-]{${BOX_LENGTH}}$`)

/**
 * A token key as the scripts store it: fixed width, so the rotation state is sliced, not parsed. The
 * engine's keys (secretKeyOf: 16 bytes, base64url) pass as they are; any other string is mapped to a
 * 16-byte digest, which changes nothing, since keys are only ever compared for equality.
 */
function keyArg (key: string): string {
  return KEY_SHAPE.test(key) ? key : digest('token-key', key).slice(0, KEY_LENGTH)
}

/** A grace box as sealForTokenHolder makes it; the scripts store boxes at a fixed width. */
function boxArg (box: string): string {
  if (!BOX_SHAPE.test(box)) throw new TypeError(`RedisStore: a grace box must be what sealForTokenHolder returns (${BOX_LENGTH} base64url characters)`)
  return box
}

/** An integer field read as a Buffer, or NaN. */
function intOf (reply: Buffer | undefined): number {
  return reply === undefined ? Number.NaN : Number(reply.toString('latin1'))
}

/**
 * Sessions, values and counters in Redis (standalone, Sentinel or Cluster) through a client you supply.
 *
 * Each session is one hash under a hash tag of its own, so sessions spread over every master of a
 * cluster; resolve and commit are one Lua script each on that hash (one atomic step, one round trip).
 * A user's sessions are indexed in a sorted set in another slot, written before the session so that
 * revokeUser never misses one (see #indexAdd). Every payload is sealed with AES-256-GCM before it
 * leaves the process, bound to its place by the associated data. The layout and what a Redis operator
 * can see are documented in docs/stores.md.
 */
export class RedisStore implements SessionStore {
  /** The key prefix. */
  readonly prefix: string
  readonly #client: Redis | Cluster
  readonly #keyring: Keyring
  /** One keyring per secret, newest first, with its key id (hex): for the canary. */
  readonly #rings: Array<{ id: string, ring: Keyring }>
  /** The ioredis command of each script. */
  readonly #commands = new Map<Script<never>, ScriptFunction>()
  #verified: Promise<void> | null = null
  #closed = false

  constructor (options: RedisStoreOptions) {
    if (options === null || typeof options !== 'object') throw badOption('options', 'of RedisStore must be an object { client, secret, prefix? }')
    const client = options.client as unknown as Record<string, unknown> | null | undefined
    if (client === null || typeof client !== 'object' || typeof client.defineCommand !== 'function') {
      throw badOption('client', 'must be an ioredis client: new Redis(url) or new Redis.Cluster(nodes)')
    }
    const prefix = options.prefix ?? 'xems:'
    if (typeof prefix !== 'string' || !PREFIX_SYNTAX.test(prefix)) {
      throw badOption('prefix', 'must be 1 to 64 characters from [A-Za-z0-9:_./-] (no braces: the store adds its own hash tags)')
    }
    if (options.secret === undefined || options.secret === null) {
      throw badOption('secret', 'is required: a 32-byte secret (or [newest, ...older] while rotating) that seals everything written to Redis')
    }
    const given = Array.isArray(options.secret) ? options.secret : [options.secret]
    if (given.length === 0) throw badOption('secret', 'must hold at least one secret')
    const secrets = given.map((secret, i) => parseSecret(secret, Array.isArray(options.secret) ? `secret[${i}]` : 'secret'))
    const keyPrefix = (client.options as { keyPrefix?: unknown } | undefined)?.keyPrefix
    if (keyPrefix !== undefined && typeof keyPrefix !== 'string') throw badOption('client', 'has a keyPrefix that is not a string')
    if (typeof keyPrefix === 'string' && /[{}]/.test(keyPrefix)) {
      throw badOption('client', 'has a keyPrefix with a brace: it would put every key in one hash slot; the store adds its own hash tags')
    }

    this.prefix = prefix
    this.#client = options.client
    this.#keyring = new Keyring(secrets, REDIS_SEAL_PURPOSE)
    this.#rings = secrets.map((secret) => {
      const ring = new Keyring([secret], REDIS_SEAL_PURPOSE)
      return { id: ring.seal('', 'key-id').subarray(1, 5).toString('hex'), ring }
    })
    for (const [name, script] of Object.entries(SCRIPT)) {
      const command = COMMAND_PREFIX + name[0]!.toUpperCase() + name.slice(1)
      options.client.defineCommand(command, { lua: script.lua })
      const fn = client[`${command}Buffer`] as ScriptFunction
      this.#commands.set(script, fn.bind(options.client))
    }
  }

  /**
   * Checks the canary the store keeps under `<prefix>canary`: fails with FST_XEMS_STORE_FORMAT when the
   * prefix holds another layout format, FST_XEMS_BAD_SECRET when its data was written with another
   * secret. The first operation runs it anyway; call it at start-up to fail before serving.
   */
  async ready (): Promise<void> {
    this.#assertOpen()
    this.#verified ??= this.#checkCanary().catch((err: unknown) => {
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
    let admitted: { result: LimitResult, toEnd: string[] } | undefined
    if (input.userId !== undefined) {
      uk = digest('user', input.userId)
      if (input.userLimit === undefined) await this.#indexAdd(uk, id, input.absoluteExpiresAt, input.now)
      else {
        admitted = await this.#admit(uk, id, input.absoluteExpiresAt, input.now, input.userLimit)
        if (admitted.result.status === 'refused') return admitted.result
      }
      sealedUser = this.#seal(input.userId, 'session', id, 'user')
    }
    const ending = admitted === undefined ? null : this.#endAdmitted(uk, admitted.toEnd, input.now)
    const created = this.#run(SCRIPT.create, {
      key: this.#sessionKey(id),
      sandbox: input.sandbox,
      tokenKey: keyArg(input.tokenKey),
      now: input.now,
      idleTtl: input.idleTtl,
      absoluteExpiresAt: input.absoluteExpiresAt,
      userKey: uk,
      sealedUser,
      sandboxSeal: this.#sandboxSeal(id, input.sandbox, input.idleTtl),
      timesSeal: this.#seal('', 'session', id, 'times', input.now, input.absoluteExpiresAt),
      data: this.#dataPairs(id, input.data)
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
    const reply = list(await this.#run(SCRIPT.resolve, {
      key: this.#sessionKey(id),
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
      const userId = sealedUser === null ? null : this.#open(sealedUser, 'session', id, 'user')
      if (userId !== null) reused.userId = userId.toString('utf8')
      const device = this.#openDataField(id, DEVICE_FIELD.slice(2), buffer(reply[5]))
      if (device !== null) reused.device = device[1]
      const uk = buffer(reply[4])
      if (revoked && uk !== null) await this.#unindex(uk.toString('latin1'), id)
      return reused
    }
    if (status !== 1 && status !== 2) return NONE
    const opened = this.#openSession(id, list(reply[1]), input.now)
    if (opened === null) return NONE
    if (opened.reseal.length > 0) await this.#reseal(this.#sessionKey(id), opened.reseal)
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
        else written.push(...this.#dataPair(id, key, value))
      }
    }
    const rotate = input.rotate
    const reply = list(await this.#run(SCRIPT.commit, {
      key: this.#sessionKey(id),
      tokenKey: keyArg(input.tokenKey),
      now: input.now,
      rotate: rotate !== null,
      newKey: rotate === null ? '' : keyArg(rotate.newKey),
      box: rotate === null ? '' : boxArg(rotate.box),
      unseenWindow: rotate === null ? 0 : rotate.unseenWindow,
      deleted,
      written
    }))
    const status = num(reply[0])
    if (status === 0) return { status: 'gone' }
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
    let admitted: { result: LimitResult, toEnd: string[] } | undefined
    if (input.userId !== undefined) {
      uk = digest('user', input.userId)
      // The absolute deadline is not part of a migration; no session outlives now + the engine's cap.
      if (input.userLimit === undefined) await this.#indexAdd(uk, id, input.now + SESSION_LIFETIME_BOUND_MS, input.now)
      else {
        admitted = await this.#admit(uk, id, input.now + SESSION_LIFETIME_BOUND_MS, input.now, input.userLimit)
        if (admitted.result.status === 'refused') return admitted.result
      }
      sealedUser = this.#seal(input.userId, 'session', id, 'user')
    }
    const moved = await this.#run(SCRIPT.migrate, {
      key: this.#sessionKey(id),
      tokenKey: keyArg(input.tokenKey),
      from: input.from,
      to: input.to,
      newKey: keyArg(input.newKey),
      retiredUntil: input.retiredUntil,
      idleTtl: input.idleTtl,
      now: input.now,
      sandboxSeal: this.#sandboxSeal(id, input.to, input.idleTtl),
      replaceData: input.data !== null,
      userKey: uk,
      sealedUser,
      data: input.data === null ? [] : this.#dataPairs(id, input.data)
    })
    // A user the session no longer names keeps a dangling index entry: harmless (revokeUser and
    // listUser check the record), gone with its score. Removing it here could race a later migration
    // back to that user, whose index entry is written before its record. (Under maxSessionsPerUser it
    // also stays counted, as does the admission of a migration that did not happen: see docs/stores.md.)
    const ended = admitted === undefined ? [] : await this.#endAdmitted(uk, admitted.toEnd, input.now)
    if (num(moved) !== 1) return false
    return admitted === undefined ? true : { status: 'admitted', ended }
  }

  async destroy (id: string): Promise<boolean> {
    await this.ready()
    const reply = list(await this.#run(SCRIPT.destroy, { key: this.#sessionKey(id) }))
    if (num(reply[0]) !== 1) return false
    const uk = buffer(reply[1])
    if (uk !== null) await this.#unindex(uk.toString('latin1'), id)
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
    const entries = (await this.#indexRead(uk, now)).filter((entry) => entry.id !== exceptId)
    const outcomes = await Promise.all(entries.map(async (entry) =>
      num(await this.#run(SCRIPT.revokeOne, { key: this.#sessionKey(entry.id), userKey: uk, now, score: entry.score }))))
    const gone = entries.filter((_, i) => outcomes[i] !== 0).map((entry) => entry.id)
    if (gone.length > 0) await this.#client.zrem(this.#userKey(uk), ...gone)
    return outcomes.filter((outcome) => outcome === 2).length
  }

  /** One script on the session's key: ends it only if it is a live session of the user; then drops its index entry. */
  async revokeUserSession (userId: string, id: string, now: number): Promise<boolean> {
    await this.ready()
    const uk = digest('user', userId)
    // Score `now`: a record that is not there gets no tombstone (nothing of this user is on its way there).
    const outcome = num(await this.#run(SCRIPT.revokeOne, { key: this.#sessionKey(id), userKey: uk, now, score: now }))
    if (outcome !== 0) await this.#client.zrem(this.#userKey(uk), id)
    return outcome === 2
  }

  /** Reads the user's index, then each session (read-only: no index entry is removed but by its score). */
  async listUser (userId: string, now: number): Promise<SessionInfo[]> {
    await this.ready()
    const uk = digest('user', userId)
    const entries = await this.#indexRead(uk, now)
    const records = await Promise.all(entries.map(async (entry) =>
      await this.#client.hmgetBuffer(this.#sessionKey(entry.id), 'sb', 'ca', 'ls', 'it', 'ax', 'uk', 'u', 'ms', 'mt', 'x', DEVICE_FIELD)))
    const infos: SessionInfo[] = []
    entries.forEach((entry, i) => {
      const [sb, ca, ls, it, ax, owner, u, ms, mt, x, dv] = records[i]!
      if (sb === null || sb === undefined || x !== null || owner?.toString('latin1') !== uk) return
      const sandbox = sb.toString('utf8')
      const createdAt = intOf(ca ?? undefined)
      const lastSeenAt = intOf(ls ?? undefined)
      const idleTtl = intOf(it ?? undefined)
      const absoluteExpiresAt = intOf(ax ?? undefined)
      const expiresAt = Math.min(lastSeenAt + idleTtl, absoluteExpiresAt)
      if (!(expiresAt > now)) return
      // Only what opens is listed: the user, and the bindings of what the list shows.
      if (u === null || u === undefined || this.#open(u, 'session', entry.id, 'user')?.toString('utf8') !== userId) return
      if (ms === null || ms === undefined || this.#open(ms, 'session', entry.id, 'sandbox', sandbox, idleTtl) === null) return
      if (mt === null || mt === undefined || this.#open(mt, 'session', entry.id, 'times', createdAt, absoluteExpiresAt) === null) return
      const info: SessionInfo = { id: entry.id, sandbox, userId, createdAt, lastSeenAt, expiresAt }
      const device = this.#openDataField(entry.id, DEVICE_FIELD.slice(2), dv ?? null)
      if (device !== null && device[0] === DEVICE_KEY) info.device = device[1]
      infos.push(info)
    })
    return infos.sort((a, b) => a.createdAt - b.createdAt || (a.id < b.id ? -1 : 1))
  }

  async kvGet (sandbox: string, key: string, now: number): Promise<string | null> {
    await this.ready()
    const name = this.#valueKey(sandbox, key)
    const sealed = buffer(await this.#run(SCRIPT.kvGet, { key: name, now }))
    if (sealed === null) return null
    const plain = this.#open(sealed, 'value', sandbox, key)
    if (plain === null) return null
    if (this.#keyring.isStale(sealed)) await this.#reseal(name, [['v', sealed, this.#seal(plain, 'value', sandbox, key)]])
    return plain.toString('utf8')
  }

  async kvSet (sandbox: string, key: string, value: string, ttl: number, now: number): Promise<void> {
    await this.ready()
    await this.#run(SCRIPT.kvSet, { key: this.#valueKey(sandbox, key), now, ttl, sealed: this.#seal(value, 'value', sandbox, key) })
  }

  async kvDel (sandbox: string, key: string): Promise<boolean> {
    await this.ready()
    return await this.#client.del(this.#valueKey(sandbox, key)) > 0
  }

  async kvAdd (sandbox: string, key: string, value: string, ttl: number, now: number): Promise<boolean> {
    await this.ready()
    const added = await this.#run(SCRIPT.kvAdd, { key: this.#valueKey(sandbox, key), now, ttl, sealed: this.#seal(value, 'value', sandbox, key) })
    return num(added) === 1
  }

  async kvTake (sandbox: string, key: string, now: number): Promise<string | null> {
    await this.ready()
    const sealed = buffer(await this.#run(SCRIPT.kvTake, { key: this.#valueKey(sandbox, key), now }))
    if (sealed === null) return null
    return this.#open(sealed, 'value', sandbox, key)?.toString('utf8') ?? null
  }

  async increment (key: string, window: number, now: number): Promise<CounterResult> {
    await this.ready()
    const [count, resetAt] = list(await this.#run(SCRIPT.increment, { key: this.#counterKey(key), now, window }))
    return { count: num(count), resetAt: num(resetAt) }
  }

  async resetCounter (key: string): Promise<void> {
    await this.ready()
    await this.#client.del(this.#counterKey(key))
  }

  /** Stops this store (later calls fail with FST_XEMS_STORE_CLOSED). The ioredis client stays open: it is yours. */
  async close (): Promise<void> {
    this.#closed = true
  }

  #assertOpen (): void {
    if (this.#closed) throw xemsError('FST_XEMS_STORE_CLOSED')
  }

  /** Runs a script (EVALSHA, one round trip) with the arguments its builder makes of `input`. */
  async #run<I> (script: Script<I>, input: I): Promise<Reply> {
    const { keys, argv } = script.args(input)
    return await this.#commands.get(script as Script<never>)!(NUMKEYS[keys.length]!, ...keys, ...argv)
  }

  /**
   * Adds a record to its user's index. Called BEFORE the session record names the user (create, and a
   * migration that sets a user), so no record ever names a user without an index entry: if the record
   * write then fails or never arrives, the entry dangles, which is harmless (revokeUser and listUser
   * check each record) and ends with its score. `score` bounds the session's absolute deadline.
   */
  async #indexAdd (uk: string, id: string, score: number, now: number): Promise<void> {
    await this.#run(SCRIPT.indexAdd, { key: this.#userKey(uk), member: id, score, now })
  }

  /**
   * maxSessionsPerUser: the admit script decides in the user's slot. A refusal is checked once: the
   * counted records are read (in their own slots), those that are ended, expired, or missing longer
   * than ADMISSION_FENCE_MS (then fenced) are dead for good, and the script decides again without them.
   */
  async #admit (uk: string, id: string, score: number, now: number, limit: UserLimit): Promise<{ result: LimitResult, toEnd: string[] }> {
    const input = { u: this.#userKey(uk), l: this.#limitKey(uk), id, score, now, max: limit.max, onLimit: limit.onLimit, dead: [] }
    let reply = list(await this.#run(SCRIPT.admit, input))
    if (num(reply[0]) === 2) {
      const dead = await this.#deadAmong(reply.slice(1), now)
      if (dead.length > 0) reply = list(await this.#run(SCRIPT.admit, { ...input, dead }))
    }
    if (num(reply[0]) === 2) return { result: { status: 'refused' }, toEnd: [] }
    return { result: { status: 'admitted', ended: [] }, toEnd: reply.slice(1).map(text) }
  }

  /** Of the counted [id, admittedAt, ...] of a refusal, the ids whose records can never be live again. */
  async #deadAmong (counted: Reply[], now: number): Promise<string[]> {
    const entries: Array<{ id: string, admittedAt: number }> = []
    for (let i = 0; i + 1 < counted.length; i += 2) entries.push({ id: text(counted[i]), admittedAt: num(counted[i + 1]) })
    const dead = await Promise.all(entries.map(async ({ id, admittedAt }) => {
      const key = this.#sessionKey(id)
      const [sb, ls, it, ax, x] = await this.#client.hmgetBuffer(key, 'sb', 'ls', 'it', 'ax', 'x')
      if (x !== null && x !== undefined) return true
      if (sb === null || sb === undefined) {
        if (now - admittedAt < ADMISSION_FENCE_MS) return false
        return num(await this.#run(SCRIPT.fence, { key, now, fenceUntil: now + SESSION_LIFETIME_BOUND_MS })) === 1
      }
      const deadline = Math.min(intOf(ls ?? undefined) + intOf(it ?? undefined), intOf(ax ?? undefined))
      return deadline <= now
    }))
    return entries.filter((_, i) => dead[i]).map((entry) => entry.id)
  }

  /**
   * Ends the records the admit script marked (one revokeOne each, in their slots: their tokens then
   * answer "none"), then drops them from the index and the limit set. Returns those that were live.
   * Marked ones a crash left unended are handed out again by the user's next admission.
   */
  async #endAdmitted (uk: string, ids: string[], now: number): Promise<string[]> {
    if (ids.length === 0) return []
    const outcomes = await Promise.all(ids.map(async (id) =>
      num(await this.#run(SCRIPT.revokeOne, { key: this.#sessionKey(id), userKey: uk, now, score: now + SESSION_LIFETIME_BOUND_MS }))))
    await this.#run(SCRIPT.admitDone, { u: this.#userKey(uk), l: this.#limitKey(uk), ids })
    return ids.filter((_, i) => outcomes[i] === 2)
  }

  async #indexRead (uk: string, now: number): Promise<Array<{ id: string, score: number }>> {
    const reply = list(await this.#run(SCRIPT.indexRead, { key: this.#userKey(uk), now }))
    const entries: Array<{ id: string, score: number }> = []
    for (let i = 0; i + 1 < reply.length; i += 2) entries.push({ id: text(reply[i]), score: num(reply[i + 1]) })
    return entries
  }

  /**
   * Drops the index entry of a record this store has just deleted (destroy, a reuse revocation). Records
   * are never re-created, so this is always safe; it is tidying only, so a failure is not the caller's:
   * the entry then dangles until revokeUser or its score removes it.
   */
  async #unindex (uk: string, id: string): Promise<void> {
    await this.#client.zrem(this.#userKey(uk), id).catch(() => {})
  }

  async #checkCanary (): Promise<void> {
    const newest = this.#rings[0]!
    const marker = newest.ring.seal(CANARY_TEXT, this.#aad('canary', newest.id))
    const reply = list(await this.#run(SCRIPT.canary, { key: this.#canaryKey(), keyId: newest.id, marker, format: REDIS_FORMAT_VERSION }))
    if (reply.length === 0) return
    const fields = new Map<string, Buffer | null>()
    for (let i = 0; i + 1 < reply.length; i += 2) fields.set(text(reply[i]), buffer(reply[i + 1]))
    const format = fields.get('format')
    fields.delete('format')
    // Format 1 kept no `format` field; a canary with markers and none is that layout.
    const found = format === undefined ? '1' : format === null ? '?' : format.toString('utf8')
    if (found !== String(REDIS_FORMAT_VERSION)) throw this.#formatError(found)
    let opened = false
    let hasNewest = false
    for (const [id, sealed] of fields) {
      const mine = this.#rings.find((entry) => entry.id === id)
      if (mine === undefined) continue
      if (id === newest.id) hasNewest = true
      const plain = mine.ring.open(sealed ?? Buffer.alloc(0), this.#aad('canary', id))?.toString('utf8')
      if (plain === CANARY_TEXT_V1) throw this.#formatError('1')
      if (plain !== CANARY_TEXT) {
        throw xemsError('FST_XEMS_WRONG_SECRET', [`the RedisStore canary "${this.#canaryKey()}"`, 'secret', 'its key id matches, so it was tampered with'])
      }
      opened = true
    }
    if (!opened) {
      throw xemsError('FST_XEMS_WRONG_SECRET', [`the RedisStore data under prefix "${this.prefix}"`, 'secret',
        'it was written with another secret. Use that secret (or list it as an older one: [new, old]), or choose another prefix.'])
    }
    if (!hasNewest) await this.#client.hsetnx(this.#canaryKey(), newest.id, marker)
  }

  #formatError (found: string): XemsError {
    return xemsError('FST_XEMS_STORE_FORMAT', [`the keys under RedisStore prefix "${this.prefix}"`, found, REDIS_FORMAT_VERSION,
      'Delete every key under the prefix (they are sessions of the old layout: their users sign in again) or choose another prefix. ' +
      'See docs/stores.md, "Layout format".'])
  }

  #aad (...parts: Array<string | number>): string {
    return JSON.stringify([this.prefix, ...parts])
  }

  #seal (plain: string | Buffer, ...place: Array<string | number>): Buffer {
    return this.#keyring.seal(plain, this.#aad(...place))
  }

  #open (sealed: Buffer, ...place: Array<string | number>): Buffer | null {
    return this.#keyring.open(sealed, this.#aad(...place))
  }

  #sandboxSeal (id: string, sandbox: string, idleTtl: number): Buffer {
    return this.#seal('', 'session', id, 'sandbox', sandbox, idleTtl)
  }

  /** One top-level data key: field `d:<digest of the key>`, value sealing the key's name and its JSON text. */
  #dataPair (id: string, key: string, json: string): [string, Buffer] {
    const field = digest('data', key)
    const name = Buffer.from(key, 'utf8')
    const length = Buffer.alloc(4)
    length.writeUInt32BE(name.length)
    return [`d:${field}`, this.#seal(Buffer.concat([length, name, Buffer.from(json, 'utf8')]), 'session', id, 'data', field)]
  }

  #dataPairs (id: string, data: EncodedData): Arg[] {
    const pairs: Arg[] = []
    for (const [key, json] of Object.entries(data)) pairs.push(...this.#dataPair(id, key, json))
    return pairs
  }

  /**
   * Opens the session hash the resolve script read (HGETALL, before its own writes: lastSeenAt is `now`).
   * Null when any part does not open (tampered with, moved, or sealed under a key no longer in the
   * keyring): such a session is not trusted, so it does not resolve.
   */
  #openSession (id: string, all: Reply[], now: number): { session: StoredSession, reseal: Reseal[] } | null {
    let sb: Buffer | undefined
    let ca: Buffer | undefined
    let it: Buffer | undefined
    let ax: Buffer | undefined
    let u: Buffer | undefined
    let ms: Buffer | undefined
    let mt: Buffer | undefined
    const data: Array<[string, Buffer]> = []
    for (let i = 0; i + 1 < all.length; i += 2) {
      const name = all[i] as Buffer
      const value = all[i + 1] as Buffer
      // Field names are ASCII: compare the first bytes before making strings.
      if (name[0] === 0x64 && name[1] === 0x3a) { data.push([name.toString('latin1', 2), value]); continue }
      switch (name.toString('latin1')) {
        case 'sb': sb = value; break
        case 'ca': ca = value; break
        case 'it': it = value; break
        case 'ax': ax = value; break
        case 'u': u = value; break
        case 'ms': ms = value; break
        case 'mt': mt = value; break
      }
    }
    if (sb === undefined) return null
    const sandbox = sb.toString('utf8')
    const createdAt = intOf(ca)
    const idleTtl = intOf(it)
    const absoluteExpiresAt = intOf(ax)
    const reseal: Reseal[] = []
    const check = (field: string, sealed: Buffer | undefined, ...place: Array<string | number>): Buffer | null => {
      if (sealed === undefined) return null
      const opened = this.#open(sealed, ...place)
      if (opened === null) return null
      if (this.#keyring.isStale(sealed)) reseal.push([field, sealed, this.#seal(opened, ...place)])
      return opened
    }
    if (check('ms', ms, 'session', id, 'sandbox', sandbox, idleTtl) === null) return null
    if (check('mt', mt, 'session', id, 'times', createdAt, absoluteExpiresAt) === null) return null
    const session: StoredSession = {
      id,
      sandbox,
      data: Object.create(null) as EncodedData,
      createdAt,
      lastSeenAt: now,
      idleTtl,
      absoluteExpiresAt
    }
    if (u !== undefined) {
      const userId = check('u', u, 'session', id, 'user')
      if (userId === null) return null
      session.userId = userId.toString('utf8')
    }
    for (const [field, sealed] of data) {
      const plain = check(`d:${field}`, sealed, 'session', id, 'data', field)
      const pair = plain === null ? null : dataPairOf(plain, field)
      if (pair === null) return null
      session.data[pair[0]] = pair[1]
    }
    return { session, reseal }
  }

  /** One sealed data field as [key, JSON text]; null when absent or it does not open. */
  #openDataField (id: string, field: string, sealed: Buffer | null): [string, string] | null {
    if (sealed === null) return null
    const plain = this.#open(sealed, 'session', id, 'data', field)
    return plain === null ? null : dataPairOf(plain, field)
  }

  async #reseal (key: string, items: Reseal[]): Promise<void> {
    await this.#run(SCRIPT.reseal, { key, items: items.flat() })
  }

  /** A session's hash: a hash tag of its own, so sessions spread over a cluster's slots. */
  #sessionKey (id: string): string {
    return `${this.prefix}s:{${id}}`
  }

  /** A user's index, under the digest of the user id (its own hash tag too). */
  #userKey (uk: string): string {
    return `${this.prefix}u:{${uk}}`
  }

  /** A user's limit set (maxSessionsPerUser), in the slot of its index. */
  #limitKey (uk: string): string {
    return `${this.prefix}l:{${uk}}`
  }

  #valueKey (sandbox: string, key: string): string {
    return `${this.prefix}v:${sandbox}:${digest('value', key)}`
  }

  #counterKey (key: string): string {
    return `${this.prefix}c:${digest('counter', key)}`
  }

  #canaryKey (): string {
    return `${this.prefix}canary`
  }
}
