import { randomBytes } from 'node:crypto'
import { crc32 } from 'node:zlib'

/**
 * The on-disk layout of the vault (the persistence of MemoryStore): file headers, record frames and
 * the associated data that binds every record to its file and position. No crypto and no I/O here.
 *
 * A vault file is a 48-byte header followed by frames:
 *
 * ```
 * header  magic "XEMSVLT\n"(8) | format version u16(2) | kind 'S'|'J'(1) | flags(1) | reserved(4)
 *         | generation u64(8) | vault id(16) | host tag(8)
 * frame   length u32(4) | crc32 of the length bytes u32(4) | sealed record (length bytes)
 * ```
 *
 * Every sealed record is AES-256-GCM (see Keyring) with the associated data
 * `xems-vault/1|<hex of the 48 header bytes>|<sequence number>`, so a record only opens in the file
 * (kind, generation, vault, host binding) and at the position (sequence) it was written for.
 */
export const VAULT_MAGIC = Buffer.from('XEMSVLT\n', 'latin1')
export const VAULT_FORMAT_VERSION = 2
export const HEADER_BYTES = 48
export const FRAME_HEADER_BYTES = 8
export const VAULT_ID_BYTES = 16
export const HOST_TAG_BYTES = 8
/** No record is this large; a length beyond it is damage, not data. */
export const MAX_RECORD_BYTES = 512 * 1024 * 1024

const FLAG_HOST_BOUND = 0x01
const KIND_BYTE = { snapshot: 0x53, journal: 0x4a } as const

export type VaultFileKind = 'snapshot' | 'journal'

/** The header of one vault file. */
export interface VaultHeader {
  kind: VaultFileKind
  /** Snapshots and journals of one compaction cycle share a generation; it only grows. */
  generation: number
  /** Random id of the vault, the same in all its files, so records cannot move between vaults. */
  vaultId: Buffer
  /** Keyed hash of the machine id when the file is bound to its host, else null. */
  hostTag: Buffer | null
}

export function newVaultId (): Buffer {
  return randomBytes(VAULT_ID_BYTES)
}

export function encodeHeader (header: VaultHeader): Buffer {
  const out = Buffer.alloc(HEADER_BYTES)
  VAULT_MAGIC.copy(out, 0)
  out.writeUInt16BE(VAULT_FORMAT_VERSION, 8)
  out[10] = KIND_BYTE[header.kind]
  out[11] = header.hostTag === null ? 0 : FLAG_HOST_BOUND
  out.writeBigUInt64BE(BigInt(header.generation), 16)
  header.vaultId.copy(out, 24)
  if (header.hostTag !== null) header.hostTag.copy(out, 40)
  return out
}

/** The format version a file with our magic declares, or null when it has no vault header at all. */
export function formatVersionOf (file: Buffer): number | null {
  return file.length >= 10 && file.subarray(0, 8).equals(VAULT_MAGIC) ? file.readUInt16BE(8) : null
}

/** Reads a header; a string describes what is wrong with it. */
export function decodeHeader (file: Buffer): VaultHeader | string {
  if (file.length < HEADER_BYTES) return 'it is shorter than a vault header'
  if (!file.subarray(0, 8).equals(VAULT_MAGIC)) return 'it is not a fastify-xems vault file (bad magic)'
  const version = file.readUInt16BE(8)
  if (version !== VAULT_FORMAT_VERSION) {
    return `its format version ${version} is not the one this version of fastify-xems reads (${VAULT_FORMAT_VERSION}); ` +
      'sessions from another format cannot be carried over: move the vault directory away to start with an empty store'
  }
  const kind = file[10] === KIND_BYTE.snapshot ? 'snapshot' : file[10] === KIND_BYTE.journal ? 'journal' : null
  if (kind === null) return 'its header names an unknown file kind'
  const flags = file[11]!
  if ((flags & ~FLAG_HOST_BOUND) !== 0 || file.readUInt32BE(12) !== 0) return 'its header has unknown flags'
  const generation = file.readBigUInt64BE(16)
  if (generation > BigInt(Number.MAX_SAFE_INTEGER)) return 'its generation is out of range'
  const bound = (flags & FLAG_HOST_BOUND) !== 0
  const hostTag = Buffer.from(file.subarray(40, 48))
  if (!bound && !hostTag.equals(Buffer.alloc(HOST_TAG_BYTES))) return 'its header has a host tag but no host flag'
  return { kind, generation: Number(generation), vaultId: Buffer.from(file.subarray(24, 40)), hostTag: bound ? hostTag : null }
}

/** The associated data of record `seq` of the file whose header bytes are `header`. */
export function recordAad (header: Buffer, seq: number): string {
  return `xems-vault/${VAULT_FORMAT_VERSION}|${header.toString('hex')}|${seq}`
}

/** Wraps a sealed record in its frame. */
export function frame (sealed: Buffer): Buffer {
  const out = Buffer.allocUnsafe(FRAME_HEADER_BYTES + sealed.length)
  out.writeUInt32BE(sealed.length, 0)
  out.writeUInt32BE(crc32(out.subarray(0, 4)), 4)
  sealed.copy(out, FRAME_HEADER_BYTES)
  return out
}

/** A structurally complete frame: its record starts at `offset + FRAME_HEADER_BYTES`. */
export interface Frame {
  offset: number
  record: Buffer
}

export interface FrameScan {
  frames: Frame[]
  /**
   * Bytes at the end that cannot be a complete frame but look like an interrupted append: a short
   * frame header, a record cut short, or zeros (a file extended without its data reaching the disk).
   */
  torn: { offset: number, bytes: number } | null
  /** A frame header that is damaged although data follows it: never the trace of a crash. */
  damagedAt: number | null
}

/** Splits the bytes after the header into frames, classifying whatever does not form one. */
export function scanFrames (file: Buffer, start = HEADER_BYTES): FrameScan {
  const frames: Frame[] = []
  let offset = start
  while (offset < file.length) {
    const left = file.length - offset
    if (left < FRAME_HEADER_BYTES) return { frames, torn: { offset, bytes: left }, damagedAt: null }
    const length = file.readUInt32BE(offset)
    const check = file.readUInt32BE(offset + 4)
    if (check !== crc32(file.subarray(offset, offset + 4)) || length > MAX_RECORD_BYTES) {
      if (allZero(file, offset)) return { frames, torn: { offset, bytes: left }, damagedAt: null }
      return { frames, torn: null, damagedAt: offset }
    }
    if (left - FRAME_HEADER_BYTES < length) return { frames, torn: { offset, bytes: left }, damagedAt: null }
    frames.push({ offset, record: file.subarray(offset + FRAME_HEADER_BYTES, offset + FRAME_HEADER_BYTES + length) })
    offset += FRAME_HEADER_BYTES + length
  }
  return { frames, torn: null, damagedAt: null }
}

function allZero (buffer: Buffer, from: number): boolean {
  for (let i = from; i < buffer.length; i++) if (buffer[i] !== 0) return false
  return true
}
