import { xemsError, type XemsError } from '../../errors.js'
import { CHUNK_CHARS, CLOSED_FILE, closedAad, describeIoError, report } from './files.js'
import { GenerationFiles, writeAll, type Journal } from './generation.js'
import type { VaultKeys } from './keys.js'
import type { VaultOptions, VaultWarning } from './vault.js'

const EVERYSEC_MS = 1000

interface Waiter {
  resolve: () => void
  reject: (err: Error) => void
}

/**
 * Writing a vault while the store runs: appends grouped into one journal record per turn of the
 * event loop (group commit), fsync as the policy says, and compaction: past the threshold a new
 * journal begins and the snapshot is written beside it. Files are replaced only through a temp file
 * and a rename, and only while the store holds the directory's lease.
 */
export class VaultWriter {
  readonly #options: VaultOptions
  readonly #keys: VaultKeys
  /** False once another store has taken the directory's lease. */
  readonly #isLocked: () => boolean
  /** The files of the generations written; set by start(). */
  #files: GenerationFiles | null = null
  #scan: (() => Iterator<string>) | null = null
  #journal: Journal | null = null
  #pending: string[] = []
  #waiters: Waiter[] = []
  #loop: Promise<void> | null = null
  #snapshotTask: Promise<void> | null = null
  #rotateAt = 0
  #rotateDue = false
  #syncDue = false
  #unsynced = false
  #timer: NodeJS.Timeout | null = null
  #closing = false
  #failure: XemsError | null = null

  constructor (options: VaultOptions, keys: VaultKeys, isLocked: () => boolean) {
    this.#options = options
    this.#keys = keys
    this.#isLocked = isLocked
  }

  /** Set once a write or fsync failed: the store then refuses every operation until restarted. */
  get failure (): XemsError | null {
    return this.#failure
  }

  /**
   * Begins generation `generation` of vault `vaultId` (everything read): a fresh journal, the snapshot
   * of `scan()` beside it, the older journals and leftover temp files removed.
   */
  async start (generation: number, vaultId: Buffer, scan: () => Iterator<string>): Promise<void> {
    const files = new GenerationFiles(this.#options.dir, this.#keys, vaultId, () => { this.#assertLocked() })
    this.#files = files
    this.#scan = scan
    this.#journal = await files.createJournal(generation)
    const bytes = await files.writeSnapshot(generation, scan())
    this.#rotateAt = Math.max(this.#options.compactAfter, bytes)
    await files.removeObsolete(generation, true)
  }

  /** With fsync 'everysec': fsyncs what was written, once a second. */
  startSyncTimer (): void {
    if (this.#options.fsync !== 'everysec') return
    this.#timer = setInterval(() => {
      if (!this.#unsynced) return
      this.#syncDue = true
      this.#kick()
    }, EVERYSEC_MS)
    this.#timer.unref()
  }

  /** After a start that failed: closes the journal begun, if any. */
  async discard (): Promise<void> {
    await this.#journal?.handle.close().catch(() => {})
    this.#journal = null
  }

  /**
   * Queues the entries one operation changed (comma-separated encoded entries), to be written with
   * everything else queued in the same turn of the event loop. With `durable`, the promise resolves
   * once they are on disk as the fsync policy promises (after fsync for 'always', after the write
   * for 'everysec'); without it, undefined.
   */
  append (entries: string, durable: boolean): Promise<void> | undefined {
    if (this.#failure !== null) return durable ? Promise.reject(this.#failure) : undefined
    this.#pending.push(entries)
    const done = durable ? new Promise<void>((resolve, reject) => { this.#waiters.push({ resolve, reject }) }) : undefined
    this.#kick()
    return done
  }

  /** Writes and fsyncs what is queued, waits for a compaction in progress, and writes the close marker. */
  async close (): Promise<void> {
    this.#closing = true
    if (this.#timer !== null) clearInterval(this.#timer)
    this.#timer = null
    while (this.#loop !== null || this.#snapshotTask !== null) {
      await this.#loop
      await this.#snapshotTask
    }
    const journal = this.#journal
    this.#journal = null
    if (journal === null) return
    if (this.#failure === null && this.#unsynced) {
      await journal.handle.datasync().catch((err: unknown) => { this.fail(err) })
    }
    await journal.handle.close().catch(() => {})
    if (this.#failure === null) {
      // A clean close says where the run ended. Without it, or when the journal no longer matches it,
      // the next start warns: the process crashed, or the journal was cut or rolled back.
      const marker = this.#keys.sealer.keyring.seal(
        JSON.stringify({ v: 1, generation: journal.generation, records: journal.seq }), closedAad(journal.header)
      )
      await this.#files!.writeAtomically(CLOSED_FILE, async (handle) => { await writeAll(handle, marker) })
        .catch((err: unknown) => {
          this.#warn({
            code: 'FST_XEMS_VAULT_WRITE_FAILED',
            message: `fastify-xems: the vault close marker could not be written (${describeIoError(err)})` +
              '; the next start will report an unclean close',
            file: this.#options.dir
          })
        })
    }
  }

  #kick (): void {
    if (this.#loop !== null || this.#failure !== null) return
    this.#loop = new Promise<void>((resolve) => { setImmediate(resolve) })
      .then(async () => { await this.#work() })
      .finally(() => {
        this.#loop = null
        if (this.#pending.length > 0 || this.#rotateDue || (this.#syncDue && this.#unsynced)) this.#kick()
      })
  }

  /** The writer: one step at a time, so journal writes, fsyncs and journal switches never overlap. */
  async #work (): Promise<void> {
    try {
      while (this.#failure === null && this.#journal !== null) {
        if (this.#pending.length > 0) {
          await this.#writeBatch(this.#journal)
        } else if (this.#syncDue && this.#unsynced) {
          this.#syncDue = false
          this.#unsynced = false
          await this.#journal.handle.datasync()
        } else if (this.#rotateDue) {
          this.#rotateDue = false
          await this.#rotate(this.#journal)
        } else {
          break
        }
      }
    } catch (err) {
      this.fail(err)
    }
  }

  /** Group commit: everything queued becomes one write (and one fsync for 'always'). */
  async #writeBatch (journal: Journal): Promise<void> {
    const ops = this.#pending
    const waiters = this.#waiters
    this.#pending = []
    this.#waiters = []
    try {
      this.#assertLocked()
      const frames: Buffer[] = []
      let group: string[] = []
      let chars = 0
      const close = (): void => {
        frames.push(this.#files!.seal(`[${group.join(',')}]`, journal.header, journal.seq++))
        group = []
        chars = 0
      }
      for (const op of ops) {
        // One operation's entries always share a record, so a torn write never splits an operation.
        if (chars > 0 && chars + op.length > CHUNK_CHARS) close()
        group.push(op)
        chars += op.length
      }
      close()
      const data = frames.length === 1 ? frames[0]! : Buffer.concat(frames)
      await writeAll(journal.handle, data)
      journal.bytes += data.length
      if (this.#options.fsync === 'always') await journal.handle.datasync()
      else this.#unsynced = true
    } catch (err) {
      const failure = this.fail(err)
      for (const waiter of waiters) waiter.reject(failure)
      return
    }
    for (const waiter of waiters) waiter.resolve()
    if (journal.bytes >= this.#rotateAt && this.#snapshotTask === null && !this.#closing) this.#rotateDue = true
  }

  /**
   * Starts a compaction: the current journal is fsynced and closed, the next one created, and the
   * snapshot of the next generation written beside it while new writes go to the new journal. Until
   * that snapshot has landed, start-up replays the old snapshot and both journals; entries are states,
   * not operations, so replaying what the new snapshot already holds changes nothing.
   */
  async #rotate (old: Journal): Promise<void> {
    this.#assertLocked()
    await old.handle.datasync()
    this.#unsynced = false
    let next: Journal
    try {
      next = await this.#files!.createJournal(old.generation + 1)
    } catch (err) {
      this.#rotateAt = old.bytes + this.#options.compactAfter
      this.#warn({
        code: 'FST_XEMS_VAULT_COMPACTION_FAILED',
        message: `fastify-xems: vault compaction could not start (${describeIoError(err)}); the journal goes on and it will be tried again`,
        file: this.#options.dir
      })
      return
    }
    this.#journal = next
    await old.handle.close()
    const generation = next.generation
    this.#snapshotTask = this.#files!.writeSnapshot(generation, this.#scan!())
      .then(async (bytes) => {
        this.#rotateAt = Math.max(this.#options.compactAfter, bytes)
        await this.#files!.removeObsolete(generation, false).catch((err: unknown) => {
          this.#warn({
            code: 'FST_XEMS_VAULT_COMPACTION_FAILED',
            message: `fastify-xems: old vault journals could not be removed (${describeIoError(err)})` +
              '; they will be removed at the next start',
            file: this.#options.dir
          })
        })
      }, (err: unknown) => {
        this.#rotateAt = (this.#journal?.bytes ?? 0) + this.#options.compactAfter
        this.#warn({
          code: 'FST_XEMS_VAULT_COMPACTION_FAILED',
          message: `fastify-xems: the vault snapshot could not be written (${describeIoError(err)})` +
            '; the journals hold everything and it will be tried again',
          file: this.#options.dir
        })
      })
      .finally(() => {
        this.#snapshotTask = null
        if (!this.#closing && this.#journal !== null && this.#journal.bytes >= this.#rotateAt) {
          this.#rotateDue = true
          this.#kick()
        }
      })
  }

  /** Nothing is written or removed unless this store still holds the directory's lease. */
  #assertLocked (): void {
    if (!this.#isLocked()) {
      throw xemsError('FST_XEMS_VAULT_LOCK_LOST', [this.#options.dir, 'another store holds it now'])
    }
  }

  /** Stops writing for good: every queued and later write fails with FST_XEMS_STORE_UNAVAILABLE. */
  fail (err: unknown): XemsError {
    if (this.#failure === null) {
      this.#failure = xemsError('FST_XEMS_STORE_UNAVAILABLE', [], { cause: err })
      this.#warn({
        code: 'FST_XEMS_VAULT_WRITE_FAILED',
        message: `fastify-xems: writing the vault failed (${describeIoError(err)})` +
          '; the store refuses every operation until it is restarted',
        file: this.#options.dir
      })
      const waiters = this.#waiters
      this.#waiters = []
      this.#pending = []
      for (const waiter of waiters) waiter.reject(this.#failure)
      if (this.#timer !== null) clearInterval(this.#timer)
      this.#timer = null
    }
    return this.#failure
  }

  #warn (warning: VaultWarning): void {
    report(this.#options.onWarning, warning)
  }
}
