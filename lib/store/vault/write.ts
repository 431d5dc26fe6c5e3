import { open, readdir, rename, unlink, type FileHandle } from 'node:fs/promises'
import { join } from 'node:path'
import { xemsError, type XemsError } from '../../errors.js'
import { encodeHeader, frame, recordAad, type VaultFileKind } from './format.js'
import { CHUNK_CHARS, CLOSED_FILE, closedAad, describeIoError, JOURNAL_FILE, journalFile, report, SNAPSHOT_FILE, TEMP_SUFFIX } from './files.js'
import type { VaultKeys } from './keys.js'
import type { VaultOptions, VaultWarning } from './vault.js'

const EVERYSEC_MS = 1000

interface Journal {
  generation: number
  handle: FileHandle
  header: Buffer
  seq: number
  bytes: number
}

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
  #vaultId: Buffer | null = null
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
    this.#vaultId = vaultId
    this.#scan = scan
    this.#journal = await this.#createJournal(generation)
    const bytes = await this.#writeSnapshot(generation, scan())
    this.#rotateAt = Math.max(this.#options.compactAfter, bytes)
    await this.#removeObsolete(generation, true)
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
      const marker = this.#keys.sealer.keyring.seal(JSON.stringify({ v: 1, generation: journal.generation, records: journal.seq }), closedAad(journal.header))
      await this.#writeAtomically(CLOSED_FILE, async (handle) => { await writeAll(handle, marker) })
        .catch((err: unknown) => { this.#warn({ code: 'FST_XEMS_VAULT_WRITE_FAILED', message: `fastify-xems: the vault close marker could not be written (${describeIoError(err)}); the next start will report an unclean close`, file: this.#options.dir }) })
    }
  }

  #headerFor (kind: VaultFileKind, generation: number): Buffer {
    return encodeHeader({ kind, generation, vaultId: this.#vaultId!, hostTag: this.#keys.sealer.hostTag })
  }

  #seal (plain: string, header: Buffer, seq: number): Buffer {
    return frame(this.#keys.sealer.keyring.seal(plain, recordAad(header, seq)))
  }

  /** Creates journal `generation` complete with its header record (temp file, fsync, rename, fsync dir). */
  async #createJournal (generation: number): Promise<Journal> {
    const header = this.#headerFor('journal', generation)
    const meta = this.#seal(JSON.stringify({ v: 1, kind: 'journal', generation, createdAt: Date.now() }), header, 0)
    const name = journalFile(generation)
    await this.#writeAtomically(name, async (handle) => {
      await writeAll(handle, Buffer.concat([header, meta]))
    })
    const handle = await open(join(this.#options.dir, name), 'a')
    return { generation, handle, header, seq: 1, bytes: header.length + meta.length }
  }

  /** Writes snapshot `generation` from `scan`, yielding to the event loop between chunks. Returns its size. */
  async #writeSnapshot (generation: number, scan: Iterator<string>): Promise<number> {
    const header = this.#headerFor('snapshot', generation)
    let bytes = 0
    await this.#writeAtomically(SNAPSHOT_FILE, async (handle) => {
      let seq = 0
      const put = async (plain: string): Promise<void> => {
        const framed = this.#seal(plain, header, seq++)
        await writeAll(handle, framed)
        bytes += framed.length
      }
      await writeAll(handle, header)
      bytes += header.length
      await put(JSON.stringify({ v: 1, kind: 'snapshot', generation, createdAt: Date.now() }))
      let chunk: string[] = []
      let chars = 0
      let chunks = 0
      let entries = 0
      for (let next = scan.next(); next.done !== true; next = scan.next()) {
        chunk.push(next.value)
        chars += next.value.length
        entries++
        if (chars >= CHUNK_CHARS) {
          await put(`[${chunk.join(',')}]`)
          chunks++
          chunk = []
          chars = 0
        }
      }
      if (chunk.length > 0) {
        await put(`[${chunk.join(',')}]`)
        chunks++
      }
      await put(JSON.stringify({ end: chunks, entries }))
    })
    return bytes
  }

  /** Writes `name` through a temp file: write, fsync, rename over, fsync the directory. */
  async #writeAtomically (name: string, write: (handle: FileHandle) => Promise<void>): Promise<void> {
    const { dir } = this.#options
    const temp = join(dir, name + TEMP_SUFFIX)
    // A leftover (or planted) temp file is removed, and the new one must not exist: a symlink put
    // there is never followed.
    await unlink(temp).catch(() => {})
    const handle = await open(temp, 'wx', 0o600)
    let written = false
    try {
      await write(handle)
      await handle.sync()
      written = true
    } finally {
      await handle.close()
      if (!written) await unlink(temp).catch(() => {})
    }
    this.#assertLocked()
    await rename(temp, join(dir, name))
    await fsyncDirectory(dir)
  }

  /** Removes journals older than `generation` (their changes are in the snapshot) and leftover temp files. */
  async #removeObsolete (generation: number, temps: boolean): Promise<void> {
    this.#assertLocked()
    const { dir } = this.#options
    let removed = false
    for (const name of await readdir(dir)) {
      const match = JOURNAL_FILE.exec(name)
      const obsolete = match !== null ? Number(match[1]) < generation : temps && name.endsWith(TEMP_SUFFIX) && name.startsWith('xems.')
      if (!obsolete) continue
      await unlink(join(dir, name))
      removed = true
    }
    if (removed) await fsyncDirectory(dir)
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
        frames.push(this.#seal(`[${group.join(',')}]`, journal.header, journal.seq++))
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
      next = await this.#createJournal(old.generation + 1)
    } catch (err) {
      this.#rotateAt = old.bytes + this.#options.compactAfter
      this.#warn({ code: 'FST_XEMS_VAULT_COMPACTION_FAILED', message: `fastify-xems: vault compaction could not start (${describeIoError(err)}); the journal goes on and it will be tried again`, file: this.#options.dir })
      return
    }
    this.#journal = next
    await old.handle.close()
    const generation = next.generation
    this.#snapshotTask = this.#writeSnapshot(generation, this.#scan!())
      .then(async (bytes) => {
        this.#rotateAt = Math.max(this.#options.compactAfter, bytes)
        await this.#removeObsolete(generation, false).catch((err: unknown) => {
          this.#warn({ code: 'FST_XEMS_VAULT_COMPACTION_FAILED', message: `fastify-xems: old vault journals could not be removed (${describeIoError(err)}); they will be removed at the next start`, file: this.#options.dir })
        })
      }, (err: unknown) => {
        this.#rotateAt = (this.#journal?.bytes ?? 0) + this.#options.compactAfter
        this.#warn({ code: 'FST_XEMS_VAULT_COMPACTION_FAILED', message: `fastify-xems: the vault snapshot could not be written (${describeIoError(err)}); the journals hold everything and it will be tried again`, file: this.#options.dir })
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
      this.#warn({ code: 'FST_XEMS_VAULT_WRITE_FAILED', message: `fastify-xems: writing the vault failed (${describeIoError(err)}); the store refuses every operation until it is restarted`, file: this.#options.dir })
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

async function writeAll (handle: FileHandle, data: Buffer): Promise<void> {
  let offset = 0
  while (offset < data.length) {
    const { bytesWritten } = await handle.write(data, offset, data.length - offset, null)
    offset += bytesWritten
  }
}

async function fsyncDirectory (dir: string): Promise<void> {
  const handle = await open(dir, 'r')
  try {
    await handle.sync()
  } finally {
    await handle.close()
  }
}
