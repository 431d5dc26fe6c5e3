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
import { MemorySession, ownKey, seen, sessionExpiresAt, small, snapshot, type Counter, type TimedValue } from './record.js'
import { MemorySessions } from './sessions.js'
import { IncrementalSweeper } from './sweeper.js'
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
  /** The sessions, by id and by user. */
  readonly #sessions: MemorySessions
  /** The timed values and the counters. */
  readonly #values: MemoryValues
  readonly #sweeper: IncrementalSweeper
  /** The vault and the change tracking, with `persistence`; null without. */
  readonly #persistence: MemoryPersistence | null
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
    const sessions = this.#sessions = new MemorySessions(changes)
    const values = this.#values = new MemoryValues(changes)
    this.#sweeper = new IncrementalSweeper([
      {
        map: sessions.byId,
        isExpired: (s: MemorySession, now) => sessionExpiresAt(s) <= now,
        remove: (id, s: MemorySession) => { sessions.forget(id, s) }
      },
      { map: values.values, isExpired: (v: TimedValue, now) => v.expiresAt <= now, remove: (k) => values.values.delete(k) },
      { map: values.counters, isExpired: (c: Counter, now) => c.resetAt <= now, remove: (k) => values.counters.delete(k) }
    ])
    if (vault === null) {
      this.#persistence = null
      this.#ready = Promise.resolve()
    } else {
      this.#persistence = new MemoryPersistence(vault, {
        sessions: sessions.byId,
        values: values.values,
        counters: values.counters,
        indexUser: (userId, id) => { sessions.users.add(userId, id) },
        unindexUser: (id, session) => { sessions.users.remove(id, session) },
        forgetSession: (id, session) => { sessions.forget(id, session) }
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
    return { sessions: this.#sessions.byId.size, values: this.#values.values.size, counters: this.#values.counters.size }
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
      admitted = this.#sessions.users.admit(input.userId, id, input.userLimit, input.now)
      if (admitted.status === 'refused') return admitted
    }
    const old = this.#sessions.byId.get(id)
    if (old !== undefined) this.#sessions.forget(id, old)
    const session = MemorySession.of(input.sandbox, input.idleTtl, input.userId, input.tokenKey, false, NO_PAST, input.data,
      input.now, input.now, input.absoluteExpiresAt)
    if (input.userId !== undefined) this.#sessions.users.add(input.userId, id)
    this.#sessions.byId.set(id, session)
    this.#sessions.coreChanged(id)
    this.#sessions.dataChanged(id, null)
    return admitted
  }

  async resolve (input: ResolveInput): Promise<ResolveResult> {
    if (this.#persistence !== null) return await this.#persistence.run(() => this.#resolve(input))
    this.#assertOpen()
    return this.#resolve(input)
  }

  #resolve (input: ResolveInput): ResolveResult {
    const session = this.#sessions.live(input.id, input.now)
    if (session === null) return NONE
    // The current token (nearly every request) is recognised in the packed record, without decoding its key.
    const match = session.isCurrent(input.tokenKey) ? CURRENT : matchToken(session, input.tokenKey, input.now)
    if (match.kind === 'reused') {
      if (input.revokeOnReuse) this.#sessions.remove(input.id, session)
      const reused: ResolveResult = { status: 'reused', id: input.id, sandbox: session.sandbox, revoked: input.revokeOnReuse }
      if (session.userId !== undefined) reused.userId = session.userId
      const device = session.dataValue(DEVICE_KEY)
      if (device !== undefined) reused.device = device
      return reused
    }
    if (match.kind === 'stale') {
      this.#sessions.remove(input.id, session)
      return NONE
    }
    if (match.kind === 'retired') return RETIRED_TOKEN
    if (input.sandbox !== undefined && session.sandbox !== input.sandbox) return NONE
    seen(session, input.now)
    if (match.kind === 'current') {
      const flags = { seen: session.seen, past: session.past }
      if (markPresented(flags, input.now, input.gracePeriod)) {
        session.setFlags(flags.seen, flags.past)
        this.#sessions.presented(input.id)
      } else {
        this.#sessions.touched(input.id)
      }
      return { status: 'live', session: snapshot(input.id, session) }
    }
    this.#sessions.touched(input.id)
    return { status: 'grace', session: snapshot(input.id, session), chain: match.chain }
  }

  async commit (input: CommitInput): Promise<CommitResult> {
    if (this.#persistence !== null) return await this.#persistence.run(() => this.#commit(input))
    this.#assertOpen()
    return this.#commit(input)
  }

  #commit (input: CommitInput): CommitResult {
    const session = this.#sessions.live(input.id, input.now)
    if (session === null) return { status: 'gone' }
    // Judged before anything is written: a token retired by a migration since admission writes nothing.
    const current = session.isCurrent(input.tokenKey)
    const chain = current ? [] : commitChain(session, input.tokenKey, input.migrations)
    if (chain === false) return RETIRED
    if (input.patch !== null) {
      session.patchData(input.patch)
      for (const key of Object.keys(input.patch)) this.#sessions.dataChanged(input.id, key)
    }
    seen(session, input.now)
    if (input.rotate !== null && current) {
      // On a copy of the state, written back at once: one profile and one repack, not one per field.
      const state = session.rotationState()
      if (rotate(state, input.rotate.newKey, input.rotate.box, input.now, input.rotate.unseenWindow)) {
        session.setRotation(state)
        this.#sessions.coreChanged(input.id)
        return { status: 'ok', rotated: true, expiresAt: sessionExpiresAt(session) }
      }
    }
    this.#sessions.touched(input.id)
    return { status: 'ok', rotated: false, chain, expiresAt: sessionExpiresAt(session) }
  }

  async migrate (input: MigrateInput): Promise<boolean | LimitResult> {
    if (this.#persistence !== null) return await this.#persistence.run(() => this.#migrate(input))
    this.#assertOpen()
    return this.#migrate(input)
  }

  #migrate (input: MigrateInput): boolean | LimitResult {
    const session = this.#sessions.live(input.id, input.now)
    if (session === null || session.sandbox !== input.from || !mayMigrate(session, input.tokenKey)) return false
    let admitted: LimitResult | true = true
    if (input.userId !== undefined && input.userLimit !== undefined) {
      admitted = input.userId === session.userId
        ? { status: 'admitted', ended: [] }
        : this.#sessions.users.admit(input.userId, input.id, input.userLimit, input.now)
      if (admitted.status === 'refused') return admitted
    }
    retireAll(session, input.newKey, input.now, input.retiredUntil)
    session.sandbox = input.to
    session.idleTtl = small(input.idleTtl)
    seen(session, input.now)
    if (input.data !== null) {
      session.setData(input.data)
      this.#sessions.dataChanged(input.id, null)
    }
    if (input.userId !== undefined && input.userId !== session.userId) {
      this.#sessions.users.remove(input.id, session)
      session.userId = input.userId
      this.#sessions.users.add(input.userId, input.id)
    }
    this.#sessions.coreChanged(input.id)
    return admitted
  }

  async destroy (id: string, presented?: PresentedCheck): Promise<boolean | 'retired'> {
    if (this.#persistence !== null) return await this.#persistence.run(() => this.#destroy(id, presented))
    this.#assertOpen()
    return this.#destroy(id, presented)
  }

  #destroy (id: string, presented: PresentedCheck | undefined): boolean | 'retired' {
    const session = presented?.now === undefined ? this.#sessions.byId.get(id) : this.#sessions.live(id, presented.now) ?? undefined
    if (session === undefined) return false
    if (presented !== undefined && commitChain(session, presented.tokenKey, presented.migrations) === false) return 'retired'
    this.#sessions.remove(id, session)
    return true
  }

  async revokeUserSession (userId: string, id: string, now: number): Promise<boolean> {
    if (this.#persistence !== null) return await this.#persistence.run(() => this.#sessions.revokeUserSession(userId, id, now))
    this.#assertOpen()
    return this.#sessions.revokeUserSession(userId, id, now)
  }

  async revokeUser (userId: string, now: number, exceptId?: string): Promise<number> {
    if (this.#persistence !== null) return await this.#persistence.run(() => this.#sessions.revokeUser(userId, now, exceptId))
    this.#assertOpen()
    return this.#sessions.revokeUser(userId, now, exceptId)
  }

  async listUser (userId: string, now: number): Promise<SessionInfo[]> {
    if (this.#persistence !== null) return await this.#persistence.run(() => this.#sessions.listUser(userId, now))
    this.#assertOpen()
    return this.#sessions.listUser(userId, now)
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
}
