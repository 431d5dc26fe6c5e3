import { mkdir } from 'node:fs/promises'
import { XemsError, xemsError } from '../../errors.js'
import { describeIoError } from './files.js'
import { newVaultId } from './format.js'
import { VaultKeys } from './keys.js'
import { VaultLoader } from './load.js'
import { acquireVaultLock, type VaultLock } from './lock.js'
import { VaultWriter } from './write.js'

/**
 * The vault: encrypted, crash-safe persistence for an in-memory state, as a snapshot plus an
 * append-only journal, in one directory:
 *
 * - `xems.snapshot`: the state at the start of generation N (header, meta record, chunks of entries,
 *   end record), replaced only by a complete new one (temp file, fsync, rename, fsync of the directory);
 * - `xems.journal.N`: what changed since generation N began, one sealed record per group commit;
 * - `xems.lock.<n>`: the lease of the store that has the vault open, refreshed every second (lock.ts).
 *
 * Start-up replays the snapshot and every journal from its generation on, then compacts at once
 * (fresh journal, new snapshot under the first secret, without expired entries), so old journals,
 * torn tails and old keys never outlive a successful start. While running, a journal that grows past
 * the threshold is closed, a new one begins, and the snapshot is written beside it while writes go on.
 *
 * Loading is in load.ts, writing and compaction in write.ts (the files of a generation in
 * generation.ts), file names in files.ts, the format in format.ts, the keys in keys.ts, the lease in lock.ts.
 */

export type FsyncPolicy = 'always' | 'everysec'

/** Something worth a log line that did not stop the store. Never holds a secret, a token or data. */
export interface VaultWarning {
  code: 'FST_XEMS_VAULT_TORN_TAIL' | 'FST_XEMS_VAULT_UNCLEAN' | 'FST_XEMS_VAULT_COMPACTION_FAILED' | 'FST_XEMS_VAULT_WRITE_FAILED'
  message: string
  file?: string | undefined
  offset?: number | undefined
  bytes?: number | undefined
}

export interface VaultOptions {
  /** Absolute path of the vault directory. */
  dir: string
  /** 32-byte secrets, newest first. */
  secrets: Buffer[]
  fsync: FsyncPolicy
  /** Journal bytes after which a compaction starts (at least the size of the last snapshot). */
  compactAfter: number
  bindToHost: boolean
  hostId?: string | undefined
  onWarning: (warning: VaultWarning) => void
  /** Lease timings of the directory lock (default 1 s refresh, 10 s until stale); for tests. */
  lease?: { refreshMs: number, staleMs: number } | undefined
}

/** What the vault asks of the state it keeps. */
export interface VaultState {
  /** Applies one entry read back: snapshot entries first, then journal entries in order. Throws on a malformed one. */
  apply: (entry: unknown) => void
  /** Everything has been read; called once, before the first snapshot is taken. */
  loaded: () => void
  /** The live state as encoded put entries. The vault may iterate it across event-loop turns. */
  scan: () => Iterator<string>
}

export class Vault {
  readonly #options: VaultOptions
  readonly #keys: VaultKeys
  readonly #writer: VaultWriter
  #lock: VaultLock | null = null
  #closed: Promise<void> | null = null

  constructor (options: VaultOptions) {
    this.#options = options
    this.#keys = new VaultKeys({
      secrets: options.secrets, bindToHost: options.bindToHost, ...(options.hostId === undefined ? {} : { hostId: options.hostId })
    })
    this.#writer = new VaultWriter(options, this.#keys, () => this.#lock === null || this.#lock.held())
  }

  /** Set once a write or fsync failed: the store then refuses every operation until restarted. */
  get failure (): XemsError | null {
    return this.#writer.failure
  }

  /**
   * Loads the vault into `state` and compacts it. Nothing is written before everything has been read
   * and authenticated: a vault that does not open is left exactly as it was.
   */
  async open (state: VaultState): Promise<void> {
    const { dir } = this.#options
    try {
      await mkdir(dir, { recursive: true, mode: 0o700 })
      this.#lock = await acquireVaultLock(dir, {
        ...this.#options.lease,
        // Lost (a later generation exists): stop writing at once; the store answers 503 until restarted.
        onLost: (err) => { this.#writer.fail(err) }
      })
      await this.#keys.prepare()
      const loader = new VaultLoader(this.#options, this.#keys)
      const nextGeneration = await loader.load(state)
      state.loaded()
      await this.#writer.start(nextGeneration, loader.vaultId ?? newVaultId(), () => state.scan())
      await this.#lock.settle()
    } catch (err) {
      await this.#writer.discard()
      await this.#lock?.release({ discard: true })
      this.#lock = null
      if (err instanceof XemsError) throw err
      throw xemsError('FST_XEMS_VAULT_IO', [dir, describeIoError(err)], { cause: err })
    }
    this.#writer.startSyncTimer()
  }

  /**
   * Queues the entries one operation changed (comma-separated encoded entries), to be written with
   * everything else queued in the same turn of the event loop. With `durable`, the promise resolves
   * once they are on disk as the fsync policy promises (after fsync for 'always', after the write
   * for 'everysec'); without it, undefined.
   */
  append (entries: string, durable: boolean): Promise<void> | undefined {
    return this.#writer.append(entries, durable)
  }

  /** Writes and fsyncs what is queued, waits for a compaction in progress, and releases the directory. */
  async close (): Promise<void> {
    this.#closed ??= this.#close()
    await this.#closed
  }

  async #close (): Promise<void> {
    await this.#writer.close()
    await this.#lock?.release()
    this.#lock = null
  }
}
