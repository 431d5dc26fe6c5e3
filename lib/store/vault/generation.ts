import { open, readdir, rename, unlink, type FileHandle } from 'node:fs/promises'
import { join } from 'node:path'
import { encodeHeader, frame, recordAad, type VaultFileKind } from './format.js'
import { CHUNK_CHARS, JOURNAL_FILE, journalFile, SNAPSHOT_FILE, TEMP_SUFFIX } from './files.js'
import type { VaultKeys } from './keys.js'

/** The journal being written: its file open for appends, its header, the next record's number, its size. */
export interface Journal {
  generation: number
  handle: FileHandle
  header: Buffer
  seq: number
  bytes: number
}

/**
 * The files of a vault's generations as they are written: a journal created with its header record,
 * a snapshot written from the state, the files a new snapshot makes obsolete removed. A file is only
 * ever replaced whole (temp file, fsync, rename, fsync of the directory), and only while the store
 * holds the directory's lease.
 */
export class GenerationFiles {
  readonly #dir: string
  readonly #keys: VaultKeys
  readonly #vaultId: Buffer
  /** Throws FST_XEMS_VAULT_LOCK_LOST once another store has taken the directory's lease. */
  readonly #assertLocked: () => void

  constructor (dir: string, keys: VaultKeys, vaultId: Buffer, assertLocked: () => void) {
    this.#dir = dir
    this.#keys = keys
    this.#vaultId = vaultId
    this.#assertLocked = assertLocked
  }

  #headerFor (kind: VaultFileKind, generation: number): Buffer {
    return encodeHeader({ kind, generation, vaultId: this.#vaultId, hostTag: this.#keys.sealer.hostTag })
  }

  /** `plain` sealed as record `seq` of the file with this header, framed. */
  seal (plain: string, header: Buffer, seq: number): Buffer {
    return frame(this.#keys.sealer.keyring.seal(plain, recordAad(header, seq)))
  }

  /** Creates journal `generation` complete with its header record (temp file, fsync, rename, fsync dir). */
  async createJournal (generation: number): Promise<Journal> {
    const header = this.#headerFor('journal', generation)
    const meta = this.seal(JSON.stringify({ v: 1, kind: 'journal', generation, createdAt: Date.now() }), header, 0)
    const name = journalFile(generation)
    await this.writeAtomically(name, async (handle) => {
      await writeAll(handle, Buffer.concat([header, meta]))
    })
    const handle = await open(join(this.#dir, name), 'a')
    return { generation, handle, header, seq: 1, bytes: header.length + meta.length }
  }

  /** Writes snapshot `generation` from `scan`, yielding to the event loop between chunks. Returns its size. */
  async writeSnapshot (generation: number, scan: Iterator<string>): Promise<number> {
    const header = this.#headerFor('snapshot', generation)
    let bytes = 0
    await this.writeAtomically(SNAPSHOT_FILE, async (handle) => {
      let seq = 0
      const put = async (plain: string): Promise<void> => {
        const framed = this.seal(plain, header, seq++)
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
  async writeAtomically (name: string, write: (handle: FileHandle) => Promise<void>): Promise<void> {
    const dir = this.#dir
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
  async removeObsolete (generation: number, temps: boolean): Promise<void> {
    this.#assertLocked()
    const dir = this.#dir
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
}

export async function writeAll (handle: FileHandle, data: Buffer): Promise<void> {
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
