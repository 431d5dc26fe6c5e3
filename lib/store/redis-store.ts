import { createHash } from 'node:crypto'
import type { Cluster, Redis } from 'ioredis'
import { Keyring, parseSecret } from '../cipher.js'
import { badOption, isXemsError, XemsError } from '../errors.js'
import type {
  CommitInput, CommitResult, CounterResult, CreateInput, EncodedData, MigrateInput, ResolveInput,
  ResolveResult, SessionInfo, SessionStore, StoredSession
} from './contract.js'
import { SCRIPTS, type ScriptName } from './redis-scripts.js'

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
  prefix?: string
  /**
   * The secret that seals everything written to Redis: one 32-byte secret, or `[newest, ...older]`
   * while rotating (data sealed under an older one still opens and is rewritten under the newest).
   */
  secret: RedisStoreSecret | RedisStoreSecret[]
}

/** The HKDF purpose of the keys that seal what RedisStore writes (key ids in sealed values derive from it). */
export const REDIS_SEAL_PURPOSE = 'xems/redis/v1'
const PREFIX_SYNTAX = /^[A-Za-z0-9:_./-]{1,64}$/
const COMMAND_PREFIX = 'xemsRedisV1'
const CANARY_TEXT = 'fastify-xems redis canary v1'

type Arg = string | Buffer
type Reply = Buffer | string | number | null | Reply[]
type ScriptFunction = (...args: Arg[]) => Promise<Reply>

/** A sealed field to rewrite under the newest key: which hash (1: session, 2: token entry), field, old, new. */
type Reseal = [index: '1' | '2', field: string, old: Buffer, fresh: Buffer]

const NONE: ResolveResult = Object.freeze({ status: 'none' })

/** A name that does not show what it names: SHA-256 of a label and the value, base64url. */
function digest (label: string, value: string): string {
  return createHash('sha256').update(label).update('\u0000').update(value, 'utf8').digest('base64url')
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

/**
 * Sessions, values and counters in Redis (standalone, Sentinel or Cluster) through a client you supply.
 * Every multi-step operation is one Lua script (one atomic step, one round trip); every payload is sealed
 * with AES-256-GCM before it leaves the process, bound to its place by the associated data. The layout
 * and what a Redis operator can see are documented in docs/stores.md.
 */
export class RedisStore implements SessionStore {
  /** The key prefix. */
  readonly prefix: string
  readonly #client: Redis | Cluster
  readonly #keyring: Keyring
  /** One keyring per secret, newest first, with its key id (hex): for the canary. */
  readonly #rings: Array<{ id: string, ring: Keyring }>
  /** Base of session keys as passed in KEYS (ioredis adds its own keyPrefix to those). */
  readonly #base: string
  /** Base of session keys as Lua builds them (the client's keyPrefix included). */
  readonly #luaBase: string
  readonly #scripts = new Map<ScriptName, ScriptFunction>()
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
      throw badOption('prefix', 'must be 1 to 64 characters from [A-Za-z0-9:_./-] (no braces: the store adds its own hash tag)')
    }
    if (options.secret === undefined || options.secret === null) {
      throw badOption('secret', 'is required: a 32-byte secret (or [newest, ...older] while rotating) that seals everything written to Redis')
    }
    const given = Array.isArray(options.secret) ? options.secret : [options.secret]
    if (given.length === 0) throw badOption('secret', 'must hold at least one secret')
    const secrets = given.map((secret, i) => parseSecret(secret, Array.isArray(options.secret) ? `secret[${i}]` : 'secret'))
    const keyPrefix = (client.options as { keyPrefix?: unknown } | undefined)?.keyPrefix
    if (keyPrefix !== undefined && typeof keyPrefix !== 'string') throw badOption('client', 'has a keyPrefix that is not a string')

    this.prefix = prefix
    this.#client = options.client
    this.#keyring = new Keyring(secrets, REDIS_SEAL_PURPOSE)
    this.#rings = secrets.map((secret) => {
      const ring = new Keyring([secret], REDIS_SEAL_PURPOSE)
      return { id: ring.seal('', 'key-id').subarray(1, 5).toString('hex'), ring }
    })
    this.#base = `${prefix}{${prefix}}`
    this.#luaBase = (keyPrefix ?? '') + this.#base
    for (const [name, lua] of Object.entries(SCRIPTS) as Array<[ScriptName, string]>) {
      const command = COMMAND_PREFIX + name[0]!.toUpperCase() + name.slice(1)
      options.client.defineCommand(command, { lua })
      const fn = client[`${command}Buffer`] as ScriptFunction
      this.#scripts.set(name, fn.bind(options.client))
    }
  }

  /**
   * Checks the secret against the canary the store keeps under `<prefix>canary`: fails with
   * FST_XEMS_BAD_SECRET when the data under this prefix was written with another secret. The first
   * operation runs it anyway; call it at start-up to fail before serving.
   */
  async ready (): Promise<void> {
    this.#assertOpen()
    this.#verified ??= this.#checkCanary().catch((err: unknown) => {
      if (!isXemsError(err)) this.#verified = null
      throw err
    })
    await this.#verified
  }

  /** For a session given a user: adds the user index key to `keys`; the key as Lua names it and the sealed id. */
  #userArgs (sid: string, userId: string | undefined, keys: string[]): { userKey: string, sealedUser: Arg } {
    if (userId === undefined) return { userKey: '', sealedUser: '' }
    keys.push(this.#userKey(userId))
    return { userKey: this.#luaUserKey(userId), sealedUser: this.#seal(userId, 'session', sid, 'user') }
  }

  async create (input: CreateInput): Promise<void> {
    await this.ready()
    const { sid } = input
    const keys = [this.#sessionKey(sid), this.#tokenKey(input.tokenKey)]
    const { userKey, sealedUser } = this.#userArgs(sid, input.userId, keys)
    await this.#run('create', keys, [
      this.#luaBase, sid, input.sandbox, input.tokenKey, String(input.now), String(input.idleTtl), String(input.absoluteExpiresAt),
      userKey, sealedUser,
      this.#sandboxSeal(sid, input.sandbox, input.idleTtl),
      this.#seal('', 'session', sid, 'times', input.now, input.absoluteExpiresAt),
      this.#tokenSeal(input.tokenKey, sid),
      ...this.#dataPairs(sid, input.data)
    ])
  }

  async resolve (input: ResolveInput): Promise<ResolveResult> {
    await this.ready()
    const reply = list(await this.#run('resolve', [this.#tokenKey(input.tokenKey)], [
      this.#luaBase, String(input.now), input.sandbox ?? '', input.revokeOnReuse ? '1' : '0'
    ]))
    const status = num(reply[0])
    if (status === 3) {
      const sid = text(reply[1])
      const reused: ResolveResult = { status: 'reused', sid, sandbox: text(reply[2]), revoked: num(reply[4]) === 1 }
      const sealedUser = buffer(reply[3])
      const userId = sealedUser === null ? null : this.#open(sealedUser, 'session', sid, 'user')
      if (userId !== null) reused.userId = userId.toString('utf8')
      return reused
    }
    if (status !== 1 && status !== 2) return NONE
    const opened = this.#openSession(list(reply[1]), buffer(reply[2]), input.tokenKey)
    if (opened === null) return NONE
    if (opened.reseal.length > 0) await this.#reseal([this.#sessionKey(opened.session.sid), this.#tokenKey(input.tokenKey)], opened.reseal)
    if (status === 1) return { status: 'live', session: opened.session }
    return { status: 'grace', session: opened.session, chain: list(reply[3]).map(text) }
  }

  async commit (input: CommitInput): Promise<CommitResult> {
    await this.ready()
    const { sid } = input
    const keys = [this.#sessionKey(sid), this.#tokenKey(input.tokenKey)]
    const deleted: string[] = []
    const written: Arg[] = []
    if (input.patch !== null) {
      for (const [key, value] of Object.entries(input.patch)) {
        if (value === null) deleted.push(`d:${digest('data', key)}`)
        else written.push(...this.#dataPair(sid, key, value))
      }
    }
    let rotate: Arg[] = ['0', '', '', '', '']
    if (input.rotate !== null) {
      keys.push(this.#tokenKey(input.rotate.newKey))
      rotate = ['1', input.rotate.newKey, input.rotate.box, String(input.rotate.graceUntil), this.#tokenSeal(input.rotate.newKey, sid)]
    }
    const reply = list(await this.#run('commit', keys, [
      this.#luaBase, sid, input.tokenKey, String(input.now), ...rotate, String(deleted.length), ...deleted, ...written
    ]))
    const status = num(reply[0])
    if (status === 0) return { status: 'gone' }
    const expiresAt = num(reply[1])
    if (status === 1) return { status: 'ok', rotated: true, expiresAt }
    const chain = reply[2] === null || reply[2] === undefined ? null : list(reply[2]).map(text)
    return { status: 'ok', rotated: false, chain, expiresAt }
  }

  async migrate (input: MigrateInput): Promise<boolean> {
    await this.ready()
    const { sid } = input
    const keys = [this.#sessionKey(sid), this.#tokenKey(input.newKey)]
    const { userKey, sealedUser } = this.#userArgs(sid, input.userId, keys)
    const moved = await this.#run('migrate', keys, [
      this.#luaBase, sid, input.from, input.to, input.newKey, String(input.idleTtl), String(input.now),
      this.#sandboxSeal(sid, input.to, input.idleTtl), this.#tokenSeal(input.newKey, sid),
      input.data === null ? '0' : '1', userKey, sealedUser,
      ...(input.data === null ? [] : this.#dataPairs(sid, input.data))
    ])
    return num(moved) === 1
  }

  async destroy (sid: string): Promise<boolean> {
    await this.ready()
    return num(await this.#run('destroy', [this.#sessionKey(sid)], [this.#luaBase, sid])) === 1
  }

  async revokeUser (userId: string, now: number, exceptSid?: string): Promise<number> {
    await this.ready()
    return num(await this.#run('revokeUser', [this.#userKey(userId)], [this.#luaBase, String(now), exceptSid ?? '']))
  }

  async listUser (userId: string, now: number): Promise<SessionInfo[]> {
    await this.ready()
    const reply = list(await this.#run('listUser', [this.#userKey(userId)], [this.#luaBase, String(now)]))
    const infos = reply.map((entry): SessionInfo => {
      const [sid, sandbox, createdAt, lastSeenAt, expiresAt] = list(entry)
      return { sid: text(sid), sandbox: text(sandbox), userId, createdAt: num(createdAt), lastSeenAt: num(lastSeenAt), expiresAt: num(expiresAt) }
    })
    return infos.sort((a, b) => a.createdAt - b.createdAt || (a.sid < b.sid ? -1 : 1))
  }

  async kvGet (sandbox: string, key: string, now: number): Promise<string | null> {
    await this.ready()
    const name = this.#valueKey(sandbox, key)
    const sealed = buffer(await this.#run('kvGet', [name], [String(now)]))
    if (sealed === null) return null
    const plain = this.#open(sealed, 'value', sandbox, key)
    if (plain === null) return null
    if (this.#keyring.isStale(sealed)) await this.#reseal([name], [['1', 'v', sealed, this.#seal(plain, 'value', sandbox, key)]])
    return plain.toString('utf8')
  }

  async kvSet (sandbox: string, key: string, value: string, ttl: number, now: number): Promise<void> {
    await this.ready()
    await this.#run('kvSet', [this.#valueKey(sandbox, key)], [String(now), String(ttl), this.#seal(value, 'value', sandbox, key)])
  }

  async kvDel (sandbox: string, key: string): Promise<boolean> {
    await this.ready()
    return await this.#client.del(this.#valueKey(sandbox, key)) > 0
  }

  async kvAdd (sandbox: string, key: string, value: string, ttl: number, now: number): Promise<boolean> {
    await this.ready()
    const added = await this.#run('kvAdd', [this.#valueKey(sandbox, key)], [String(now), String(ttl), this.#seal(value, 'value', sandbox, key)])
    return num(added) === 1
  }

  async kvTake (sandbox: string, key: string, now: number): Promise<string | null> {
    await this.ready()
    const sealed = buffer(await this.#run('kvTake', [this.#valueKey(sandbox, key)], [String(now)]))
    if (sealed === null) return null
    return this.#open(sealed, 'value', sandbox, key)?.toString('utf8') ?? null
  }

  async increment (key: string, window: number, now: number): Promise<CounterResult> {
    await this.ready()
    const [count, resetAt] = list(await this.#run('increment', [this.#counterKey(key)], [String(now), String(window)]))
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
    if (this.#closed) throw new XemsError('FST_XEMS_STORE_CLOSED', 'fastify-xems: the store has been closed', 503)
  }

  async #run (script: ScriptName, keys: string[], args: Arg[]): Promise<Reply> {
    return await this.#scripts.get(script)!(String(keys.length), ...keys, ...args)
  }

  async #checkCanary (): Promise<void> {
    const newest = this.#rings[0]!
    const marker = newest.ring.seal(CANARY_TEXT, this.#aad('canary', newest.id))
    const reply = list(await this.#run('canary', [this.#canaryKey()], [newest.id, marker]))
    if (reply.length === 0) return
    let opened = false
    let hasNewest = false
    for (let i = 0; i + 1 < reply.length; i += 2) {
      const id = text(reply[i])
      const mine = this.#rings.find((entry) => entry.id === id)
      if (mine === undefined) continue
      if (id === newest.id) hasNewest = true
      const plain = mine.ring.open(buffer(reply[i + 1]) ?? Buffer.alloc(0), this.#aad('canary', id))
      if (plain === null || plain.toString('utf8') !== CANARY_TEXT) {
        throw new XemsError('FST_XEMS_BAD_SECRET', `fastify-xems: the RedisStore canary "${this.#canaryKey()}" does not open although its key id matches option "secret": it was tampered with`)
      }
      opened = true
    }
    if (!opened) {
      throw new XemsError('FST_XEMS_BAD_SECRET',
        `fastify-xems: RedisStore option "secret" does not open the data under prefix "${this.prefix}": it was written with ` +
        'another secret. Use that secret (or list it as an older one: [new, old]), or choose another prefix.')
    }
    if (!hasNewest) await this.#client.hsetnx(this.#canaryKey(), newest.id, marker)
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

  #sandboxSeal (sid: string, sandbox: string, idleTtl: number): Buffer {
    return this.#seal('', 'session', sid, 'sandbox', sandbox, idleTtl)
  }

  #tokenSeal (tokenKey: string, sid: string): Buffer {
    return this.#seal('', 'token', tokenKey, sid)
  }

  /** One top-level data key: field `d:<digest of the key>`, value sealing the key's name and its JSON text. */
  #dataPair (sid: string, key: string, json: string): [string, Buffer] {
    const field = digest('data', key)
    const name = Buffer.from(key, 'utf8')
    const length = Buffer.alloc(4)
    length.writeUInt32BE(name.length)
    return [`d:${field}`, this.#seal(Buffer.concat([length, name, Buffer.from(json, 'utf8')]), 'session', sid, 'data', field)]
  }

  #dataPairs (sid: string, data: EncodedData): Arg[] {
    const pairs: Arg[] = []
    for (const [key, json] of Object.entries(data)) pairs.push(...this.#dataPair(sid, key, json))
    return pairs
  }

  /**
   * Opens what the resolve script returned. Null when any part does not open (tampered with, moved, or
   * sealed under a key no longer in the keyring): such a session is not trusted, so it does not resolve.
   */
  #openSession (reply: Reply[], tokenSeal: Buffer | null, tokenKey: string): { session: StoredSession, reseal: Reseal[] } | null {
    const [sidReply, sandboxReply, createdReply, lastSeenReply, idleReply, absoluteReply, userReply, sandboxSealReply, timesSealReply, dataReply] = reply
    const sid = text(sidReply)
    const sandbox = text(sandboxReply)
    const createdAt = num(createdReply)
    const idleTtl = num(idleReply)
    const absoluteExpiresAt = num(absoluteReply)
    const reseal: Reseal[] = []
    const check = (index: '1' | '2', field: string, sealed: Buffer | null, plain: string | Buffer, ...place: Array<string | number>): Buffer | null => {
      if (sealed === null) return null
      const opened = this.#open(sealed, ...place)
      if (opened === null) return null
      if (this.#keyring.isStale(sealed)) reseal.push([index, field, sealed, this.#seal(opened, ...place)])
      return typeof plain === 'string' && opened.toString('utf8') !== plain ? null : opened
    }
    if (check('2', 'tm', tokenSeal, '', 'token', tokenKey, sid) === null) return null
    if (check('1', 'ms', buffer(sandboxSealReply), '', 'session', sid, 'sandbox', sandbox, idleTtl) === null) return null
    if (check('1', 'mt', buffer(timesSealReply), '', 'session', sid, 'times', createdAt, absoluteExpiresAt) === null) return null
    const session: StoredSession = {
      sid,
      sandbox,
      data: Object.create(null) as EncodedData,
      createdAt,
      lastSeenAt: num(lastSeenReply),
      idleTtl,
      absoluteExpiresAt
    }
    if (userReply !== null && userReply !== undefined) {
      const userId = check('1', 'u', buffer(userReply), Buffer.alloc(0), 'session', sid, 'user')
      if (userId === null) return null
      session.userId = userId.toString('utf8')
    }
    const data = list(dataReply)
    for (let i = 0; i + 1 < data.length; i += 2) {
      const field = text(data[i])
      const plain = check('1', `d:${field}`, buffer(data[i + 1]), Buffer.alloc(0), 'session', sid, 'data', field)
      if (plain === null || plain.length < 4) return null
      const end = 4 + plain.readUInt32BE(0)
      if (end > plain.length) return null
      const key = plain.subarray(4, end).toString('utf8')
      if (digest('data', key) !== field) return null
      session.data[key] = plain.subarray(end).toString('utf8')
    }
    return { session, reseal }
  }

  async #reseal (keys: string[], items: Reseal[]): Promise<void> {
    await this.#run('reseal', keys, items.flat())
  }

  #sessionKey (sid: string): string {
    return `${this.#base}s:${sid}`
  }

  #tokenKey (tokenKey: string): string {
    return `${this.#base}t:${tokenKey}`
  }

  #userKey (userId: string): string {
    return `${this.#base}u:${digest('user', userId)}`
  }

  #luaUserKey (userId: string): string {
    return `${this.#luaBase}u:${digest('user', userId)}`
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
