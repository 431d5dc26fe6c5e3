/** The names of the vault's files, and what loading and writing both say about them. */
import { XemsError, xemsError } from '../../errors.js'
import type { VaultWarning } from './vault.js'

export const SNAPSHOT_FILE = 'xems.snapshot'
/** Written by a clean close: which journal ended the run and how many records it held. */
export const CLOSED_FILE = 'xems.closed'
export const JOURNAL_FILE = /^xems\.journal\.(\d{1,15})$/
export const TEMP_SUFFIX = '.tmp'
/** Plaintext size at which a snapshot chunk or a journal record is closed. */
export const CHUNK_CHARS = 1024 * 1024

export function journalFile (generation: number): string {
  return `xems.journal.${generation}`
}

/** The additional data the close marker is sealed with: it belongs to the journal with this header. */
export function closedAad (journalHeader: Buffer): string {
  return `xems-vault/closed|${journalHeader.toString('hex')}`
}

export function corrupt (path: string, problem: string, cause?: unknown): XemsError {
  return xemsError('FST_XEMS_VAULT_CORRUPT', [path, problem], { cause })
}

export function describeIoError (err: unknown): string {
  const code = (err as NodeJS.ErrnoException | null)?.code
  return typeof code === 'string' ? code : err instanceof Error ? err.message : 'unknown error'
}

/** Hands a warning to `onWarning`; a failing logger must not break the store. */
export function report (onWarning: (warning: VaultWarning) => void, warning: VaultWarning): void {
  try {
    onWarning(warning)
  } catch {
    // ignored
  }
}
