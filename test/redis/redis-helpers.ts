/**
 * What the RedisStore tests share: a connection to the machine's Redis (REDIS_URL) or the reason there is
 * none (a test file then skips, or fails when CI is set), random key prefixes and their clean-up, a
 * Redis Cluster client from REDIS_CLUSTER_NODES, and a throwaway redis-server of a test's own.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Cluster, Redis } from 'ioredis'

export const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'
export const IN_CI = process.env.CI !== undefined && process.env.CI !== '' && process.env.CI !== 'false' && process.env.CI !== '0'

/** A connected client, or why there is none. */
export async function connect (url = REDIS_URL): Promise<Redis | string> {
  const client = new Redis(url, { lazyConnect: true, connectTimeout: 2000, maxRetriesPerRequest: 1, retryStrategy: (times) => times > 2 ? null : 100 })
  client.on('error', () => {})
  try {
    await client.connect()
    await client.ping()
    return client
  } catch (err) {
    client.disconnect()
    return `Redis is not reachable at ${url} (${(err as Error).message})`
  }
}

export function newPrefix (): string {
  return `xems-test:${randomBytes(6).toString('hex')}:`
}

export async function keysUnder (client: Redis, prefix: string): Promise<string[]> {
  const found: string[] = []
  let cursor = '0'
  do {
    const [next, keys] = await client.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000)
    found.push(...keys)
    cursor = next
  } while (cursor !== '0')
  return found
}

/** Deletes every key under a prefix (one key per DEL: on a cluster they live in different slots). */
export async function deleteUnder (client: Redis, prefix: string): Promise<void> {
  const keys = await keysUnder(client, prefix)
  for (let i = 0; i < keys.length; i += 500) await Promise.all(keys.slice(i, i + 500).map(async (key) => await client.del(key)))
}

/** A client of the cluster named by REDIS_CLUSTER_NODES, or undefined when it is not set. */
export function clusterFromEnv (): Cluster | undefined {
  const nodes = process.env.REDIS_CLUSTER_NODES
  if (nodes === undefined || nodes === '') return undefined
  const cluster = new Cluster(nodes.split(',').map((node) => {
    const [host, port] = node.split(':')
    return { host: host!, port: Number(port) }
  }))
  cluster.on('error', () => {})
  return cluster
}

export async function deleteUnderCluster (cluster: Cluster, prefix: string): Promise<void> {
  for (const node of cluster.nodes('master')) await deleteUnder(node, prefix)
}

async function freePort (from: number): Promise<number> {
  for (let port = from; port < from + 100; port++) {
    const free = await new Promise<boolean>((resolve) => {
      const server = createServer()
      server.once('error', () => { resolve(false) })
      server.listen(port, '127.0.0.1', () => { server.close(() => { resolve(true) }) })
    })
    if (free) return port
  }
  throw new Error(`no free port in ${from}..${from + 99}`)
}

export interface OwnRedis {
  port: number
  process: ChildProcess
  /** Stops the server (SIGKILL) and removes its directory. */
  stop: () => Promise<void>
}

/**
 * A redis-server of the test's own, on its own port (from `firstPort` up) in its own temporary
 * directory, without persistence, as a child process; null when redis-server cannot be started.
 */
export async function startOwnRedis (firstPort = 7201): Promise<OwnRedis | string> {
  const port = await freePort(firstPort)
  const dir = mkdtempSync(join(tmpdir(), 'xems-redis-'))
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--daemonize', 'no', '--dir', dir], { stdio: 'ignore' })
  const failed = new Promise<string>((resolve) => {
    child.once('error', (err) => { resolve(`redis-server could not be started (${err.message})`) })
    child.once('exit', (code) => { resolve(`redis-server exited at start (code ${code})`) })
  })
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((resolve) => child.once('exit', resolve))
      child.kill('SIGCONT')
      child.kill('SIGKILL')
      await exited
    }
    rmSync(dir, { recursive: true, force: true })
  }
  for (let i = 0; i < 50; i++) {
    const outcome = await Promise.race([failed, new Promise<null>((resolve) => setTimeout(() => { resolve(null) }, 100))])
    if (outcome !== null) {
      rmSync(dir, { recursive: true, force: true })
      return outcome
    }
    const probe = await connect(`redis://127.0.0.1:${port}`)
    if (typeof probe !== 'string') {
      probe.disconnect()
      return { port, process: child, stop }
    }
  }
  await stop()
  return `redis-server on port ${port} did not answer within 5 s`
}
