import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { xemsError } from '../../errors.js'
import {
  decodeHeader, encodeHeader, formatVersionOf, HEADER_BYTES, recordAad, scanFrames, VAULT_FORMAT_VERSION,
  type VaultFileKind, type VaultHeader
} from './format.js'
import { CLOSED_FILE, closedAad, corrupt, JOURNAL_FILE, journalFile, report, SNAPSHOT_FILE } from './files.js'
import type { OpenOutcome, VaultKeys } from './keys.js'
import type { VaultOptions, VaultState, VaultWarning } from './vault.js'

/**
 * Loading a vault at start-up: the snapshot and every journal from its generation on are read,
 * checked (format version, headers, host binding, every record authenticated) and replayed into the
 * state, in order. A journal may end in a torn record, the trace of a crash; anything else that does
 * not open stops start-up. Nothing is written here.
 */
export class VaultLoader {
  readonly #options: VaultOptions
  readonly #keys: VaultKeys
  #vaultId: Buffer | null = null

  constructor (options: VaultOptions, keys: VaultKeys) {
    this.#options = options
    this.#keys = keys
  }

  /** The id of the vault read (null until a file has been read: a new vault). */
  get vaultId (): Buffer | null {
    return this.#vaultId
  }

  /** Reads snapshot and journals into `state`; returns the generation to start. */
  async load (state: VaultState): Promise<number> {
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
      report(this.#options.onWarning, tornTail)
    } else if (ending !== null && !await this.#closedCleanly(ending)) {
      report(this.#options.onWarning, {
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
  async #readFile (name: string, kind: VaultFileKind): Promise<{
    header: VaultHeader
    records: Buffer[]
    torn: { offset: number, bytes: number } | null
  }> {
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
        const why = outcome.reason === 'tampered' ? 'tampered with, or moved from another place' : 'sealed by an unknown key'
        throw corrupt(path, `record ${seq} at byte ${offset} does not authenticate (${why})`)
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
    if (end === null || typeof end !== 'object' || Array.isArray(end) || end.end !== chunks) {
      throw corrupt(path, 'does not end with its end record')
    }
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

  async #readJournal (generation: number, state: VaultState, afterTorn: boolean): Promise<{
    batches: number
    torn: VaultWarning | null
    records: number
    header: Buffer
    hostTag: Buffer | null
  }> {
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
}

function parseRecord (plain: Buffer, path: string, seq: number): unknown {
  try {
    return JSON.parse(plain.toString('utf8'))
  } catch (err) {
    throw corrupt(path, `record ${seq} is not readable`, err)
  }
}

function checkMeta (plain: Buffer, kind: VaultFileKind, generation: number, path: string): void {
  const meta = parseRecord(plain, path, 0) as { v?: unknown, kind?: unknown, generation?: unknown } | null
  if (meta === null || typeof meta !== 'object' || meta.v !== 1 || meta.kind !== kind || meta.generation !== generation) {
    throw corrupt(path, 'has a header record that does not match its header')
  }
}
