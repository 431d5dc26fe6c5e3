import { xemsError } from '../../errors.js'
import { Vault, type VaultOptions } from '../vault/vault.js'
import type { ChangeTracker } from './changes.js'
import type { MemoryState } from './record.js'
import { vaultStateOf } from './vault-state.js'

/**
 * The persistence of a MemoryStore (`persistence` option): the vault it is loaded from at start and
 * journaled to, and the changes of the operation that runs. The store owns one and runs every
 * operation through `run`.
 */
export class MemoryPersistence {
  /** What the current operation changes; the store notes them as it goes. */
  readonly #changes: ChangeTracker
  /** Rejects with the start-up error; what the store's `ready()` answers. */
  readonly ready: Promise<void>
  readonly #state: MemoryState
  readonly #vault: Vault
  readonly #isClosed: () => boolean
  /** Settles (never rejects) when loading ends; null once it has. */
  #opening: Promise<void> | null = null
  #startError: unknown = null

  /** Starts loading `state` from the vault at once; the store notes its changes in `changes`. */
  constructor (options: VaultOptions, state: MemoryState, changes: ChangeTracker, clock: () => number, isClosed: () => boolean) {
    this.#state = state
    this.#changes = changes
    this.#isClosed = isClosed
    this.#vault = new Vault(options)
    this.ready = this.#vault.open(vaultStateOf(state, clock))
    this.#opening = this.ready.then(() => { this.#opening = null }, (err: unknown) => {
      this.#startError = err
      this.#opening = null
    })
  }

  /** True while the vault is being loaded. */
  get loading (): boolean {
    return this.#opening !== null
  }

  /**
   * Runs one operation of a persistent store: waits for the vault to load, runs `body` as one
   * synchronous section, then hands what it changed to the vault and, unless it only refreshed
   * lastSeenAt, waits until that is on disk as the fsync policy promises.
   */
  async run<T> (body: () => T): Promise<T> {
    if (this.#opening !== null) await this.#opening
    this.#assertOpen()
    const result = body()
    const written = this.#changes.persist(this.#state, this.#vault)
    if (written !== undefined) await written
    return result
  }

  /** Waits for loading to end, then until every change is written and fsynced, and releases the vault. */
  async close (): Promise<void> {
    if (this.#opening !== null) await this.#opening
    await this.#vault.close()
  }

  #assertOpen (): void {
    if (this.#isClosed()) throw xemsError('FST_XEMS_STORE_CLOSED')
    if (this.#startError !== null) throw this.#startError
    if (this.#vault.failure != null) throw this.#vault.failure
  }
}
