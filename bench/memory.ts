/**
 * Memory benchmark: 1 M live sessions of ~100 bytes of data on a MemoryStore, created through the engine,
 * then all expired at once and swept. Prints RSS and heap, the time to create them, the longest pause
 * on the event loop while creating (one createSession call) and while they expire (one sweep step), and
 * which of those pauses were garbage collections. Targets (issue 11): ≤ 400 MB RSS, no pause over 10 ms.
 *
 * `npm run bench:memory` (node --expose-gc dist/bench/memory.js). Options:
 *   --sessions <n>  (1000000)
 *   --user-id       also index every session under a user id, as a login with xLink(…, { userId }) does
 *   --real-timer    let the store's own timer sweep (every --interval ms, default 250) instead of driving
 *                   sweep(now) steps back to back; the clock is the injected one either way
 *   --breakdown     after creating, take a heap snapshot, print what the sessions are made of, and stop
 *                   (use with --sessions 100000: a snapshot of 1 M sessions takes GBs)
 *   --json <file>   also write the numbers as JSON (npm run bench writes bench/results/memory.json)
 */
import { rmSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { monitorEventLoopDelay, PerformanceObserver } from 'node:perf_hooks'
import { writeHeapSnapshot } from 'node:v8'
import { MemoryStore, XemsEngine } from 'fastify-xems'
import { profileFor, round } from './common.js'

const argv = process.argv.slice(2)
const option = (name: string): string | undefined => {
  const i = argv.indexOf(`--${name}`)
  return i === -1 ? undefined : argv[i + 1]
}
const SESSIONS = Number(option('sessions') ?? 1_000_000)
const WITH_USER = argv.includes('--user-id')
const REAL_TIMER = argv.includes('--real-timer')
const BREAKDOWN = argv.includes('--breakdown')
const INTERVAL = Number(option('interval') ?? 250)
const JSON_OUT = option('json')
const TTL_MS = 3_600_000
const PAUSE_LIMIT_MS = 10
const RSS_LIMIT_MB = 400

const gc = (globalThis as { gc?: () => void }).gc
const collect = (): void => {
  if (gc === undefined) return
  gc()
  gc()
}
const mb = (bytes: number): number => round(bytes / 1048576, 1)

interface Usage { rssMb: number, heapUsedMb: number, heapTotalMb: number, externalMb: number }
function usage (): Usage {
  const m = process.memoryUsage()
  return { rssMb: mb(m.rss), heapUsedMb: mb(m.heapUsed), heapTotalMb: mb(m.heapTotal), externalMb: mb(m.external) }
}

/** Every GC pause, on the performance.now() clock. */
const gcs: Array<{ start: number, ms: number, major: boolean }> = []
const observer = new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) {
    const kind = (entry as { detail?: { kind?: number } }).detail?.kind
    gcs.push({ start: entry.startTime, ms: entry.duration, major: kind === 4 })
  }
})
observer.observe({ entryTypes: ['gc'] })
const settle = async (): Promise<void> => { await new Promise((resolve) => setTimeout(resolve, 20)) }

/** GC time that falls within [start, end]. */
function gcWithin (start: number, end: number): number {
  let ms = 0
  for (const pause of gcs) if (pause.start >= start - 0.5 && pause.start <= end) ms += pause.ms
  return ms
}

/** A timed section: wall time, and the process's CPU time in it (less than wall when the OS preempted us). */
interface Section { start: number, ms: number, cpuMs: number, at: string }
interface Pause { ms: number, cpuMs: number, gcMs: number, at: string }

/**
 * Summary of timed sections: the longest by wall time, the longest by CPU time (what the code itself
 * costs, free of the machine's other load: min(wall, CPU)), the longest with no GC in it, and how many
 * exceed the limit by wall time and by CPU time.
 */
function pauses (sections: Section[]): { max: Pause, maxOnCpu: Pause, maxWithoutGc: Pause, over: number, overOnCpu: number } {
  const none: Pause = { ms: 0, cpuMs: 0, gcMs: 0, at: '' }
  let max = none
  let maxOnCpu = none
  let maxWithoutGc = none
  let over = 0
  let overOnCpu = 0
  const onCpu = (p: Pause): number => Math.min(p.ms, p.cpuMs)
  for (const section of sections) {
    const pause = { ms: section.ms, cpuMs: section.cpuMs, gcMs: gcWithin(section.start, section.start + section.ms), at: section.at }
    if (pause.ms > max.ms) max = pause
    if (onCpu(pause) > onCpu(maxOnCpu)) maxOnCpu = pause
    if (pause.gcMs < 0.1 && onCpu(pause) > onCpu(maxWithoutGc)) maxWithoutGc = pause
    if (pause.ms > PAUSE_LIMIT_MS) over++
    if (onCpu(pause) > PAUSE_LIMIT_MS) overOnCpu++
  }
  return { max, maxOnCpu, maxWithoutGc, over, overOnCpu }
}

function describe (p: Pause): string {
  return `${p.ms.toFixed(1)} ms wall / ${p.cpuMs.toFixed(1)} ms CPU at ${p.at}${p.gcMs >= 0.1 ? ` (GC in it: ${p.gcMs.toFixed(1)} ms)` : ''}`
}

function pauseJson (p: Pause): Record<string, unknown> {
  return { wallMs: round(p.ms, 1), cpuMs: round(p.cpuMs, 1), gcMs: round(p.gcMs, 1), at: p.at }
}

const cpuNow = (): number => {
  const used = process.cpuUsage()
  return (used.user + used.system) / 1000
}

/** What the heap is made of, per session: (type, size) groups that hold about one object per session or more. */
function breakdown (sessions: number): string[] {
  const file = join(tmpdir(), `xems-bench-${process.pid}.heapsnapshot`)
  writeHeapSnapshot(file)
  const snapshot = JSON.parse(readFileSync(file, 'utf8')) as { snapshot: { meta: { node_fields: string[], node_types: [string[]] } }, nodes: number[], strings: string[] }
  rmSync(file, { force: true })
  const fields = snapshot.snapshot.meta.node_fields
  const types = snapshot.snapshot.meta.node_types[0]
  const width = fields.length
  const iType = fields.indexOf('type')
  const iName = fields.indexOf('name')
  const iSize = fields.indexOf('self_size')
  const groups = new Map<string, { count: number, bytes: number, sample: string }>()
  let total = 0
  for (let i = 0; i < snapshot.nodes.length; i += width) {
    const type = types[snapshot.nodes[i + iType]!]!
    const name = snapshot.strings[snapshot.nodes[i + iName]!]!
    const size = snapshot.nodes[i + iSize]!
    total += size
    const isString = type.includes('string')
    const key = isString ? `${type} of ${size} B` : type === 'number' ? 'heap number' : type === 'array' ? 'array (Map tables, property stores)' : `${type} ${name} of ${size} B`
    const group = groups.get(key) ?? { count: 0, bytes: 0, sample: '' }
    group.count++
    group.bytes += size
    if (isString && type === 'string' && group.count === Math.floor(sessions / 2)) group.sample = name.slice(0, 40)
    groups.set(key, group)
  }
  const lines = [`heap snapshot: ${Math.round(total / sessions)} B of live objects per session in all (including the process's own ~5 MB)`]
  for (const [key, group] of [...groups].sort((a, b) => b[1].bytes - a[1].bytes)) {
    if (group.bytes / sessions < 4) continue
    lines.push(`  ${key.padEnd(46)} ${(group.count / sessions).toFixed(2).padStart(5)} per session  ${(group.bytes / sessions).toFixed(0).padStart(4)} B/session` +
      (group.sample === '' ? '' : `   e.g. ${JSON.stringify(group.sample)}`))
  }
  return lines
}

async function main (): Promise<void> {
  if (gc === undefined) console.log('(run with --expose-gc for exact heap figures: npm run bench:memory does)')
  let now = Date.now() // a clock near the real one, as a server's is
  const clock = (): number => now
  const store = new MemoryStore({ clock, sweepInterval: REAL_TIMER ? INTERVAL : '1h' })
  const engine = new XemsEngine({ store, clock, ttl: TTL_MS })
  const sample = { user: profileFor('u-0000001') }
  console.log(`memory: ${SESSIONS.toLocaleString('en')} sessions on a MemoryStore, ${JSON.stringify(sample).length} bytes of JSON data each` +
    `${WITH_USER ? ', with a user id' : ''}; Node ${process.version}`)

  collect()
  await settle()
  const before = usage()

  // Creation, one session at a time, timing each call: a call that stalls is a pause on the request path.
  const creates: Section[] = []
  const started = performance.now()
  for (let i = 0; i < SESSIONS; i++) {
    const user = `u-${String(i).padStart(7, '0')}`
    const c0 = cpuNow()
    const t0 = performance.now()
    await engine.createSession('auth-active', { user: profileFor(user) }, WITH_USER ? { userId: user } : {})
    const ms = performance.now() - t0
    if (ms > 1) creates.push({ start: t0, ms, cpuMs: cpuNow() - c0, at: `session #${i + 1}` })
  }
  const createMs = performance.now() - started
  await settle()
  collect()
  await settle()
  const live = usage()
  const size = store.size
  const perSession = Math.round((live.heapUsedMb - before.heapUsedMb) * 1048576 / SESSIONS)
  const created = pauses(creates)
  console.log(`created in ${(createMs / 1000).toFixed(1)} s (${(createMs * 1000 / SESSIONS).toFixed(1)} µs per session); the store holds ` +
    `${size.sessions.toLocaleString('en')} session records (one per session, tokens included)`)
  console.log(`live: RSS ${live.rssMb} MB, heap used ${live.heapUsedMb} MB of ${live.heapTotalMb} MB; ≈ ${perSession} heap bytes per session`)
  console.log(`createSession calls: longest ${describe(created.max)}; longest on CPU ${describe(created.maxOnCpu)}; ` +
    `longest on CPU without GC ${describe(created.maxWithoutGc)}; over ${PAUSE_LIMIT_MS} ms: ${created.over} by wall time, ${created.overOnCpu} by CPU time`)
  if (BREAKDOWN) {
    // The snapshot leaves a heap full of garbage behind: the sweep would measure that, not the store.
    for (const line of breakdown(SESSIONS)) console.log(line)
    await engine.close()
    observer.disconnect()
    return
  }

  // Every session expires at once: the worst case for the sweeper.
  now += TTL_MS + 1000
  const delay = monitorEventLoopDelay({ resolution: 1 })
  const steps: Section[] = []
  const sweepStarted = performance.now()
  delay.enable()
  if (REAL_TIMER) {
    while (store.size.sessions > 0) await new Promise((resolve) => setTimeout(resolve, 20))
  } else {
    while (store.size.sessions > 0) {
      const c0 = cpuNow()
      const t0 = performance.now()
      const removed = store.sweep(now)
      const ms = performance.now() - t0
      steps.push({ start: t0, ms, cpuMs: cpuNow() - c0, at: `step ${steps.length + 1} (${removed} removed, ${store.size.sessions} left)` })
      // Yield between steps, as the store's timer does.
      await new Promise((resolve) => setImmediate(resolve))
    }
  }
  delay.disable()
  const sweepMs = performance.now() - sweepStarted
  await settle()
  collect()
  await settle()
  const after = usage()
  await engine.close()
  observer.disconnect()

  const swept = pauses(steps)
  const sorted = steps.map((step) => step.ms).sort((a, b) => a - b)
  const pct = (p: number): number => sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.floor(p / 100 * sorted.length))]!
  const loopMax = delay.max / 1e6
  const sweepGcMax = Math.max(0, ...gcs.filter((g) => g.start >= sweepStarted && g.start <= sweepStarted + sweepMs).map((g) => g.ms))
  const createGcMax = Math.max(0, ...gcs.filter((g) => g.start >= started && g.start <= started + createMs).map((g) => g.ms))
  if (REAL_TIMER) {
    console.log(`expiry of all: swept in ${(sweepMs / 1000).toFixed(2)} s by the store's timer (every ${INTERVAL} ms); event-loop delay max ${loopMax.toFixed(1)} ms`)
  } else {
    console.log(`expiry of all: swept in ${(sweepMs / 1000).toFixed(2)} s in ${steps.length} steps; step p50 ${pct(50).toFixed(2)} ms, p99 ${pct(99).toFixed(2)} ms, ` +
      `longest ${describe(swept.max)}; longest on CPU ${describe(swept.maxOnCpu)}; longest on CPU without GC ${describe(swept.maxWithoutGc)}; ` +
      `over ${PAUSE_LIMIT_MS} ms: ${swept.over} by wall time, ${swept.overOnCpu} by CPU time`)
  }
  console.log(`longest GC pause: ${createGcMax.toFixed(1)} ms while creating, ${sweepGcMax.toFixed(1)} ms while sweeping`)
  console.log(`after the sweep: RSS ${after.rssMb} MB, heap used ${after.heapUsedMb} MB`)
  const rssOk = live.rssMb <= RSS_LIMIT_MB
  const onCpu = (p: Pause): number => Math.min(p.ms, p.cpuMs)
  const sweepPause = REAL_TIMER ? loopMax : onCpu(swept.maxOnCpu)
  const createPause = onCpu(created.maxOnCpu)
  const pauseOk = sweepPause <= PAUSE_LIMIT_MS
  console.log(`targets: RSS ≤ ${RSS_LIMIT_MB} MB → ${rssOk ? 'met' : 'NOT met'} (${live.rssMb} MB); no sweep pause over ${PAUSE_LIMIT_MS} ms → ${pauseOk ? 'met' : 'NOT met'} ` +
    `(longest ${sweepPause.toFixed(1)} ms${REAL_TIMER ? ' event-loop delay' : ' on CPU'}); and while creating: ${createPause <= PAUSE_LIMIT_MS
? 'none'
: `${createPause.toFixed(
      1
    )} ms on CPU`}`)

  if (JSON_OUT !== undefined) {
    writeFileSync(JSON_OUT, JSON.stringify({
      date: new Date().toISOString(),
      node: process.version,
      sessions: SESSIONS,
      dataBytes: JSON.stringify(sample).length,
      withUserId: WITH_USER,
      mode: REAL_TIMER ? `store timer every ${INTERVAL} ms` : 'sweep(now) steps back to back, yielding between steps',
      before,
      live,
      heapBytesPerSession: perSession,
      createSeconds: round(createMs / 1000, 2),
      createMicrosPerSession: round(createMs * 1000 / SESSIONS, 2),
      create: {
        longest: pauseJson(created.max),
        longestOnCpu: pauseJson(created.maxOnCpu),
        longestOnCpuWithoutGc: pauseJson(created.maxWithoutGc),
        over10msWall: created.over,
        over10msCpu: created.overOnCpu,
        gcMaxPauseMs: round(createGcMax, 1)
      },
      sweep: {
        seconds: round(sweepMs / 1000, 2),
        steps: steps.length,
        stepP50Ms: round(pct(50), 2),
        stepP99Ms: round(pct(99), 2),
        longest: pauseJson(swept.max),
        longestOnCpu: pauseJson(swept.maxOnCpu),
        longestOnCpuWithoutGc: pauseJson(swept.maxWithoutGc),
        over10msWall: swept.over,
        over10msCpu: swept.overOnCpu,
        eventLoopDelayMaxMs: round(loopMax, 1),
        gcMaxPauseMs: round(sweepGcMax, 1)
      },
      after,
      targets: {
        rssMb: { limit: RSS_LIMIT_MB, value: live.rssMb, met: rssOk },
        sweepPauseMs: { limit: PAUSE_LIMIT_MS, value: round(sweepPause, 1), met: pauseOk, measure: REAL_TIMER ? 'event-loop delay' : 'longest sweep step, min(wall, CPU)' },
        createPauseMs: { limit: PAUSE_LIMIT_MS, value: round(createPause, 1), met: createPause <= PAUSE_LIMIT_MS, measure: 'longest createSession call, min(wall, CPU)' }
      }
    }, null, 2) + '\n')
    console.log(`written: ${JSON_OUT}`)
  }
}

main().catch((err: unknown) => {
  console.error(err)
  process.exit(1)
})
