import { open, readFile, realpath, unlink } from 'node:fs/promises'
import { hostname } from 'node:os'
import { join } from 'node:path'
import { XemsError } from '../errors.js'

/**
 * An advisory lock on a vault directory, so that two stores (two processes of a cluster, or two
 * stores in one process) never append to the same journal. The lock file holds the owner's pid and
 * host name; a lock whose owner is gone (a crash) is taken over. Processes on different hosts sharing
 * a network directory are not detected.
 */
export const LOCK_FILE = 'xems.lock'

/** Directories locked by this process (a pid can come back after a crash, e.g. pid 1 in a container). */
const heldHere = new Set<string>()

export interface VaultLock {
  release: () => Promise<void>
}

interface LockContent {
  pid: number
  host: string
}

export async function acquireVaultLock (path: string): Promise<VaultLock> {
  // Two spellings of one directory (a symlink, a relative path) are one vault.
  const dir = await realpath(path)
  const file = join(dir, LOCK_FILE)
  if (heldHere.has(dir)) throw locked(path, 'another store of this process')
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const handle = await open(file, 'wx', 0o600)
      try {
        await handle.writeFile(JSON.stringify({ pid: process.pid, host: hostname() } satisfies LockContent))
      } finally {
        await handle.close()
      }
      heldHere.add(dir)
      let released = false
      return {
        release: async () => {
          if (released) return
          released = true
          heldHere.delete(dir)
          await unlink(file).catch(() => {})
        }
      }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
    }
    const owner = await readOwner(file)
    if (owner !== null && owner.host === hostname() && owner.pid !== process.pid && isAlive(owner.pid)) {
      throw locked(path, `process ${owner.pid}`)
    }
    // The owner is gone (or was an earlier life of this pid): the lock is stale.
    await unlink(file).catch(() => {})
  }
  throw locked(path, 'another process')
}

async function readOwner (file: string): Promise<LockContent | null> {
  try {
    const parsed = JSON.parse(await readFile(file, 'utf8')) as Partial<LockContent>
    if (typeof parsed.pid === 'number' && typeof parsed.host === 'string') return { pid: parsed.pid, host: parsed.host }
  } catch {
    // unreadable or half-written: stale
  }
  return null
}

function isAlive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

function locked (dir: string, owner: string): XemsError {
  return new XemsError('FST_XEMS_VAULT_LOCKED',
    `fastify-xems: the vault directory ${dir} is in use by ${owner}; give every store its own persistence.path ` +
    `(if no process uses it, remove ${join(dir, LOCK_FILE)})`)
}
