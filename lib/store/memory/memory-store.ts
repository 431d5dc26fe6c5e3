import { resolve as resolvePath } from 'node:path'
import { parseSecret } from '../../crypto/cipher.js'
import { parsePositiveDuration, type Duration } from '../../duration.js'
import { badOption, xemsError } from '../../errors.js'
import type {
  CommitInput, CommitResult, CounterResult, CreateInput, EncodedData, LimitResult, MigrateInput,
  ResolveInput, ResolveResult, SessionInfo, SessionStore, StoredSession, UserLimit
} from '../contract.js'
import { DEVICE_KEY } from '../contract.js'
import { chainOf, markPresented, matchToken, mayMigrate, NO_PAST, retireAll, rotate, type RotationState } from '../rotation.js'
import { ShardedMap } from './sharded-map.js'
import { IncrementalSweeper } from './sweeper.js'
import { Vault, type FsyncPolicy, type VaultOptions, type VaultWarning } from '../vault/vault.js'
import {
  decodeEntry, encodeAllData, encodeCore, encodeCounter, encodeCounterRemoved, encodeDataKey, encodeSessionRemoved,
  encodeTouch, encodeValue, encodeValueRemoved, type SessionCore
} from '../vault/entries.js'

export type { FsyncPolicy, VaultWarning }

/** A 32-byte secret: a Buffer of 32 bytes, 64 hex characters, base64 of 32 bytes, or 32 printable ASCII characters. */
export type VaultSecret = string | Uint8Array

/** Encrypted, crash-safe persistence of a MemoryStore (see docs/persistence.md). */
export interface PersistenceOptions {
  /**
   * The vault directory, used by this store alone (created with mode 0700 if missing; a relative path
   * is resolved at construction). It holds `xems.snapshot`, `xems.journal.<generation>` and the lease `xems.lock.<generation>`.
   */
  path: string
  /**
   * The secret the vault is sealed with, or a list newest first: files open with any of them and are
   * rewritten with the first at start-up, so rotating the secret logs nobody out.
   */
  secret: VaultSecret | VaultSecret[]
  /**
   * When a change is on disk before its operation resolves. `'always'` (default): after fsync, so
   * nothing acknowledged is lost even by a power cut. `'everysec'`: after the write to the OS, fsync
   * at most a second later; a process crash loses nothing acknowledged, a power cut up to about a second.
   */
  fsync?: FsyncPolicy | undefined
  /** Journal size in bytes after which it is compacted into a new snapshot (default 8 MiB; at least the snapshot's size). */
  compactAfter?: number | undefined
}

export interface MemoryStoreOptions {
  /** How often expired entries are swept, in small steps (default 250ms). */
  sweepInterval?: Duration | undefined
  /** The clock the background sweep reads (default Date.now); give the engine's clock in tests. */
  clock?: (() => number) | undefined
  /** Keep the store in an encrypted vault on disk, so sessions survive a restart (default: memory only). */
  persistence?: PersistenceOptions | undefined
  /**
   * Bind the vault to this machine: its keys also derive from the machine id (/etc/machine-id, else
   * /var/lib/dbus/machine-id), so the files do not open on another host even with the secret. Default false.
   */
  bindToHost?: boolean | undefined
  /**
   * The host identity to use instead of the machine id: for tests, and for containers whose machine
   * id is missing or changes with every image (give a stable value of your own).
   */
  hostId?: string | undefined
  /** Receives what the vault reports without stopping (a torn journal tail, a failed compaction). Default: process.emitWarning. */
  onWarning?: ((warning: VaultWarning) => void) | undefined
}

const DEFAULT_COMPACT_AFTER = 8 * 1024 * 1024

/**
 * One record per session: its fields and its rotation state (lib/store/rotation.ts), nothing else. Times
 * are kept as offsets: small integers, which V8 keeps in the object itself, where a timestamp would be a
 * 16-byte heap number of its own (a million sessions: 48 MB).
 */
interface MemorySession extends RotationState {
  id: string
  sandbox: string
  /** Always present (undefined without a user): one object shape for every session, fields in place. */
  userId: string | undefined
  data: EncodedData
  /** createdAt − EPOCH (a small integer for about 24 days either side of the process's start). */
  created: number
  /** lastSeenAt − createdAt. */
  seenOffset: number
  idleTtl: number
  /** absoluteExpiresAt − createdAt. */
  lifeSpan: number
}

const EPOCH = Date.now()

/** `n` as a small integer (V8's Smi, stored in place) whenever it is one; any other number as it is. */
function small (n: number): number {
  return n >= -0x80000000 && n <= 0x7fffffff && Number.isInteger(n) ? n | 0 : n
}

function createdOf (session: MemorySession): number {
  return EPOCH + session.created
}

function lastSeenOf (session: MemorySession): number {
  return EPOCH + session.created + session.seenOffset
}

function absoluteOf (session: MemorySession): number {
  return EPOCH + session.created + session.lifeSpan
}

function seen (session: MemorySession, now: number): void {
  session.seenOffset = small(now - createdOf(session))
}

/** Sets the times of a session (its offsets), as created or as loaded. */
function setTimes (session: MemorySession, createdAt: number, lastSeenAt: number, absoluteExpiresAt: number): void {
  session.created = small(createdAt - EPOCH)
  session.seenOffset = small(lastSeenAt - createdAt)
  session.lifeSpan = small(absoluteExpiresAt - createdAt)
}

interface TimedValue {
  value: string
  expiresAt: number
}

interface Counter {
  count: number
  resetAt: number
}

const NONE: ResolveResult = Object.freeze({ status: 'none' })

/** What an operation changed of a session, for the journal; a larger one includes the smaller. */
const Change = { Touch: 0, Presented: 1, Core: 2 } as const
type Change = typeof Change[keyof typeof Change]

function sessionExpiresAt (session: MemorySession): number {
  return EPOCH + session.created + Math.min(session.seenOffset + session.idleTtl, session.lifeSpan)
}

/**
 * The embedded store: everything lives in this process's memory. Each operation runs as one
 * synchronous section, so it is atomic with respect to every other request of the process.
 *
 * With `persistence`, every change is also journaled to an encrypted vault on disk and the store is
 * loaded from it at start. Loading is asynchronous: `await store.ready()` (or create the store with
 * `await MemoryStore.open(options)`) before serving; operations called earlier wait for it, and fail
 * with the start-up error if the vault does not open.
 */
export class MemoryStore implements SessionStore {
  readonly #sessions = new ShardedMap<MemorySession>()
  readonly #values = new ShardedMap<TimedValue>()
  readonly #counters = new ShardedMap<Counter>()
  /** userId → the id of its one session, or a set of ids once it has several (most users have one). */
  readonly #users = new ShardedMap<string | Set<string>>()
  readonly #sweeper: IncrementalSweeper
  readonly #clock: () => number
  readonly #vault: Vault | null
  /** Rejects with the start-up error; what `ready()` answers. */
  readonly #ready: Promise<void>
  /** Settles (never rejects) when loading ends; null once it has. */
  #opening: Promise<void> | null = null
  #startError: unknown = null
  /** What the current operation changed, per session id (see Change). */
  readonly #dirtySessions = new Map<string, Change>()
  /** id → the data keys changed, or null for all of them. */
  readonly #dirtyData = new Map<string, Set<string> | null>()
  readonly #dirtyValues = new Set<string>()
  readonly #dirtyCounters = new Set<string>()
  #timer: NodeJS.Timeout | null
  #closed = false
  #closing: Promise<void> | null = null

  /** Creates a store and waits until it is ready (its vault loaded, with `persistence`). */
  static async open (options: MemoryStoreOptions = {}): Promise<MemoryStore> {
    const store = new MemoryStore(options)
    try {
      await store.ready()
    } catch (err) {
      await store.close()
      throw err
    }
    return store
  }

  constructor (options: MemoryStoreOptions = {}) {
    const interval = parsePositiveDuration(options.sweepInterval ?? 250, 'sweepInterval')
    if (interval > 2_147_483_647) throw badOption('sweepInterval', 'must be at most 24 days (the longest timer Node.js keeps)')
    if (options.clock !== undefined && typeof options.clock !== 'function') throw badOption('clock', 'must be a function returning milliseconds')
    const vaultOptions = checkPersistence(options)
    this.#sweeper = new IncrementalSweeper([
      { map: this.#sessions, isExpired: (s: MemorySession, now) => sessionExpiresAt(s) <= now, remove: (_k, s: MemorySession) => this.#forgetSession(s) },
      { map: this.#values, isExpired: (v: TimedValue, now) => v.expiresAt <= now, remove: (k) => this.#values.delete(k) },
      { map: this.#counters, isExpired: (c: Counter, now) => c.resetAt <= now, remove: (k) => this.#counters.delete(k) }
    ])
    const clock = options.clock ?? Date.now
    this.#clock = clock
    if (vaultOptions === null) {
      this.#vault = null
      this.#ready = Promise.resolve()
    } else {
      this.#vault = new Vault(vaultOptions)
      this.#ready = this.#vault.open({
        apply: (entry) => { this.#applyEntry(entry) },
        loaded: () => { this.#finishLoading(clock()) },
        scan: () => this.#scan()
      })
      this.#opening = this.#ready.then(() => { this.#opening = null }, (err: unknown) => {
        this.#startError = err
        this.#opening = null
      })
    }
    this.#timer = setInterval(() => this.sweep(clock()), interval)
    this.#timer.unref()
  }

  /**
   * Resolves once the store can serve: at once without persistence; with it, once the vault has been
   * loaded and compacted. Rejects with the reason it cannot start (FST_XEMS_BAD_SECRET,
   * FST_XEMS_VAULT_CORRUPT, FST_XEMS_VAULT_FORMAT, FST_XEMS_VAULT_OTHER_HOST, FST_XEMS_VAULT_LOCKED, FST_XEMS_VAULT_IO).
   */
  async ready (): Promise<void> {
    await this.#ready
  }

  /** Number of live entries (sessions, values, counters), for monitoring and tests. */
  get size (): { sessions: number, values: number, counters: number } {
    return { sessions: this.#sessions.size, values: this.#values.size, counters: this.#counters.size }
  }

  /** One bounded sweep step (about 2 ms at most); the store runs it on its own timer. */
  sweep (now: number): number {
    return this.#closed || this.#opening !== null ? 0 : this.#sweeper.step(now)
  }

  async create (input: CreateInput): Promise<LimitResult | void> {
    if (this.#vault !== null) return await this.#persistently(this.#vault, () => this.#create(input))
    this.#assertOpen()
    return this.#create(input)
  }

  #create (input: CreateInput): LimitResult | void {
    let admitted: LimitResult | undefined
    if (input.userId !== undefined && input.userLimit !== undefined) {
      admitted = this.#admit(input.userId, input.id, input.userLimit, input.now)
      if (admitted.status === 'refused') return admitted
    }
    const old = this.#sessions.get(input.id)
    if (old !== undefined) this.#forgetSession(old)
    const session: MemorySession = {
      id: input.id,
      sandbox: input.sandbox,
      userId: input.userId,
      data: flatData(input.data),
      created: 0,
      seenOffset: 0,
      idleTtl: small(input.idleTtl),
      lifeSpan: 0,
      cur: input.tokenKey,
      seen: false,
      past: NO_PAST
    }
    setTimes(session, input.now, input.now, input.absoluteExpiresAt)
    if (input.userId !== undefined) this.#indexUser(input.userId, input.id)
    this.#sessions.set(input.id, session)
    this.#coreChanged(input.id)
    this.#dataChanged(input.id, null)
    return admitted
  }

  /**
   * The cap of a user, within the operation that gives session `id` the user: counts the user's other
   * live sessions and refuses, or ends the least recently created ones (ties by id) so that `max` are
   * left with the new one. Part of one synchronous section with the write that follows.
   */
  #admit (userId: string, id: string, limit: UserLimit, now: number): LimitResult {
    const live: MemorySession[] = []
    for (const other of this.#userIds(userId)) {
      if (other === id) continue
      const session = this.#liveSession(other, now)
      if (session !== null) live.push(session)
    }
    if (live.length < limit.max) return { status: 'admitted', ended: [] }
    if (limit.onLimit === 'refuse') return { status: 'refused' }
    live.sort((a, b) => a.created - b.created || (a.id < b.id ? -1 : 1))
    const ended = live.slice(0, live.length - limit.max + 1)
    for (const session of ended) this.#removeSession(session)
    return { status: 'admitted', ended: ended.map((session) => session.id) }
  }

  async resolve (input: ResolveInput): Promise<ResolveResult> {
    if (this.#vault !== null) return await this.#persistently(this.#vault, () => this.#resolve(input))
    this.#assertOpen()
    return this.#resolve(input)
  }

  #resolve (input: ResolveInput): ResolveResult {
    const session = this.#liveSession(input.id, input.now)
    if (session === null) return NONE
    const match = matchToken(session, input.tokenKey, input.now)
    if (match.kind === 'reused') {
      if (input.revokeOnReuse) this.#removeSession(session)
      const reused: ResolveResult = { status: 'reused', id: session.id, sandbox: session.sandbox, revoked: input.revokeOnReuse }
      if (session.userId !== undefined) reused.userId = session.userId
      const device = session.data[DEVICE_KEY]
      if (device !== undefined) reused.device = device
      return reused
    }
    if (match.kind === 'retired' || (input.sandbox !== undefined && session.sandbox !== input.sandbox)) return NONE
    seen(session, input.now)
    if (match.kind === 'current') {
      if (markPresented(session, input.now, input.gracePeriod)) this.#presented(session.id)
      else this.#touched(session.id)
      return { status: 'live', session: snapshot(session) }
    }
    this.#touched(session.id)
    return { status: 'grace', session: snapshot(session), chain: match.chain }
  }

  async commit (input: CommitInput): Promise<CommitResult> {
    if (this.#vault !== null) return await this.#persistently(this.#vault, () => this.#commit(input))
    this.#assertOpen()
    return this.#commit(input)
  }

  #commit (input: CommitInput): CommitResult {
    const session = this.#liveSession(input.id, input.now)
    if (session === null) return { status: 'gone' }
    if (input.patch !== null) {
      for (const [key, value] of Object.entries(input.patch)) {
        if (value === null) delete session.data[key]
        else setDataKey(session.data, key, value)
        this.#dataChanged(session.id, key)
      }
    }
    seen(session, input.now)
    if (input.rotate !== null && session.cur === input.tokenKey &&
      rotate(session, input.rotate.newKey, input.rotate.box, input.now, input.rotate.unseenWindow)) {
      this.#coreChanged(session.id)
      return { status: 'ok', rotated: true, expiresAt: sessionExpiresAt(session) }
    }
    this.#touched(session.id)
    return { status: 'ok', rotated: false, chain: chainOf(session, input.tokenKey), expiresAt: sessionExpiresAt(session) }
  }

  async migrate (input: MigrateInput): Promise<boolean | LimitResult> {
    if (this.#vault !== null) return await this.#persistently(this.#vault, () => this.#migrate(input))
    this.#assertOpen()
    return this.#migrate(input)
  }

  #migrate (input: MigrateInput): boolean | LimitResult {
    const session = this.#liveSession(input.id, input.now)
    if (session === null || session.sandbox !== input.from || !mayMigrate(session, input.tokenKey)) return false
    let admitted: LimitResult | true = true
    if (input.userId !== undefined && input.userLimit !== undefined) {
      admitted = input.userId === session.userId
        ? { status: 'admitted', ended: [] }
        : this.#admit(input.userId, session.id, input.userLimit, input.now)
      if (admitted.status === 'refused') return admitted
    }
    retireAll(session, input.newKey, input.now, input.retiredUntil)
    session.sandbox = input.to
    session.idleTtl = small(input.idleTtl)
    seen(session, input.now)
    if (input.data !== null) {
      session.data = flatData(input.data)
      this.#dataChanged(session.id, null)
    }
    if (input.userId !== undefined && input.userId !== session.userId) {
      this.#unindexUser(session)
      session.userId = input.userId
      this.#indexUser(input.userId, session.id)
    }
    this.#coreChanged(session.id)
    return admitted
  }

  async destroy (id: string): Promise<boolean> {
    if (this.#vault !== null) return await this.#persistently(this.#vault, () => this.#destroy(id))
    this.#assertOpen()
    return this.#destroy(id)
  }

  #destroy (id: string): boolean {
    const session = this.#sessions.get(id)
    if (session === undefined) return false
    this.#removeSession(session)
    return true
  }

  async revokeUserSession (userId: string, id: string, now: number): Promise<boolean> {
    if (this.#vault !== null) return await this.#persistently(this.#vault, () => this.#revokeUserSession(userId, id, now))
    this.#assertOpen()
    return this.#revokeUserSession(userId, id, now)
  }

  #revokeUserSession (userId: string, id: string, now: number): boolean {
    const session = this.#liveSession(id, now)
    if (session === null || session.userId !== userId) return false
    this.#removeSession(session)
    return true
  }

  async revokeUser (userId: string, now: number, exceptId?: string): Promise<number> {
    if (this.#vault !== null) return await this.#persistently(this.#vault, () => this.#revokeUser(userId, now, exceptId))
    this.#assertOpen()
    return this.#revokeUser(userId, now, exceptId)
  }

  #revokeUser (userId: string, now: number, exceptId?: string): number {
    let ended = 0
    for (const id of this.#userIds(userId)) {
      if (id === exceptId) continue
      const session = this.#sessions.get(id)!
      if (sessionExpiresAt(session) > now) ended++
      this.#removeSession(session)
    }
    return ended
  }

  async listUser (userId: string, now: number): Promise<SessionInfo[]> {
    if (this.#vault !== null) return await this.#persistently(this.#vault, () => this.#listUser(userId, now))
    this.#assertOpen()
    return this.#listUser(userId, now)
  }

  #listUser (userId: string, now: number): SessionInfo[] {
    const infos: SessionInfo[] = []
    for (const id of this.#userIds(userId)) {
      const session = this.#liveSession(id, now)
      if (session === null) continue
      const info: SessionInfo = {
        id,
        sandbox: session.sandbox,
        userId,
        createdAt: createdOf(session),
        lastSeenAt: lastSeenOf(session),
        expiresAt: sessionExpiresAt(session)
      }
      const device = session.data[DEVICE_KEY]
      if (device !== undefined) info.device = device
      infos.push(info)
    }
    return infos
  }

  async kvGet (sandbox: string, key: string, now: number): Promise<string | null> {
    if (this.#vault !== null) return await this.#persistently(this.#vault, () => this.#kvGet(sandbox, key, now))
    this.#assertOpen()
    return this.#kvGet(sandbox, key, now)
  }

  #kvGet (sandbox: string, key: string, now: number): string | null {
    return this.#liveValue(valueKey(sandbox, key), now)?.value ?? null
  }

  async kvSet (sandbox: string, key: string, value: string, ttl: number, now: number): Promise<void> {
    if (this.#vault !== null) return await this.#persistently(this.#vault, () => this.#kvSet(sandbox, key, value, ttl, now))
    this.#assertOpen()
    return this.#kvSet(sandbox, key, value, ttl, now)
  }

  #kvSet (sandbox: string, key: string, value: string, ttl: number, now: number): void {
    const k = valueKey(sandbox, key)
    this.#values.set(k, { value: flat(value), expiresAt: now + ttl })
    this.#valueChanged(k)
  }

  async kvDel (sandbox: string, key: string): Promise<boolean> {
    if (this.#vault !== null) return await this.#persistently(this.#vault, () => this.#kvDel(sandbox, key))
    this.#assertOpen()
    return this.#kvDel(sandbox, key)
  }

  #kvDel (sandbox: string, key: string): boolean {
    const k = valueKey(sandbox, key)
    const deleted = this.#values.delete(k)
    if (deleted) this.#valueChanged(k)
    return deleted
  }

  async kvAdd (sandbox: string, key: string, value: string, ttl: number, now: number): Promise<boolean> {
    if (this.#vault !== null) return await this.#persistently(this.#vault, () => this.#kvAdd(sandbox, key, value, ttl, now))
    this.#assertOpen()
    return this.#kvAdd(sandbox, key, value, ttl, now)
  }

  #kvAdd (sandbox: string, key: string, value: string, ttl: number, now: number): boolean {
    const k = valueKey(sandbox, key)
    if (this.#liveValue(k, now) !== null) return false
    this.#values.set(k, { value: flat(value), expiresAt: now + ttl })
    this.#valueChanged(k)
    return true
  }

  async kvTake (sandbox: string, key: string, now: number): Promise<string | null> {
    if (this.#vault !== null) return await this.#persistently(this.#vault, () => this.#kvTake(sandbox, key, now))
    this.#assertOpen()
    return this.#kvTake(sandbox, key, now)
  }

  #kvTake (sandbox: string, key: string, now: number): string | null {
    const k = valueKey(sandbox, key)
    const entry = this.#liveValue(k, now)
    if (entry === null) return null
    this.#values.delete(k)
    this.#valueChanged(k)
    return entry.value
  }

  async increment (key: string, window: number, now: number): Promise<CounterResult> {
    if (this.#vault !== null) return await this.#persistently(this.#vault, () => this.#increment(key, window, now))
    this.#assertOpen()
    return this.#increment(key, window, now)
  }

  #increment (key: string, window: number, now: number): CounterResult {
    let counter = this.#counters.get(key)
    if (counter === undefined || counter.resetAt <= now) {
      counter = { count: 0, resetAt: now + window }
      this.#counters.set(key, counter)
    }
    counter.count++
    this.#counterChanged(key)
    return { count: counter.count, resetAt: counter.resetAt }
  }

  async resetCounter (key: string): Promise<void> {
    if (this.#vault !== null) return await this.#persistently(this.#vault, () => this.#resetCounter(key))
    this.#assertOpen()
    return this.#resetCounter(key)
  }

  #resetCounter (key: string): void {
    if (this.#counters.delete(key)) this.#counterChanged(key)
  }

  /** Stops the store. With persistence, waits until every change is written and fsynced, then releases the vault. */
  async close (): Promise<void> {
    this.#closing ??= this.#close()
    await this.#closing
  }

  async #close (): Promise<void> {
    if (this.#timer !== null) clearInterval(this.#timer)
    this.#timer = null
    this.#closed = true
    if (this.#vault !== null) {
      if (this.#opening !== null) await this.#opening
      await this.#vault.close()
    }
  }

  /**
   * Runs one operation of a persistent store: waits for the vault to load, runs `body` as one
   * synchronous section, then hands what it changed to the vault and, unless it only refreshed
   * lastSeenAt, waits until that is on disk as the fsync policy promises.
   */
  async #persistently<T> (vault: Vault, body: () => T): Promise<T> {
    if (this.#opening !== null) await this.#opening
    this.#assertOpen()
    const result = body()
    const written = this.#persistChanges(vault)
    if (written !== undefined) await written
    return result
  }

  #assertOpen (): void {
    if (this.#closed) throw xemsError('FST_XEMS_STORE_CLOSED')
    if (this.#startError !== null) throw this.#startError
    if (this.#vault?.failure != null) throw this.#vault.failure
  }

  // ---- persistence ----

  /** Fields of a session changed (journaled and waited for). */
  #coreChanged (id: string): void {
    if (this.#vault !== null) this.#dirtySessions.set(id, Change.Core)
  }

  /**
   * A token was presented for the first time (journaled, not waited for: lost in a crash, the previous
   * token keeps its unseen window instead of the grace period; it never makes a thief of anyone).
   */
  #presented (id: string): void {
    if (this.#vault !== null && (this.#dirtySessions.get(id) ?? Change.Touch) < Change.Presented) this.#dirtySessions.set(id, Change.Presented)
  }

  #touched (id: string): void {
    if (this.#vault !== null && !this.#dirtySessions.has(id)) this.#dirtySessions.set(id, Change.Touch)
  }

  /** A data key of a session changed; `key` null: all its data was replaced. */
  #dataChanged (id: string, key: string | null): void {
    if (this.#vault === null) return
    const keys = this.#dirtyData.get(id)
    if (key === null) this.#dirtyData.set(id, null)
    else if (keys === undefined) this.#dirtyData.set(id, new Set([key]))
    else if (keys !== null) keys.add(key)
  }

  #valueChanged (key: string): void {
    if (this.#vault !== null) this.#dirtyValues.add(key)
  }

  #counterChanged (key: string): void {
    if (this.#vault !== null) this.#dirtyCounters.add(key)
  }

  /** Encodes the resulting state of everything the operation changed and queues it in the journal. */
  #persistChanges (vault: Vault): Promise<void> | undefined {
    if (this.#dirtySessions.size === 0 && this.#dirtyData.size === 0 && this.#dirtyValues.size === 0 && this.#dirtyCounters.size === 0) return undefined
    const entries: string[] = []
    // A change that only refreshed lastSeenAt is not waited for: lost in a crash, it can only make
    // the session expire earlier, never later.
    let durable = this.#dirtyData.size > 0 || this.#dirtyValues.size > 0 || this.#dirtyCounters.size > 0
    // Order matters for replay: a session's core comes before its data.
    for (const [id, change] of this.#dirtySessions) {
      const session = this.#sessions.get(id)
      if (session === undefined) entries.push(encodeSessionRemoved(id))
      else if (change === Change.Touch) entries.push(encodeTouch(id, lastSeenOf(session)))
      else entries.push(encodeCore(coreOf(session)))
      durable ||= change === Change.Core || session === undefined
    }
    for (const [id, keys] of this.#dirtyData) {
      const session = this.#sessions.get(id)
      if (session === undefined) continue
      if (keys === null) entries.push(encodeAllData(id, session.data))
      else for (const key of keys) entries.push(encodeDataKey(id, key, Object.hasOwn(session.data, key) ? session.data[key]! : null))
    }
    for (const key of this.#dirtyValues) {
      const value = this.#values.get(key)
      entries.push(value === undefined ? encodeValueRemoved(key) : encodeValue(key, value.value, value.expiresAt))
    }
    for (const key of this.#dirtyCounters) {
      const counter = this.#counters.get(key)
      entries.push(counter === undefined ? encodeCounterRemoved(key) : encodeCounter(key, counter.count, counter.resetAt))
    }
    this.#dirtySessions.clear()
    this.#dirtyData.clear()
    this.#dirtyValues.clear()
    this.#dirtyCounters.clear()
    return vault.append(entries.join(','), durable)
  }

  /** Replays one vault entry (a resulting state), as loading does. */
  #applyEntry (raw: unknown): void {
    const entry = decodeEntry(raw)
    switch (entry.tag) {
      case 'S': {
        const core = entry.core
        const session = this.#sessions.get(core.id)
        if (session === undefined) {
          const created: MemorySession = {
            id: core.id,
            sandbox: core.sandbox,
            userId: core.userId ?? undefined,
            data: {},
            created: 0,
            seenOffset: 0,
            idleTtl: small(core.idleTtl),
            lifeSpan: 0,
            cur: core.cur,
            seen: core.seen,
            past: core.past.length === 0 ? NO_PAST : core.past
          }
          setTimes(created, core.createdAt, core.lastSeenAt, core.absoluteExpiresAt)
          if (core.userId !== null) this.#indexUser(core.userId, core.id)
          this.#sessions.set(core.id, created)
          break
        }
        session.sandbox = core.sandbox
        setTimes(session, core.createdAt, core.lastSeenAt, core.absoluteExpiresAt)
        session.idleTtl = small(core.idleTtl)
        session.cur = core.cur
        session.seen = core.seen
        session.past = core.past.length === 0 ? NO_PAST : core.past
        if ((core.userId ?? undefined) !== session.userId) {
          this.#unindexUser(session)
          session.userId = undefined
          if (core.userId !== null) {
            session.userId = core.userId
            this.#indexUser(core.userId, core.id)
          }
        }
        break
      }
      case 'T': {
        const session = this.#sessions.get(entry.id)
        if (session !== undefined) seen(session, entry.lastSeenAt)
        break
      }
      case 'D': {
        const session = this.#sessions.get(entry.id)
        if (session !== undefined) this.#forgetSession(session)
        break
      }
      case 'A': {
        const session = this.#sessions.get(entry.id)
        if (session !== undefined) session.data = flatData(entry.data)
        break
      }
      case 'P': {
        const session = this.#sessions.get(entry.id)
        if (session === undefined) break
        if (entry.value === null) delete session.data[entry.key]
        else setDataKey(session.data, entry.key, entry.value)
        break
      }
      case 'V':
        this.#values.set(entry.key, { value: entry.value, expiresAt: entry.expiresAt })
        break
      case 'X':
        this.#values.delete(entry.key)
        break
      case 'C':
        this.#counters.set(entry.key, { count: entry.count, resetAt: entry.resetAt })
        break
      case 'Z':
        this.#counters.delete(entry.key)
        break
    }
  }

  /** After loading: drops what has expired at `now`. */
  #finishLoading (now: number): void {
    this.#dropExpired(now)
  }

  /** Drops everything expired at `now` (after loading, so that it is not written back). */
  #dropExpired (now: number): void {
    for (const session of [...this.#sessions.values()]) if (sessionExpiresAt(session) <= now) this.#forgetSession(session)
    for (const [key, value] of this.#values) if (value.expiresAt <= now) this.#values.delete(key)
    for (const [key, counter] of this.#counters) if (counter.resetAt <= now) this.#counters.delete(key)
  }

  /**
   * The live state as vault entries, for a snapshot; expired entries are left out. The entries of one
   * session come as one item, read in one synchronous step, even when the snapshot is written across
   * several turns of the event loop.
   */
  * #scan (): Generator<string> {
    const now = this.#clock()
    for (const session of this.#sessions.values()) {
      if (sessionExpiresAt(session) <= now) continue
      yield encodeCore(coreOf(session)) + ',' + encodeAllData(session.id, session.data)
    }
    for (const [key, value] of this.#values) {
      if (value.expiresAt > now) yield encodeValue(key, value.value, value.expiresAt)
    }
    for (const [key, counter] of this.#counters) {
      if (counter.resetAt > now) yield encodeCounter(key, counter.count, counter.resetAt)
    }
  }

  #liveSession (id: string, now: number): MemorySession | null {
    const session = this.#sessions.get(id)
    if (session === undefined) return null
    if (sessionExpiresAt(session) <= now) {
      this.#removeSession(session)
      return null
    }
    return session
  }

  #liveValue (key: string, now: number): TimedValue | null {
    const entry = this.#values.get(key)
    if (entry === undefined) return null
    if (entry.expiresAt <= now) {
      this.#values.delete(key)
      this.#valueChanged(key)
      return null
    }
    return entry
  }

  /** Ends a session within an operation (journaled). */
  #removeSession (session: MemorySession): void {
    this.#forgetSession(session)
    this.#coreChanged(session.id)
  }

  /** Drops a session from memory without journaling it (expiry sweeps, replay). */
  #forgetSession (session: MemorySession): void {
    this.#sessions.delete(session.id)
    this.#unindexUser(session)
  }

  /** A copy of the ids of a user's sessions (callers remove sessions while they go through them). */
  #userIds (userId: string): string[] {
    const ids = this.#users.get(userId)
    return ids === undefined ? [] : typeof ids === 'string' ? [ids] : [...ids]
  }

  #indexUser (userId: string, id: string): void {
    const ids = this.#users.get(userId)
    if (ids === undefined || ids === id) this.#users.set(userId, id)
    else if (typeof ids === 'string') this.#users.set(userId, new Set([ids, id]))
    else ids.add(id)
  }

  #unindexUser (session: MemorySession): void {
    if (session.userId === undefined) return
    const ids = this.#users.get(session.userId)
    if (ids === undefined) return
    if (typeof ids === 'string') {
      if (ids === session.id) this.#users.delete(session.userId)
      return
    }
    ids.delete(session.id)
    if (ids.size === 1) this.#users.set(session.userId, ids.values().next().value!)
  }
}

/**
 * Sets a data key as an own property: `__proto__` is a key like any other. (Spread copies keep own
 * properties too; plain objects keep V8's fast layout, where null-prototype ones fall into dictionary mode.)
 */
function setDataKey (data: Record<string, string>, key: string, value: string): void {
  if (key === '__proto__') Object.defineProperty(data, key, { value: flat(value), enumerable: true, writable: true, configurable: true })
  else data[key] = flat(value)
}

/**
 * V8 keeps a string built in pieces (JSON.stringify of a larger value is one) as a tree of fragments;
 * converting it to a number flattens it in place. Kept for hours, a flat string is ~90 bytes smaller
 * per session value (bench/memory.ts --breakdown).
 */
function flat (text: string): string {
  void Number(text)
  return text
}

/**
 * A session's data as it is kept: JSON.parse makes an object with exactly as many in-object slots as it
 * has keys (a literal `{}` reserves four) and flat strings; `__proto__` stays an own key, as JSON.parse
 * defines every key as an own data property.
 */
function flatData (data: Record<string, string>): Record<string, string> {
  return JSON.parse(JSON.stringify(data)) as Record<string, string>
}

function valueKey (sandbox: string, key: string): string {
  return `${sandbox}\u0000${key}`
}

function coreOf (session: MemorySession): SessionCore {
  return {
    id: session.id,
    sandbox: session.sandbox,
    userId: session.userId ?? null,
    createdAt: createdOf(session),
    lastSeenAt: lastSeenOf(session),
    idleTtl: session.idleTtl,
    absoluteExpiresAt: absoluteOf(session),
    cur: session.cur,
    seen: session.seen,
    past: session.past
  }
}

function snapshot (session: MemorySession): StoredSession {
  const copy: StoredSession = {
    id: session.id,
    sandbox: session.sandbox,
    data: { ...session.data },
    createdAt: createdOf(session),
    lastSeenAt: lastSeenOf(session),
    idleTtl: session.idleTtl,
    absoluteExpiresAt: absoluteOf(session)
  }
  if (session.userId !== undefined) copy.userId = session.userId
  return copy
}

/** Validates the persistence options; null without persistence. */
function checkPersistence (options: MemoryStoreOptions): VaultOptions | null {
  const persistence = options.persistence
  if (options.bindToHost !== undefined && typeof options.bindToHost !== 'boolean') throw badOption('bindToHost', 'must be true or false')
  if (options.hostId !== undefined && (typeof options.hostId !== 'string' || options.hostId.trim().length === 0 || options.hostId.length > 256)) {
    throw badOption('hostId', 'must be a non-empty string of at most 256 characters')
  }
  if (options.onWarning !== undefined && typeof options.onWarning !== 'function') throw badOption('onWarning', 'must be a function')
  if (persistence === undefined) {
    if (options.bindToHost !== undefined) throw badOption('bindToHost', 'only applies with option "persistence"')
    if (options.hostId !== undefined) throw badOption('hostId', 'only applies with option "persistence"')
    return null
  }
  if (persistence === null || typeof persistence !== 'object') throw badOption('persistence', 'must be an object { path, secret, fsync }')
  const { path, secret, fsync = 'always', compactAfter = DEFAULT_COMPACT_AFTER } = persistence
  if (typeof path !== 'string' || path.length === 0 || path.includes('\u0000')) {
    throw badOption('persistence.path', 'must be the path of a directory for the vault files')
  }
  let secrets: Buffer[]
  if (Array.isArray(secret)) {
    if (secret.length === 0) {
      throw xemsError('FST_XEMS_BAD_SECRET', ['persistence.secret', 'it must be a 32-byte secret or a non-empty list of them, newest first'])
    }
    secrets = secret.map((value, i) => parseSecret(value, `persistence.secret[${i}]`))
  } else {
    secrets = [parseSecret(secret, 'persistence.secret')]
  }
  if (fsync !== 'always' && fsync !== 'everysec') throw badOption('persistence.fsync', "must be 'always' or 'everysec'")
  if (!Number.isSafeInteger(compactAfter) || compactAfter < 1) throw badOption('persistence.compactAfter', 'must be a positive whole number of bytes')
  const onWarning = options.onWarning ?? ((warning: VaultWarning) => { process.emitWarning(warning.message, { code: warning.code }) })
  return {
    dir: resolvePath(path),
    secrets,
    fsync,
    compactAfter,
    bindToHost: options.bindToHost ?? false,
    ...(options.hostId === undefined ? {} : { hostId: options.hostId }),
    onWarning
  }
}
