import type {
  CommitInput, CommitResult, CounterResult, CreateInput, LimitResult, MigrateInput, PresentedCheck,
  ResolveInput, ResolveResult, SessionInfo, SessionStore
} from '../contract.js'
import { DEVICE_KEY } from '../contract.js'
import { xemsError } from '../../errors.js'
import { commitChain, markPresented, matchToken, mayMigrate, NO_PAST, retireAll, rotate, type TokenMatch } from '../rotation.js'
import { ChangeTracker } from './changes.js'
import { checkOptions, type MemoryStoreOptions } from './options.js'
import { MemoryPersistence } from './persistence.js'
import {
  MemorySession, ownKey, seen, sessionExpiresAt, sessionInfo, small, snapshot, type Counter, type TimedValue
} from './record.js'
import { ShardedMap } from './sharded-map.js'
import { IncrementalSweeper } from './sweeper.js'
import { UserIndex } from './users.js'
import { MemoryValues } from './values.js'

export type { FsyncPolicy, VaultWarning } from '../vault/vault.js'
export type { MemoryStoreOptions, PersistenceOptions, VaultSecret } from './options.js'

const NONE: ResolveResult = Object.freeze({ status: 'none' })
const CURRENT: TokenMatch = Object.freeze({ kind: 'current' })
const RETIRED: CommitResult = Object.freeze({ status: 'retired' })
const RETIRED_TOKEN: ResolveResult = Object.freeze({ status: 'retired' })

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
  readonly #users = new UserIndex((id, now) => this.#liveSession(id, now), (id, session) => { this.#removeSession(id, session) })
  /** The timed values and the counters. */
  readonly #values: MemoryValues
  readonly #sweeper: IncrementalSweeper
  /** The vault and the change tracking, with `persistence`; null without. */
  readonly #persistence: MemoryPersistence | null
  /** What the current operation changed, for the journal; null without persistence. */
  readonly #changes: ChangeTracker | null
  /** Rejects with the start-up error; what `ready()` answers. */
  readonly #ready: Promise<void>
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
    const { sweepInterval, clock, vault } = checkOptions(options)
    const changes = vault === null ? null : new ChangeTracker()
    this.#changes = changes
    const values = this.#values = new MemoryValues(changes)
    this.#sweeper = new IncrementalSweeper([
      {
        map: this.#sessions,
        isExpired: (s: MemorySession, now) => sessionExpiresAt(s) <= now,
        remove: (id, s: MemorySession) => { this.#forgetSession(id, s) }
      },
      { map: values.values, isExpired: (v: TimedValue, now) => v.expiresAt <= now, remove: (k) => values.values.delete(k) },
      { map: values.counters, isExpired: (c: Counter, now) => c.resetAt <= now, remove: (k) => values.counters.delete(k) }
    ])
    if (vault === null) {
      this.#persistence = null
      this.#ready = Promise.resolve()
    } else {
      this.#persistence = new MemoryPersistence(vault, {
        sessions: this.#sessions,
        values: values.values,
        counters: values.counters,
        indexUser: (userId, id) => { this.#users.add(userId, id) },
        unindexUser: (id, session) => { this.#users.remove(id, session) },
        forgetSession: (id, session) => { this.#forgetSession(id, session) }
      }, changes!, clock, () => this.#closed)
      this.#ready = this.#persistence.ready
    }
    this.#timer = setInterval(() => this.sweep(clock()), sweepInterval)
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
    return { sessions: this.#sessions.size, values: this.#values.values.size, counters: this.#values.counters.size }
  }

  /** One bounded sweep step (about 2 ms at most); the store runs it on its own timer. */
  sweep (now: number): number {
    return this.#closed || this.#persistence?.loading === true ? 0 : this.#sweeper.step(now)
  }

  async create (input: CreateInput): Promise<LimitResult | void> {
    if (this.#persistence !== null) return await this.#persistence.run(() => this.#create(input))
    this.#assertOpen()
    return this.#create(input)
  }

  #create (input: CreateInput): LimitResult | void {
    const id = ownKey(input.id)
    let admitted: LimitResult | undefined
    if (input.userId !== undefined && input.userLimit !== undefined) {
      admitted = this.#users.admit(input.userId, id, input.userLimit, input.now)
      if (admitted.status === 'refused') return admitted
    }
    const old = this.#sessions.get(id)
    if (old !== undefined) this.#forgetSession(id, old)
    const session = MemorySession.of(input.sandbox, input.idleTtl, input.userId, input.tokenKey, false, NO_PAST, input.data,
      input.now, input.now, input.absoluteExpiresAt)
    if (input.userId !== undefined) this.#users.add(input.userId, id)
    this.#sessions.set(id, session)
    this.#coreChanged(id)
    this.#dataChanged(id, null)
    return admitted
  }

  async resolve (input: ResolveInput): Promise<ResolveResult> {
    if (this.#persistence !== null) return await this.#persistence.run(() => this.#resolve(input))
    this.#assertOpen()
    return this.#resolve(input)
  }

  #resolve (input: ResolveInput): ResolveResult {
    const session = this.#liveSession(input.id, input.now)
    if (session === null) return NONE
    // The current token (nearly every request) is recognised in the packed record, without decoding its key.
    const match = session.isCurrent(input.tokenKey) ? CURRENT : matchToken(session, input.tokenKey, input.now)
    if (match.kind === 'reused') {
      if (input.revokeOnReuse) this.#removeSession(input.id, session)
      const reused: ResolveResult = { status: 'reused', id: input.id, sandbox: session.sandbox, revoked: input.revokeOnReuse }
      if (session.userId !== undefined) reused.userId = session.userId
      const device = session.dataValue(DEVICE_KEY)
      if (device !== undefined) reused.device = device
      return reused
    }
    if (match.kind === 'stale') {
      this.#removeSession(input.id, session)
      return NONE
    }
    if (match.kind === 'retired') return RETIRED_TOKEN
    if (input.sandbox !== undefined && session.sandbox !== input.sandbox) return NONE
    seen(session, input.now)
    if (match.kind === 'current') {
      const flags = { seen: session.seen, past: session.past }
      if (markPresented(flags, input.now, input.gracePeriod)) {
        session.setFlags(flags.seen, flags.past)
        this.#presented(input.id)
      } else {
        this.#touched(input.id)
      }
      return { status: 'live', session: snapshot(input.id, session) }
    }
    this.#touched(input.id)
    return { status: 'grace', session: snapshot(input.id, session), chain: match.chain }
  }

  async commit (input: CommitInput): Promise<CommitResult> {
    if (this.#persistence !== null) return await this.#persistence.run(() => this.#commit(input))
    this.#assertOpen()
    return this.#commit(input)
  }

  #commit (input: CommitInput): CommitResult {
    const session = this.#liveSession(input.id, input.now)
    if (session === null) return { status: 'gone' }
    // Judged before anything is written: a token retired by a migration since admission writes nothing.
    const current = session.isCurrent(input.tokenKey)
    const chain = current ? [] : commitChain(session, input.tokenKey, input.migrations)
    if (chain === false) return RETIRED
    if (input.patch !== null) {
      session.patchData(input.patch)
      for (const key of Object.keys(input.patch)) this.#dataChanged(input.id, key)
    }
    seen(session, input.now)
    if (input.rotate !== null && current) {
      // On a copy of the state, written back at once: one profile and one repack, not one per field.
      const state = session.rotationState()
      if (rotate(state, input.rotate.newKey, input.rotate.box, input.now, input.rotate.unseenWindow)) {
        session.setRotation(state)
        this.#coreChanged(input.id)
        return { status: 'ok', rotated: true, expiresAt: sessionExpiresAt(session) }
      }
    }
    this.#touched(input.id)
    return { status: 'ok', rotated: false, chain, expiresAt: sessionExpiresAt(session) }
  }

  async migrate (input: MigrateInput): Promise<boolean | LimitResult> {
    if (this.#persistence !== null) return await this.#persistence.run(() => this.#migrate(input))
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
        : this.#users.admit(input.userId, input.id, input.userLimit, input.now)
      if (admitted.status === 'refused') return admitted
    }
    retireAll(session, input.newKey, input.now, input.retiredUntil)
    session.sandbox = input.to
    session.idleTtl = small(input.idleTtl)
    seen(session, input.now)
    if (input.data !== null) {
      session.setData(input.data)
      this.#dataChanged(input.id, null)
    }
    if (input.userId !== undefined && input.userId !== session.userId) {
      this.#users.remove(input.id, session)
      session.userId = input.userId
      this.#users.add(input.userId, input.id)
    }
    this.#coreChanged(input.id)
    return admitted
  }

  async destroy (id: string, presented?: PresentedCheck): Promise<boolean | 'retired'> {
    if (this.#persistence !== null) return await this.#persistence.run(() => this.#destroy(id, presented))
    this.#assertOpen()
    return this.#destroy(id, presented)
  }

  #destroy (id: string, presented: PresentedCheck | undefined): boolean | 'retired' {
    const session = presented?.now === undefined ? this.#sessions.get(id) : this.#liveSession(id, presented.now) ?? undefined
    if (session === undefined) return false
    if (presented !== undefined && commitChain(session, presented.tokenKey, presented.migrations) === false) return 'retired'
    this.#removeSession(id, session)
    return true
  }

  async revokeUserSession (userId: string, id: string, now: number): Promise<boolean> {
    if (this.#persistence !== null) return await this.#persistence.run(() => this.#revokeUserSession(userId, id, now))
    this.#assertOpen()
    return this.#revokeUserSession(userId, id, now)
  }

  #revokeUserSession (userId: string, id: string, now: number): boolean {
    const session = this.#liveSession(id, now)
    if (session === null || session.userId !== userId) return false
    this.#removeSession(id, session)
    return true
  }

  async revokeUser (userId: string, now: number, exceptId?: string): Promise<number> {
    if (this.#persistence !== null) return await this.#persistence.run(() => this.#revokeUser(userId, now, exceptId))
    this.#assertOpen()
    return this.#revokeUser(userId, now, exceptId)
  }

  #revokeUser (userId: string, now: number, exceptId?: string): number {
    let ended = 0
    for (const id of this.#users.ids(userId)) {
      if (id === exceptId) continue
      const session = this.#sessions.get(id)!
      if (sessionExpiresAt(session) > now) ended++
      this.#removeSession(id, session)
    }
    return ended
  }

  async listUser (userId: string, now: number): Promise<SessionInfo[]> {
    if (this.#persistence !== null) return await this.#persistence.run(() => this.#listUser(userId, now))
    this.#assertOpen()
    return this.#listUser(userId, now)
  }

  #listUser (userId: string, now: number): SessionInfo[] {
    const infos: SessionInfo[] = []
    for (const id of this.#users.ids(userId)) {
      const session = this.#liveSession(id, now)
      if (session !== null) infos.push(sessionInfo(id, session, userId))
    }
    return infos
  }

  kvGet (sandbox: string, key: string, now: number): Promise<string | null> {
    return this.#run(() => this.#values.get(sandbox, key, now))
  }

  kvSet (sandbox: string, key: string, value: string, ttl: number, now: number): Promise<void> {
    return this.#run(() => { this.#values.set(sandbox, key, value, ttl, now) })
  }

  kvDel (sandbox: string, key: string): Promise<boolean> {
    return this.#run(() => this.#values.delete(sandbox, key))
  }

  kvAdd (sandbox: string, key: string, value: string, ttl: number, now: number): Promise<boolean> {
    return this.#run(() => this.#values.add(sandbox, key, value, ttl, now))
  }

  kvTake (sandbox: string, key: string, now: number): Promise<string | null> {
    return this.#run(() => this.#values.take(sandbox, key, now))
  }

  increment (key: string, window: number, now: number): Promise<CounterResult> {
    return this.#run(() => this.#values.increment(key, window, now))
  }

  resetCounter (key: string): Promise<void> {
    return this.#run(() => { this.#values.resetCounter(key) })
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
    if (this.#persistence !== null) await this.#persistence.close()
  }

  /** Runs `body` as one operation (the session methods inline this, to allocate no closure without persistence). */
  async #run<T> (body: () => T): Promise<T> {
    if (this.#persistence !== null) return await this.#persistence.run(body)
    this.#assertOpen()
    return body()
  }

  /** Without persistence (with it, `MemoryPersistence.run` checks). */
  #assertOpen (): void {
    if (this.#closed) throw xemsError('FST_XEMS_STORE_CLOSED')
  }

  // ---- changes, noted for the journal with persistence ----

  /** Fields of a session changed (journaled and waited for). */
  #coreChanged (id: string): void {
    if (this.#changes !== null) this.#changes.core(id)
  }

  /** A token was presented for the first time (journaled, not waited for). */
  #presented (id: string): void {
    if (this.#changes !== null) this.#changes.presented(id)
  }

  #touched (id: string): void {
    if (this.#changes !== null) this.#changes.touched(id)
  }

  /** A data key of a session changed; `key` null: all its data was replaced. */
  #dataChanged (id: string, key: string | null): void {
    if (this.#changes !== null) this.#changes.data(id, key)
  }

  #liveSession (id: string, now: number): MemorySession | null {
    const session = this.#sessions.get(id)
    if (session === undefined) return null
    if (sessionExpiresAt(session) <= now) {
      this.#removeSession(id, session)
      return null
    }
    return session
  }

  /** Ends a session within an operation (journaled). */
  #removeSession (id: string, session: MemorySession): void {
    this.#forgetSession(id, session)
    this.#coreChanged(id)
  }

  /** Drops a session from memory without journaling it (expiry sweeps, replay). */
  #forgetSession (id: string, session: MemorySession): void {
    this.#sessions.delete(id)
    this.#users.remove(id, session)
  }
}
