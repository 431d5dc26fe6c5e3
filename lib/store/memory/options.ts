import { resolve as resolvePath } from 'node:path'
import { parseSecret } from '../../crypto/cipher.js'
import { parsePositiveDuration, type Duration } from '../../duration.js'
import { badOption, xemsError } from '../../errors.js'
import type { FsyncPolicy, VaultOptions, VaultWarning } from '../vault/vault.js'

/** A 32-byte secret: a Buffer of 32 bytes, 64 hex characters, base64 of 32 bytes, or 32 printable ASCII characters. */
export type VaultSecret = string | Uint8Array

/** Encrypted, crash-safe persistence of a MemoryStore (see docs/persistence.md). */
export interface PersistenceOptions {
  /**
   * The vault directory, used by this store alone (created with mode 0700 if missing; a relative path
   * is resolved at construction). It holds `xems.snapshot`, `xems.journal.<generation>` and the lease `xems.lock.<generation>`.
   */
  path: string
  /**
   * The secret the vault is sealed with, or a list newest first: files open with any of them and are
   * rewritten with the first at start-up, so rotating the secret logs nobody out.
   */
  secret: VaultSecret | VaultSecret[]
  /**
   * When a change is on disk before its operation resolves. `'always'` (default): after fsync, so
   * nothing acknowledged is lost even by a power cut. `'everysec'`: after the write to the OS, fsync
   * at most a second later; a process crash loses nothing acknowledged, a power cut up to about a second.
   */
  fsync?: FsyncPolicy | undefined
  /** Journal size in bytes after which it is compacted into a new snapshot (default 8 MiB; at least the snapshot's size). */
  compactAfter?: number | undefined
}

export interface MemoryStoreOptions {
  /** How often expired entries are swept, in small steps (default 250ms). */
  sweepInterval?: Duration | undefined
  /** The clock the background sweep reads (default Date.now); give the engine's clock in tests. */
  clock?: (() => number) | undefined
  /** Keep the store in an encrypted vault on disk, so sessions survive a restart (default: memory only). */
  persistence?: PersistenceOptions | undefined
  /**
   * Bind the vault to this machine: its keys also derive from the machine id (/etc/machine-id, else
   * /var/lib/dbus/machine-id), so the files do not open on another host even with the secret. Default false.
   */
  bindToHost?: boolean | undefined
  /**
   * The host identity to use instead of the machine id: for tests, and for containers whose machine
   * id is missing or changes with every image (give a stable value of your own).
   */
  hostId?: string | undefined
  /** Receives what the vault reports without stopping (a torn journal tail, a failed compaction). Default: process.emitWarning. */
  onWarning?: ((warning: VaultWarning) => void) | undefined
}

const DEFAULT_COMPACT_AFTER = 8 * 1024 * 1024

/** The options of a MemoryStore, checked: the sweep interval in ms, the clock, the vault's options (null without persistence). */
export interface CheckedOptions {
  sweepInterval: number
  clock: () => number
  vault: VaultOptions | null
}

/** Validates the options of a MemoryStore; throws FST_XEMS_BAD_OPTION (or FST_XEMS_BAD_SECRET) on the first wrong one. */
export function checkOptions (options: MemoryStoreOptions): CheckedOptions {
  const interval = parsePositiveDuration(options.sweepInterval ?? 250, 'sweepInterval')
  if (interval > 2_147_483_647) throw badOption('sweepInterval', 'must be at most 24 days (the longest timer Node.js keeps)')
  if (options.clock !== undefined && typeof options.clock !== 'function') {
    throw badOption('clock', 'must be a function returning milliseconds')
  }
  const vault = checkPersistence(options)
  return { sweepInterval: interval, clock: options.clock ?? Date.now, vault }
}

/** Validates the persistence options; null without persistence. */
function checkPersistence (options: MemoryStoreOptions): VaultOptions | null {
  const persistence = options.persistence
  if (options.bindToHost !== undefined && typeof options.bindToHost !== 'boolean') throw badOption('bindToHost', 'must be true or false')
  if (options.hostId !== undefined &&
    (typeof options.hostId !== 'string' || options.hostId.trim().length === 0 || options.hostId.length > 256)) {
    throw badOption('hostId', 'must be a non-empty string of at most 256 characters')
  }
  if (options.onWarning !== undefined && typeof options.onWarning !== 'function') throw badOption('onWarning', 'must be a function')
  if (persistence === undefined) {
    if (options.bindToHost !== undefined) throw badOption('bindToHost', 'only applies with option "persistence"')
    if (options.hostId !== undefined) throw badOption('hostId', 'only applies with option "persistence"')
    return null
  }
  if (persistence === null || typeof persistence !== 'object') throw badOption('persistence', 'must be an object { path, secret, fsync }')
  const { path, secret, fsync = 'always', compactAfter = DEFAULT_COMPACT_AFTER } = persistence
  if (typeof path !== 'string' || path.length === 0 || path.includes('\u0000')) {
    throw badOption('persistence.path', 'must be the path of a directory for the vault files')
  }
  let secrets: Buffer[]
  if (Array.isArray(secret)) {
    if (secret.length === 0) {
      throw xemsError(
        'FST_XEMS_BAD_SECRET', ['persistence.secret', 'it must be a 32-byte secret or a non-empty list of them, newest first']
      )
    }
    secrets = secret.map((value, i) => parseSecret(value, `persistence.secret[${i}]`))
  } else {
    secrets = [parseSecret(secret, 'persistence.secret')]
  }
  if (fsync !== 'always' && fsync !== 'everysec') throw badOption('persistence.fsync', "must be 'always' or 'everysec'")
  if (!Number.isSafeInteger(compactAfter) || compactAfter < 1) {
    throw badOption('persistence.compactAfter', 'must be a positive whole number of bytes')
  }
  const onWarning = options.onWarning ?? ((warning: VaultWarning) => { process.emitWarning(warning.message, { code: warning.code }) })
  return {
    dir: resolvePath(path),
    secrets,
    fsync,
    compactAfter,
    bindToHost: options.bindToHost ?? false,
    ...(options.hostId === undefined ? {} : { hostId: options.hostId }),
    onWarning
  }
}
