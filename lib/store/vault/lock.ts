import { randomBytes } from 'node:crypto'
import { closeSync, existsSync, openSync, readFileSync, readlinkSync, writeSync } from 'node:fs'
import { readdir, readFile, realpath, unlink } from 'node:fs/promises'
import { hostname } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { XemsError, xemsError } from '../../errors.js'

/**
 * The lock on a vault directory, so that two stores (two processes of a cluster, two containers on
 * one volume, two stores in one process) never write the same journal. Node has no flock/fcntl
 * without a native addon, so the lock is a lease that its owner keeps fresh:
 *
 * - The lease is a file `xems.lock.<generation>`, created exclusively (O_EXCL), so of any number of
 *   stores racing for one generation exactly one gets it. Taking over a dead owner's lease means
 *   creating the next generation, never deleting or overwriting the current one: two stores that both
 *   judged a lease stale cannot both win.
 * - The owner rewrites its lease every `refreshMs` (1 s) with a new beat number, from a timer, with
 *   one synchronous write (not through the thread pool, which argon2 or disk I/O may keep busy).
 * - A store that finds a lease judges its owner by watching it, not by its pid or host name: a lease
 *   that changes is alive, whatever host name, PID namespace or clock its owner has; one unchanged for
 *   `staleMs` (10 s) belongs to a dead owner and is taken over. One shortcut: when the lease was
 *   written on this kernel (same boot id) in this PID namespace and its pid is gone, the owner is dead
 *   at once (a crash and restart in one container does not wait). A lease marked released by a clean
 *   close is taken at once.
 * - The owner checks, at every beat and before writing after any pause longer than half the stale
 *   time, that no later generation exists; if one does (its process was frozen past `staleMs`) it
 *   stops writing: the store fails with FST_XEMS_VAULT_LOCKED and must be restarted.
 *
 * Limit: a process frozen (SIGSTOP, a suspended VM) for longer than `staleMs` loses its lease; it
 * notices before its next write, but a write issued just before the freeze may still land after the
 * new owner read the journal.
 */
export const LOCK_FILE = 'xems.lock'
const LEASE_FILE = /^xems\.lock\.(\d{1,15})$/
const LEASE_BYTES = 512

export const LEASE_DEFAULTS = Object.freeze({ refreshMs: 1000, staleMs: 10_000 })

/** Directories locked by this process (a pid can come back after a crash, e.g. pid 1 in a container). */
const heldHere = new Set<string>()

export interface VaultLock {
  /** False once the lease was lost (a later generation exists, or it could not be refreshed). */
  held: () => boolean
  /** Removes the leases of earlier generations: call once the vault has opened. */
  settle: () => Promise<void>
  /**
   * Ends the lease: marks it released (the next store takes it at once), or with `discard` removes it
   * (a start-up that failed leaves the directory as it found it).
   */
  release: (options?: { discard?: boolean }) => Promise<void>
}

export interface VaultLockOptions {
  refreshMs?: number
  staleMs?: number
  /** Called once if the lease is lost while held. */
  onLost?: (err: XemsError) => void
}

interface LeaseContent {
  v: 2
  nonce: string
  pid: number
  host: string
  boot: string | null
  pidns: string | null
  beat: number
  state: 'held' | 'released'
}

export function leaseFile (generation: number): string {
  return `${LOCK_FILE}.${generation}`
}

export async function acquireVaultLock (path: string, options: VaultLockOptions = {}): Promise<VaultLock> {
  const refreshMs = options.refreshMs ?? LEASE_DEFAULTS.refreshMs
  const staleMs = options.staleMs ?? LEASE_DEFAULTS.staleMs
  // Two spellings of one directory (a symlink, a relative path) are one vault.
  const dir = await realpath(path)
  if (heldHere.has(dir)) throw locked(path, 'another store of this process', staleMs)
  heldHere.add(dir)
  try {
    await clearLegacyLock(dir, path)
    for (let attempt = 0; attempt < 8; attempt++) {
      const top = await topGeneration(dir)
      if (top > 0) {
        const owner = await judge(dir, top, refreshMs, staleMs)
        if (owner.verdict === 'gone') continue
        if (owner.verdict === 'alive') throw locked(path, owner.who, staleMs)
      }
      const generation = top + 1
      let fd: number
      try {
        // Exclusive: of the stores that judged generation `top` dead, one creates the next.
        fd = openSync(join(dir, leaseFile(generation)), 'wx', 0o600)
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
        continue
      }
      return startLease(dir, generation, fd, refreshMs, staleMs, options.onLost)
    }
    throw locked(path, 'another store that is taking it over', staleMs)
  } catch (err) {
    heldHere.delete(dir)
    throw err
  }
}

const identity = {
  boot: readOrNull(() => readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim()),
  pidns: readOrNull(() => readlinkSync('/proc/self/ns/pid'))
}

function readOrNull (read: () => string): string | null {
  try {
    const value = read()
    return value.length > 0 && value.length < 128 ? value : null
  } catch {
    return null
  }
}

function startLease (
  dir: string, generation: number, fd: number, refreshMs: number, staleMs: number, onLost?: (err: XemsError) => void
): VaultLock {
  const content: LeaseContent = {
    v: 2,
    nonce: randomBytes(8).toString('hex'),
    pid: process.pid,
    host: hostname().slice(0, 100),
    boot: identity.boot,
    pidns: identity.pidns,
    beat: 0,
    state: 'held'
  }
  const next = join(dir, leaseFile(generation + 1))
  let lost: XemsError | null = null
  let released = false
  let lastBeat = 0
  const write = (): void => {
    content.beat++
    const text = Buffer.alloc(LEASE_BYTES, 0x20)
    text.write(JSON.stringify(content))
    writeSync(fd, text, 0, LEASE_BYTES, 0)
  }
  const lose = (why: string): void => {
    if (lost !== null) return
    lost = xemsError('FST_XEMS_VAULT_LOCK_LOST', [dir, why])
    clearInterval(timer)
    onLost?.(lost)
  }
  /** One beat: refuse to go on if a later generation exists, then refresh the lease. */
  const beat = (): boolean => {
    if (lost !== null || released) return false
    if (existsSync(next)) {
      lose('another store took it over while this process was paused')
      return false
    }
    try {
      write()
      lastBeat = performance.now()
      return true
    } catch (err) {
      lose(`the lease could not be refreshed: ${(err as NodeJS.ErrnoException).code ?? String(err)}`)
      return false
    }
  }
  write()
  lastBeat = performance.now()
  const timer = setInterval(beat, refreshMs)
  timer.unref()
  return {
    // Leases of earlier generations are dead (this one is in place): removing them is housekeeping.
    settle: async () => { await removeOlderLeases(dir, generation) },
    held: () => {
      if (lost !== null || released) return false
      // After a pause (a blocked event loop), check again before anything is written.
      if (performance.now() - lastBeat > staleMs / 2) return beat()
      return true
    },
    release: async (releaseOptions = {}) => {
      if (released) return
      clearInterval(timer)
      if (lost === null && releaseOptions.discard !== true) {
        content.state = 'released'
        try { write() } catch { /* the next store then waits for the lease to go stale */ }
      }
      released = true
      try { closeSync(fd) } catch { /* already closed */ }
      if (lost === null && releaseOptions.discard === true) await unlink(join(dir, leaseFile(generation))).catch(() => {})
      heldHere.delete(dir)
    }
  }
}

async function topGeneration (dir: string): Promise<number> {
  let top = 0
  for (const name of await readdir(dir)) {
    const match = LEASE_FILE.exec(name)
    if (match !== null) top = Math.max(top, Number(match[1]))
  }
  return top
}

async function removeOlderLeases (dir: string, generation: number): Promise<void> {
  try {
    for (const name of await readdir(dir)) {
      const match = LEASE_FILE.exec(name)
      if (match !== null && Number(match[1]) < generation) await unlink(join(dir, name)).catch(() => {})
    }
  } catch {
    // housekeeping only
  }
}

type Verdict = { verdict: 'alive', who: string } | { verdict: 'dead' } | { verdict: 'gone' }

/** Whether the owner of lease `generation` is alive: by watching the lease, with the same-kernel shortcut. */
async function judge (dir: string, generation: number, refreshMs: number, staleMs: number): Promise<Verdict> {
  const file = join(dir, leaseFile(generation))
  const first = await readLease(file)
  if (first === null) return { verdict: 'gone' }
  const lease = parseLease(first)
  if (lease?.state === 'released') return { verdict: 'dead' }
  const who = lease === null ? 'another store' : `process ${lease.pid} on ${lease.host}`
  if (lease !== null && identity.boot !== null && identity.pidns !== null && lease.boot === identity.boot &&
    lease.pidns === identity.pidns) {
    // Same kernel, same PID namespace: the pid tells, unless it was reused (then the lease tells).
    if (lease.pid === process.pid || !isAlive(lease.pid)) return { verdict: 'dead' }
  }
  const started = performance.now()
  const poll = Math.max(10, Math.min(250, Math.floor(refreshMs / 2)))
  while (performance.now() - started < staleMs) {
    await sleep(poll)
    const now = await readLease(file)
    if (now === null) return { verdict: 'gone' }
    if (!now.equals(first)) {
      return parseLease(now)?.state === 'released' ? { verdict: 'dead' } : { verdict: 'alive', who }
    }
  }
  return { verdict: 'dead' }
}

async function readLease (file: string): Promise<Buffer | null> {
  try {
    return await readFile(file)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null
    throw err
  }
}

function parseLease (bytes: Buffer): LeaseContent | null {
  try {
    const parsed = JSON.parse(bytes.toString('utf8').trim()) as Partial<LeaseContent>
    if (parsed.v === 2 && typeof parsed.pid === 'number' && typeof parsed.host === 'string' &&
      (parsed.state === 'held' || parsed.state === 'released')) {
      return parsed as LeaseContent
    }
  } catch {
    // empty (its creator died before writing it) or torn: judged by watching
  }
  return null
}

/**
 * The lock file of earlier versions (`xems.lock`: pid and host name). Its owner cannot be watched: it
 * is removed only when it names this host and a pid that is gone; otherwise the directory is refused.
 */
async function clearLegacyLock (dir: string, path: string): Promise<void> {
  const file = join(dir, LOCK_FILE)
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return
    throw err
  }
  let owner: { pid?: unknown, host?: unknown } | null = null
  try { owner = JSON.parse(text) as { pid?: unknown, host?: unknown } } catch { /* half-written */ }
  const here = owner !== null && owner.host === hostname() && typeof owner.pid === 'number'
  if (here && (owner!.pid === process.pid || !isAlive(owner!.pid as number))) {
    await unlink(file).catch(() => {})
    return
  }
  throw xemsError('FST_XEMS_VAULT_LOCKED', [path,
    `it holds the lock file of an earlier version (${file}) whose owner cannot be checked from here; stop every store of the earlier ` +
      'version that uses it, then remove that file'])
}

function isAlive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

function locked (dir: string, owner: string, staleMs: number): XemsError {
  return xemsError('FST_XEMS_VAULT_LOCKED', [dir,
    `it is in use by ${owner}, which keeps its lease fresh; give every store its own persistence.path (the lease of a store that ` +
      `crashed is taken over once it is ${staleMs / 1000} s old)`])
}
