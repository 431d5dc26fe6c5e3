/**
 * What the PostgresStore tests share: a pool on the machine's PostgreSQL (DATABASE_URL, default
 * postgres://postgres@127.0.0.1:5432/test) or the reason there is none (a test file then skips, or fails
 * when CI is set), schemas of a test's own and their removal, and a PostgreSQL cluster of a test's own
 * (initdb + postgres on its own port in a temporary directory), to stop and freeze without touching the
 * machine's server.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { chmodSync, chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pg from 'pg'
import { IN_CI } from '../redis/redis-helpers.js'

export { IN_CI }
export const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test'

export function newPool (options: pg.PoolConfig = {}, url = DATABASE_URL): pg.Pool {
  const pool = new pg.Pool({ connectionString: url, max: 10, connectionTimeoutMillis: 2000, ...options })
  pool.on('error', () => {})
  return pool
}

/** A connected pool, or why there is none. */
export async function connectPool (options: pg.PoolConfig = {}): Promise<pg.Pool | string> {
  const pool = newPool(options)
  try {
    await pool.query('SELECT 1')
    return pool
  } catch (err) {
    await pool.end().catch(() => {})
    return `PostgreSQL is not reachable at ${new URL(DATABASE_URL).host} (${(err as Error).message})`
  }
}

/** A fresh schema name of the test's own: xems_test_<pid>_<random>. */
export function newSchema (): string {
  return `xems_test_${process.pid}_${randomBytes(4).toString('hex')}`
}

export async function dropSchema (pool: pg.Pool, schema: string): Promise<void> {
  await pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`)
}

/** Ends the server connections of this pool's application_name (never anyone else's). */
export async function terminateOwn (pool: pg.Pool, applicationName: string): Promise<number> {
  const { rows } = await pool.query<{ ended: boolean }>(
    'SELECT pg_terminate_backend(pid) AS ended FROM pg_stat_activity WHERE application_name = $1 AND pid <> pg_backend_pid()', [applicationName])
  return rows.filter((row) => row.ended).length
}

export interface OwnPostgres {
  url: string
  port: number
  process: ChildProcess
  /** SIGSTOP: the server accepts connections at the kernel level but answers nothing. */
  freeze: () => void
  thaw: () => void
  /** Stops the server (fast shutdown) and waits for it. */
  stop: () => Promise<void>
  /** Starts it again on the same port and directory. */
  start: () => Promise<void>
  /** Stops it and removes its directory. */
  remove: () => Promise<void>
}

function binDir (): string | null {
  const root = '/usr/lib/postgresql'
  if (!existsSync(root)) return null
  for (const version of readdirSync(root).sort().reverse()) {
    const dir = join(root, version, 'bin')
    if (existsSync(join(dir, 'initdb')) && existsSync(join(dir, 'postgres'))) return dir
  }
  return null
}

/** The uid/gid to run the cluster as: ours, or postgres' when we are root (initdb refuses root). */
function runAs (): { uid: number, gid: number } | null {
  if (process.getuid?.() !== 0) return null
  const id = spawnSync('id', ['-u', 'postgres'], { encoding: 'utf8' })
  const gid = spawnSync('id', ['-g', 'postgres'], { encoding: 'utf8' })
  if (id.status !== 0 || gid.status !== 0) return null
  return { uid: Number(id.stdout.trim()), gid: Number(gid.stdout.trim()) }
}

/** Signals the postmaster and every process it started (its backends answer on their own otherwise). */
function signalAll (postmaster: ChildProcess, signal: NodeJS.Signals): void {
  const children = spawnSync('pgrep', ['-P', String(postmaster.pid)], { encoding: 'utf8' }).stdout.split('\n').filter((pid) => pid !== '')
  postmaster.kill(signal)
  for (const pid of children) {
    try { process.kill(Number(pid), signal) } catch {}
  }
}

/**
 * A PostgreSQL cluster of the test's own on `port`, trust auth, in a temporary directory; a reason
 * string when it cannot be started (no initdb, root without a postgres user).
 */
export async function startOwnPostgres (port = 55_432 + (process.pid % 500)): Promise<OwnPostgres | string> {
  const bin = binDir()
  if (bin === null) return 'no PostgreSQL binaries under /usr/lib/postgresql/*/bin'
  const user = runAs()
  if (process.getuid?.() === 0 && user === null) return 'running as root and there is no postgres user to run initdb as'
  const dir = mkdtempSync(join(tmpdir(), 'xems-pg-'))
  const data = join(dir, 'data')
  if (user !== null) { chownSync(dir, user.uid, user.gid); chmodSync(dir, 0o700) }
  const asUser = user === null ? {} : { uid: user.uid, gid: user.gid }
  const init = spawnSync(join(bin, 'initdb'), ['-D', data, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--no-sync'], { ...asUser, encoding: 'utf8' })
  if (init.status !== 0) {
    rmSync(dir, { recursive: true, force: true })
    return `initdb failed: ${init.stderr.slice(0, 300)}`
  }
  const url = `postgres://postgres@127.0.0.1:${port}/postgres`
  let child: ChildProcess
  const launch = async (): Promise<void> => {
    child = spawn(join(bin, 'postgres'), ['-D', data, '-p', String(port), '-k', dir, '-c', 'listen_addresses=127.0.0.1', '-c', 'fsync=off'], { ...asUser, stdio: 'ignore' })
    own.process = child
    for (let i = 0; i < 100; i++) {
      await new Promise((resolve) => setTimeout(resolve, 100))
      if (child.exitCode !== null) throw new Error(`postgres exited at start (code ${child.exitCode})`)
      const probe = new pg.Client({ connectionString: url, connectionTimeoutMillis: 1000 })
      probe.on('error', () => {})
      try {
        await probe.connect()
        await probe.end()
        return
      } catch {
        await probe.end().catch(() => {})
      }
    }
    throw new Error('postgres did not accept connections within 10 s')
  }
  const stop = async (): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return
    const exited = new Promise((resolve) => child.once('exit', resolve))
    child.kill('SIGCONT')
    child.kill('SIGINT')
    await exited
  }
  const own: OwnPostgres = {
    url,
    port,
    process: undefined as unknown as ChildProcess,
    freeze: () => { signalAll(child, 'SIGSTOP') },
    thaw: () => { signalAll(child, 'SIGCONT') },
    stop,
    start: launch,
    remove: async () => {
      await stop()
      rmSync(dir, { recursive: true, force: true })
    }
  }
  try {
    await launch()
  } catch (err) {
    await own.remove().catch(() => {})
    return (err as Error).message
  }
  return own
}
