/**
 * What a request costs on RedisStore without HTTP: the engine's open + commit with a rotation, in a loop,
 * `--sessions` sessions in flight (10), `--cycles` cycles (30 000), `--rounds` times (3). Prints, per
 * round, cycles per second, Node's CPU per cycle (process.cpuUsage) and Redis's own time per script call
 * and per command the scripts run (INFO commandstats, reset before each round), then the medians.
 *
 * With `--lua`, then what shapes of script cost Redis on one of these session hashes (an empty script,
 * the scripts' shared prelude alone, an `HGETALL` returned from Lua, the commands a commit runs): where
 * a script's time goes beyond the commands inside it.
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
  options: {
    sessions: { type: 'string', default: '10' },
    cycles: { type: 'string', default: '30000' },
    rounds: { type: 'string', default: '3' },
    lua: { type: 'boolean', default: false }
  }
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

/** Redis's µs per call of `lua` on `key` (INFO commandstats of EVALSHA over `calls` calls, 100 in flight). */
async function scriptCost (lua: string, key: string, calls = 20_000): Promise<number> {
  const sha = await admin.script('LOAD', lua) as string
  await admin.config('RESETSTAT')
  for (let done = 0; done < calls; done += 100) {
    await Promise.all(Array.from({ length: 100 }, async () => await admin.evalsha(sha, 1, key)))
  }
  const match = /cmdstat_evalsha:calls=\d+,usec=\d+,usec_per_call=([\d.]+)/.exec(await admin.info('commandstats'))
  return Number(match?.[1] ?? NaN)
}

/** What shapes of script cost on a session hash: where a script's time goes beyond its commands. */
async function luaShapes (): Promise<void> {
  const opened = await engine.open(tokens[0])
  if (opened.status !== 'live' && opened.status !== 'grace') throw new Error(`open: ${opened.status}`)
  tokens[0] = opened.token ?? tokens[0]!
  const key = `${prefix}s:{${opened.session.id}}`
  const { PRELUDE } = await import(new URL('../lib/store/redis/scripts/common.js', import.meta.url).href) as { PRELUDE: string }
  const shapes: Array<[string, string]> = [
    ['an empty script (return 1)', 'return 1'],
    ['the session scripts\' prelude, then return 1', PRELUDE + '\nreturn 1'],
    ['HGETALL of the session, returned', "return redis.call('HGETALL', KEYS[1])"],
    ['HGETALL into a Lua table, return 1', "local a = redis.call('HGETALL', KEYS[1]) local h = {} for i = 1, #a, 2 do h[a[i]] = a[i + 1] end return 1"],
    ['HMGET of 9 fields, HSET of 2 (ls kept), PEXPIRE', "local v = redis.call('HMGET', KEYS[1], 'sb', 'ls', 'it', 'ax', 'xp', 'k', 'p', 'x', 'g') " +
      "redis.call('HSET', KEYS[1], 'ls', v[2], 's', '1') redis.call('PEXPIRE', KEYS[1], 3600000) return 1"]
  ]
  console.log('Redis µs per call of script shapes on one session hash:')
  for (const [name, lua] of shapes) console.log(`  ${name.padEnd(52)} ${await scriptCost(lua, key)}`)
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
  if (values.lua) await luaShapes()
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
