import { mkdir, open, readdir, readFile, rename, unlink, type FileHandle } from 'node:fs/promises'
import { join } from 'node:path'
import { XemsError, xemsError } from '../../errors.js'
import {
  decodeHeader, encodeHeader, formatVersionOf, frame, HEADER_BYTES, newVaultId, recordAad, scanFrames, VAULT_FORMAT_VERSION,
  type VaultFileKind, type VaultHeader
} from './format.js'
import { VaultKeys, type OpenOutcome } from './keys.js'
import { acquireVaultLock, type VaultLock } from './lock.js'

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

export const SNAPSHOT_FILE = 'xems.snapshot'
/** Written by a clean close: which journal ended the run and how many records it held. */
export const CLOSED_FILE = 'xems.closed'
const JOURNAL_FILE = /^xems\.journal\.(\d{1,15})$/
const TEMP_SUFFIX = '.tmp'
/** Plaintext size at which a snapshot chunk or a journal record is closed. */
const CHUNK_CHARS = 1024 * 1024
const EVERYSEC_MS = 1000

export function journalFile (generation: number): string {
  return `xems.journal.${generation}`
}

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

export class Vault {
  readonly #options: VaultOptions
  readonly #keys: VaultKeys
  #state: VaultState | null = null
  #lock: VaultLock | null = null
  #vaultId: Buffer | null = null
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
  #closed: Promise<void> | null = null
  #failure: XemsError | null = null

  constructor (options: VaultOptions) {
    this.#options = options
    this.#keys = new VaultKeys({ secrets: options.secrets, bindToHost: options.bindToHost, ...(options.hostId === undefined ? {} : { hostId: options.hostId }) })
  }

  /** Set once a write or fsync failed: the store then refuses every operation until restarted. */
  get failure (): XemsError | null {
    return this.#failure
  }

  /**
   * Loads the vault into `state` and compacts it. Nothing is written before everything has been read
   * and authenticated: a vault that does not open is left exactly as it was.
   */
  async open (state: VaultState): Promise<void> {
    this.#state = state
    const { dir } = this.#options
    try {
      await mkdir(dir, { recursive: true, mode: 0o700 })
      this.#lock = await acquireVaultLock(dir, {
        ...this.#options.lease,
        // Lost (a later generation exists): stop writing at once; the store answers 503 until restarted.
        onLost: (err) => { this.#fail(err) }
      })
      await this.#keys.prepare()
      const nextGeneration = await this.#load(state)
      state.loaded()
      this.#vaultId ??= newVaultId()
      this.#journal = await this.#createJournal(nextGeneration)
      const bytes = await this.#writeSnapshot(nextGeneration, state.scan())
      this.#rotateAt = Math.max(this.#options.compactAfter, bytes)
      await this.#removeObsolete(nextGeneration, true)
      await this.#lock.settle()
    } catch (err) {
      await this.#journal?.handle.close().catch(() => {})
      this.#journal = null
      await this.#lock?.release({ discard: true })
      this.#lock = null
      if (err instanceof XemsError) throw err
      throw xemsError('FST_XEMS_VAULT_IO', [dir, describeIoError(err)], { cause: err })
    }
    if (this.#options.fsync === 'everysec') {
      this.#timer = setInterval(() => {
        if (!this.#unsynced) return
        this.#syncDue = true
        this.#kick()
      }, EVERYSEC_MS)
      this.#timer.unref()
    }
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

  /** Writes and fsyncs what is queued, waits for a compaction in progress, and releases the directory. */
  async close (): Promise<void> {
    this.#closed ??= this.#close()
    await this.#closed
  }

  async #close (): Promise<void> {
    this.#closing = true
    if (this.#timer !== null) clearInterval(this.#timer)
    this.#timer = null
    while (this.#loop !== null || this.#snapshotTask !== null) {
      await this.#loop
      await this.#snapshotTask
    }
    const journal = this.#journal
    this.#journal = null
    if (journal !== null) {
      if (this.#failure === null && this.#unsynced) {
        await journal.handle.datasync().catch((err: unknown) => { this.#fail(err) })
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
    await this.#lock?.release()
    this.#lock = null
  }

  // ---- loading ----

  /** Reads snapshot and journals into `state`; returns the generation to start. */
  async #load (state: VaultState): Promise<number> {
    const { dir } = this.#options
    const names = await readdir(dir)
    const journals = names.flatMap((name) => {
      const match = JOURNAL_FILE.exec(name)
      return match === null ? [] : [Number(match[1])]
    }).sort((a, b) => a - b)
    let base: number
    if (names.includes(SNAPSHOT_FILE)) {
      base = await this.#readSnapshot(state)
      if (!journals.includes(base)) throw corrupt(join(dir, journalFile(base)), 'is missing: it holds the changes made after the snapshot')
    } else if (journals.length === 0) {
      return 1
    } else if (journals[0] === 1) {
      // A vault that crashed while being created: its first snapshot (empty) never landed.
      base = 1
    } else {
      throw corrupt(join(dir, SNAPSHOT_FILE), 'is missing although journals exist')
    }
    const live = journals.filter((generation) => generation >= base)
    let tornTail: VaultWarning | null = null
    let ending: { generation: number, records: number, header: Buffer, hostTag: Buffer | null } | null = null
    for (const [i, generation] of live.entries()) {
      if (generation !== base + i) throw corrupt(join(dir, journalFile(base + i)), 'is missing between the journals that exist')
      const { batches, torn, records, header, hostTag } = await this.#readJournal(generation, state, tornTail !== null)
      ending = { generation, records, header, hostTag }
      if (tornTail !== null && batches > 0) {
        throw corrupt(tornTail.file!, 'ends in a damaged record, yet a later journal holds records: this is not the trace of a crash')
      }
      tornTail ??= torn
    }
    // Only now that everything opened: a torn tail is then known to be the end of all that was written.
    if (tornTail !== null) {
      this.#warn(tornTail)
    } else if (ending !== null && !await this.#closedCleanly(ending)) {
      this.#warn({
        code: 'FST_XEMS_VAULT_UNCLEAN',
        message: `fastify-xems: the vault in ${dir} was not closed cleanly: the process stopped without store.close(), ` +
          'or its journal was cut or replaced by an older copy. After a crash, writes acknowledged under fsync \'always\' are kept; ' +
          'if there was no crash, check who can write to this directory',
        file: join(dir, journalFile(ending.generation))
      })
    }
    return live.at(-1)! + 1
  }

  /** Reads a file of the vault: header, then every record opened; a journal may end in a torn record. */
  async #readFile (name: string, kind: VaultFileKind): Promise<{ header: VaultHeader, records: Buffer[], torn: { offset: number, bytes: number } | null }> {
    const path = join(this.#options.dir, name)
    const file = await readFile(path)
    const format = formatVersionOf(file)
    if (format !== null && format !== VAULT_FORMAT_VERSION) {
      throw xemsError('FST_XEMS_VAULT_FORMAT', [path, format, VAULT_FORMAT_VERSION])
    }
    const header = decodeHeader(file)
    if (typeof header === 'string') throw corrupt(path, header)
    if (header.kind !== kind) throw corrupt(path, `is a ${header.kind} file, not a ${kind}`)
    if (this.#vaultId !== null && !header.vaultId.equals(this.#vaultId)) throw corrupt(path, 'belongs to another vault')
    const headerBytes = file.subarray(0, HEADER_BYTES)
    const open = await this.#keys.openerFor(header.hostTag, path)
    const scan = scanFrames(file)
    if (scan.damagedAt !== null) throw corrupt(path, `has a damaged record frame at byte ${scan.damagedAt}`)
    let torn = scan.torn
    const records: Buffer[] = []
    for (const [seq, { offset, record }] of scan.frames.entries()) {
      const outcome: OpenOutcome = open(record, recordAad(headerBytes, seq))
      if (outcome.ok) {
        records.push(outcome.plain)
      } else if (seq === 0 && outcome.reason === 'unknown-key') {
        throw xemsError('FST_XEMS_WRONG_SECRET', [`the vault file ${path}`, 'persistence.secret',
          'it was sealed with a secret the option does not hold (the files were left untouched). After changing the secret, ' +
          'list the new one first and keep the old one: secret: [newSecret, oldSecret].'])
      } else if (kind === 'journal' && seq > 0 && seq === scan.frames.length - 1) {
        // The last record of a journal may be the one a crash interrupted.
        torn = { offset, bytes: file.length - offset }
      } else {
        throw corrupt(path, `record ${seq} at byte ${offset} does not authenticate (${outcome.reason === 'tampered' ? 'tampered with, or moved from another place' : 'sealed by an unknown key'})`)
      }
    }
    if (records.length === 0) throw corrupt(path, 'has no header record')
    if (torn !== null && kind === 'snapshot') throw corrupt(path, 'is incomplete')
    return { header, records, torn }
  }

  async #readSnapshot (state: VaultState): Promise<number> {
    const path = join(this.#options.dir, SNAPSHOT_FILE)
    const { header, records } = await this.#readFile(SNAPSHOT_FILE, 'snapshot')
    this.#vaultId = header.vaultId
    checkMeta(records[0]!, 'snapshot', header.generation, path)
    const chunks = records.length - 2
    const end = chunks < 0 ? null : parseRecord(records.at(-1)!, path, records.length - 1) as { end?: unknown } | null
    if (end === null || typeof end !== 'object' || Array.isArray(end) || end.end !== chunks) throw corrupt(path, 'does not end with its end record')
    for (let seq = 1; seq <= chunks; seq++) this.#applyRecord(records[seq]!, state, path, seq)
    return header.generation
  }

  /**
   * True when the close marker names this journal and its exact record count. The marker was sealed by
   * the run that wrote the journal: it opens with any configured secret and the journal's host binding
   * (a rotated secret, or a vault bound or unbound since, still reads its predecessor's clean close).
   */
  async #closedCleanly (ending: { generation: number, records: number, header: Buffer, hostTag: Buffer | null }): Promise<boolean> {
    const path = join(this.#options.dir, CLOSED_FILE)
    const sealed = await readFile(path).catch(() => null)
    if (sealed === null) return false
    const opened = (await this.#keys.openerFor(ending.hostTag, path))(sealed, closedAad(ending.header))
    if (!opened.ok) return false
    try {
      const marker = JSON.parse(opened.plain.toString('utf8')) as { v?: unknown, generation?: unknown, records?: unknown }
      return marker.v === 1 && marker.generation === ending.generation && marker.records === ending.records
    } catch {
      return false
    }
  }

  async #readJournal (generation: number, state: VaultState, afterTorn: boolean): Promise<{ batches: number, torn: VaultWarning | null, records: number, header: Buffer, hostTag: Buffer | null }> {
    const name = journalFile(generation)
    const path = join(this.#options.dir, name)
    const { header, records, torn } = await this.#readFile(name, 'journal')
    if (header.generation !== generation) throw corrupt(path, `says it is journal ${header.generation}`)
    this.#vaultId ??= header.vaultId
    checkMeta(records[0]!, 'journal', generation, path)
    if (!afterTorn) {
      for (let seq = 1; seq < records.length; seq++) this.#applyRecord(records[seq]!, state, path, seq)
    }
    const warning: VaultWarning | null = torn === null
      ? null
      : {
          code: 'FST_XEMS_VAULT_TORN_TAIL',
          message: `fastify-xems: the vault journal ${path} ends in an incomplete record (${torn.bytes} bytes at byte ${torn.offset}), ` +
            'the trace of a crash during a write; it was dropped and the rest was loaded',
          file: path,
          offset: torn.offset,
          bytes: torn.bytes
        }
    return { batches: records.length - 1, torn: warning, records: records.length, header: encodeHeader(header), hostTag: header.hostTag }
  }

  #applyRecord (plain: Buffer, state: VaultState, path: string, seq: number): void {
    const entries = parseRecord(plain, path, seq)
    if (!Array.isArray(entries)) throw corrupt(path, `record ${seq} is not a list of entries`)
    for (const entry of entries) {
      try {
        state.apply(entry)
      } catch (err) {
        throw corrupt(path, `record ${seq} holds an entry of unknown shape`, err)
      }
    }
  }

  // ---- writing ----

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
      this.#fail(err)
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
      const failure = this.#fail(err)
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
    this.#snapshotTask = this.#writeSnapshot(generation, this.#state!.scan())
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
    if (this.#lock !== null && !this.#lock.held()) {
      throw xemsError('FST_XEMS_VAULT_LOCK_LOST', [this.#options.dir, 'another store holds it now'])
    }
  }

  #fail (err: unknown): XemsError {
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
    try {
      this.#options.onWarning(warning)
    } catch {
      // a failing logger must not break the store
    }
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

function parseRecord (plain: Buffer, path: string, seq: number): unknown {
  try {
    return JSON.parse(plain.toString('utf8'))
  } catch (err) {
    throw corrupt(path, `record ${seq} is not readable`, err)
  }
}

function closedAad (journalHeader: Buffer): string {
  return `xems-vault/closed|${journalHeader.toString('hex')}`
}

function checkMeta (plain: Buffer, kind: VaultFileKind, generation: number, path: string): void {
  const meta = parseRecord(plain, path, 0) as { v?: unknown, kind?: unknown, generation?: unknown } | null
  if (meta === null || typeof meta !== 'object' || meta.v !== 1 || meta.kind !== kind || meta.generation !== generation) {
    throw corrupt(path, 'has a header record that does not match its header')
  }
}

function corrupt (path: string, problem: string, cause?: unknown): XemsError {
  return xemsError('FST_XEMS_VAULT_CORRUPT', [path, problem], { cause })
}

function describeIoError (err: unknown): string {
  const code = (err as NodeJS.ErrnoException | null)?.code
  return typeof code === 'string' ? code : err instanceof Error ? err.message : 'unknown error'
}
