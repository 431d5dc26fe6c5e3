/**
 * What a request costs on RedisStore without HTTP: the engine's open + commit with a rotation, in a loop,
 * `--sessions` sessions in flight (10), `--cycles` cycles (30 000), `--rounds` times (3). Prints, per
 * round, cycles per second, Node's CPU per cycle (process.cpuUsage) and Redis's own time per script call
 * and per command the scripts run (INFO commandstats, reset before each round), then the medians.
 *
 * `npm run bench:build && node dist/bench/redis-cycle.js` (Redis at REDIS_URL, default
 * redis://127.0.0.1:6379; the keys go under a prefix of their own, deleted afterwards). It resets
 * Redis's command statistics: run it on a Redis of its own when they matter to anyone.
 */
import { randomBytes } from 'node:crypto'
import { parseArgs } from 'node:util'
import { Redis } from 'ioredis'
import { XemsEngine } from 'fastify-xems'
import { RedisStore } from 'fastify-xems/redis'
import { profileFor, round } from './common.js'

const { values } = parseArgs({
  options: { sessions: { type: 'string', default: '10' }, cycles: { type: 'string', default: '30000' }, rounds: { type: 'string', default: '3' } }
})
const inFlight = Number(values.sessions)
const cycles = Number(values.cycles)
const rounds = Number(values.rounds)

const url = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'
const client = new Redis(url)
const admin = new Redis(url)
const prefix = `xems-redis-cycle-${process.pid}:`
const store = new RedisStore({ client, prefix, secret: randomBytes(32) })
const engine = new XemsEngine({ store, gracePeriod: 0 })

const tokens: string[] = []
for (let i = 0; i < inFlight; i++) tokens.push(await engine.createSession('auth-active', { user: profileFor(`user-${i}`) }))

async function cycle (i: number): Promise<void> {
  const opened = await engine.open(tokens[i])
  if (opened.status !== 'live' && opened.status !== 'grace') throw new Error(`open: ${opened.status}`)
  const { session, presented } = opened
  if (session.data.user === undefined) throw new Error('open: no profile')
  const committed = await engine.commit({ id: session.id, sandbox: session.sandbox, presented, migrations: session.migrations }, null, true)
  if (committed.status !== 'ok' || committed.token === null) throw new Error(`commit: ${committed.status}`)
  tokens[i] = committed.token
}

async function run (count: number): Promise<void> {
  for (let k = 0; k < count / inFlight; k++) await Promise.all(tokens.map(async (_, i) => { await cycle(i) }))
}

/** usec_per_call of each command in INFO commandstats. */
async function commandTimes (): Promise<Record<string, number>> {
  const times: Record<string, number> = {}
  for (const line of (await admin.info('commandstats')).split('\n')) {
    const match = /^cmdstat_([a-z|]+):calls=\d+,usec=\d+,usec_per_call=([\d.]+)/.exec(line)
    if (match !== null && !match[1]!.startsWith('info') && !match[1]!.startsWith('config')) times[match[1]!] = Number(match[2])
  }
  return times
}

const median = (list: number[]): number => [...list].sort((a, b) => a - b)[Math.floor(list.length / 2)]!

try {
  await run(2000)
  const results: Array<{ perSecond: number, nodeCpu: number, redis: Record<string, number> }> = []
  for (let r = 0; r < rounds; r++) {
    await admin.config('RESETSTAT')
    const cpu = process.cpuUsage()
    const start = performance.now()
    await run(cycles)
    const ms = performance.now() - start
    const used = process.cpuUsage(cpu)
    const result = { perSecond: round(cycles / ms * 1000, 0), nodeCpu: round((used.user + used.system) / cycles, 1), redis: await commandTimes() }
    results.push(result)
    console.log(`round ${r + 1}: ${result.perSecond} cycles/s, Node CPU ${result.nodeCpu} µs/cycle, Redis µs per call: ${JSON.stringify(result.redis)}`)
  }
  const commands = Object.keys(results[0]!.redis)
  const redis = Object.fromEntries(commands.map((name) => [name, median(results.map((result) => result.redis[name] ?? 0))]))
  const perSecond = median(results.map((result) => result.perSecond))
  const nodeCpu = median(results.map((result) => result.nodeCpu))
  console.log(`median: ${perSecond} cycles/s, Node CPU ${nodeCpu} µs/cycle, Redis µs per call: ${JSON.stringify(redis)}`)
} finally {
  await store.close()
  let cursor = '0'
  do {
    const [next, keys] = await admin.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000)
    if (keys.length > 0) await admin.del(...keys)
    cursor = next
  } while (cursor !== '0')
  client.disconnect()
  admin.disconnect()
}
