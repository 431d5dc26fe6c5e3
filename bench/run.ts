/**
 * The HTTP benchmark: `npm run bench` (or `node dist/bench/run.js [options]` after building).
 *
 * For each server of common.ts, in turn: fork it (its own process, 127.0.0.1, random port), fork the
 * load client (its own process: VUs with their own cookie jars following every Set-Cookie), warm up,
 * measure for a fixed time, stop both. Then a table of req/s, p50/p99 latency, errors and the ratios to
 * bare Fastify and to @fastify/session (memory), all from this run, printed and written as JSON and
 * Markdown to bench/results/.
 *
 * Options: --duration <s> (10)  --warmup <s> (2)  --vus <n> (50)  --connections <n> (10)
 *          --rounds <n> (1: each round runs every server once; the table takes each server's median)
 *          --only <id,id>  --profile <id> (run that server under node --cpu-prof and summarise the profile)
 *          --tag <name> (output file name; default latest, or partial with --only / --profile)
 */
import { execFileSync, fork, type ChildProcess } from 'node:child_process'
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { cpus, loadavg } from 'node:os'
import { dirname, join, relative, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import {
  BARE_ID, PEER_ID, ROTATE_ID, SERVERS, round,
  type LoadConfig, type LoadMessage, type LoadResult, type ServerCommand, type ServerMessage, type ServerSpec
} from './common.js'
import { formatProfileSummary, summariseProfile, type CpuProfile } from './profile.js'

const here = dirname(fileURLToPath(import.meta.url))
const repo = resolve(here, '../..')
const resultsDir = join(repo, 'bench', 'results')

interface Options {
  durationMs: number
  warmupMs: number
  vus: number
  connections: number
  rounds: number
  only: string[] | null
  profile: string | null
  tag: string
}

function parseOptions (argv: string[]): Options {
  const value = (name: string): string | undefined => {
    const i = argv.indexOf(`--${name}`)
    return i === -1 ? undefined : argv[i + 1]
  }
  const number = (name: string, fallback: number): number => {
    const text = value(name)
    if (text === undefined) return fallback
    const n = Number(text)
    if (!Number.isFinite(n) || n <= 0) throw new Error(`--${name} must be a positive number`)
    return n
  }
  const only = value('only')?.split(',').map((id) => id.trim()).filter((id) => id !== '') ?? null
  const profile = value('profile') ?? null
  for (const id of [...(only ?? []), ...(profile === null ? [] : [profile])]) {
    if (!SERVERS.some((server) => server.id === id)) throw new Error(`unknown server "${id}"; one of: ${SERVERS.map((s) => s.id).join(', ')}`)
  }
  return {
    durationMs: number('duration', 10) * 1000,
    warmupMs: number('warmup', 2) * 1000,
    vus: Math.round(number('vus', 50)),
    connections: Math.round(number('connections', 10)),
    rounds: Math.round(number('rounds', 1)),
    only: profile !== null ? [profile] : only,
    profile,
    tag: value('tag') ?? (only !== null || profile !== null ? 'partial' : 'latest')
  }
}

/** Busy and total CPU time of the whole machine (all cores), in ms, from /proc/stat. */
function machineCpu (): { busyMs: number, totalMs: number } | null {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n')[0]!
    const fields = line.trim().split(/\s+/).slice(1).map(Number)
    const [user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0] = fields
    const tick = 10 // USER_HZ is 100 on Linux
    return { busyMs: (user + nice + system + irq + softirq + steal) * tick, totalMs: (user + nice + system + idle + iowait + irq + softirq + steal) * tick }
  } catch {
    return null
  }
}

interface RunOutcome {
  id: string
  status: 'ok' | 'unavailable' | 'failed'
  reason?: string
  notes?: string[]
  load?: LoadResult
  serverCpuMs?: number
  /** Of serverCpuMs, the part spent in the kernel (socket writes and reads, loopback delivery). */
  serverSystemMs?: number
  /** Main-thread GC pauses in the window. */
  serverGcMs?: number
  /** The server's main (JavaScript) thread: CPU time, time runnable but waiting for a core, scheduler slices. */
  mainThread?: { cpuMs: number, waitMs: number, slices: number }
  serverRssMb?: number
  /** CPU used on the machine by processes other than this server and its load client, in cores. */
  otherCores?: number
  profile?: string
  /** The measured window in the µs clock of --cpu-prof. */
  windowUs?: [number, number]
}

function waitFor<T> (child: ChildProcess, accept: (message: unknown) => T | undefined, timeoutMs: number, what: string): Promise<T> {
  return new Promise((resolvePromise, reject) => {
    const timer = setTimeout(() => { cleanup(); reject(new Error(`timed out waiting for ${what}`)) }, timeoutMs)
    const onMessage = (message: unknown): void => {
      const value = accept(message)
      if (value !== undefined) { cleanup(); resolvePromise(value) }
    }
    const onExit = (code: number | null, signal: string | null): void => { cleanup(); reject(new Error(`exited (${signal ?? code}) while waiting for ${what}`)) }
    const cleanup = (): void => {
      clearTimeout(timer)
      child.off('message', onMessage)
      child.off('exit', onExit)
    }
    child.on('message', onMessage)
    child.on('exit', onExit)
  })
}

async function stopChild (child: ChildProcess, command?: ServerCommand): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = new Promise<void>((resolvePromise) => child.once('exit', () => resolvePromise()))
  if (command !== undefined && child.connected) child.send(command)
  const timer = setTimeout(() => child.kill('SIGKILL'), 15_000)
  await exited
  clearTimeout(timer)
}

async function runServer (spec: ServerSpec, options: Options, profileDir: string | null): Promise<RunOutcome> {
  const execArgv = profileDir === null ? [] : ['--cpu-prof', '--cpu-prof-dir', profileDir, '--cpu-prof-interval', '200']
  const server = fork(join(here, 'server.js'), [spec.id], { execArgv, stdio: ['ignore', 'inherit', 'pipe', 'ipc'] })
  let stderr = ''
  server.stderr?.on('data', (chunk: Buffer) => { stderr += chunk.toString() })
  let ready: ServerMessage
  try {
    ready = await waitFor(server, (m) => {
      const message = m as ServerMessage
      return message.type === 'ready' || message.type === 'unavailable' ? message : undefined
    }, 30_000, `server ${spec.id}`)
  } catch (err) {
    await stopChild(server)
    return { id: spec.id, status: 'failed', reason: `${(err as Error).message}${stderr === '' ? '' : `: ${stderr.trim().split('\n').slice(0, 3).join(' | ')}`}` }
  }
  if (ready.type === 'unavailable') {
    await stopChild(server)
    return { id: spec.id, status: 'unavailable', reason: ready.reason }
  }
  if (ready.type !== 'ready') throw new Error('unreachable')

  const config: LoadConfig = {
    origin: `http://127.0.0.1:${ready.port}`,
    vus: options.vus,
    connections: options.connections,
    warmupMs: options.warmupMs,
    durationMs: options.durationMs,
    sessions: spec.sessions
  }
  const client = fork(join(here, 'load.js'), [JSON.stringify(config)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  let machineStart: ReturnType<typeof machineCpu> = null
  let machineUsed: { busyMs: number, totalMs: number } | null = null
  const serverCpu = waitFor(server, (m) => {
    const message = m as ServerMessage
    return message.type === 'cpu' ? message : undefined
  }, options.warmupMs + options.durationMs + 60_000, `server ${spec.id} CPU figures`)
  client.on('message', (m: LoadMessage) => {
    if (m.type === 'measure-start') {
      machineStart = machineCpu()
      server.send({ type: 'cpu-start' } satisfies ServerCommand)
    } else if (m.type === 'measure-stop') {
      const now = machineCpu()
      if (machineStart !== null && now !== null) machineUsed = { busyMs: now.busyMs - machineStart.busyMs, totalMs: now.totalMs - machineStart.totalMs }
      server.send({ type: 'cpu-stop' } satisfies ServerCommand)
    }
  })
  let load: LoadResult
  let cpu: ServerMessage & { type: 'cpu' }
  try {
    load = await waitFor(client, (m) => (m as LoadMessage).type === 'result' ? (m as LoadMessage & { type: 'result' }).result : undefined,
      options.warmupMs + options.durationMs + 60_000, `load client on ${spec.id}`)
    cpu = await serverCpu
  } catch (err) {
    await stopChild(client)
    await stopChild(server, { type: 'stop' })
    return { id: spec.id, status: 'failed', reason: `${(err as Error).message}${stderr === '' ? '' : `: ${stderr.trim().split('\n').slice(0, 3).join(' | ')}`}` }
  }
  await stopChild(client)
  const before = profileDir === null ? [] : readdirSync(profileDir)
  await stopChild(server, { type: 'stop' })
  let profile: string | undefined
  if (profileDir !== null) {
    const written = readdirSync(profileDir).filter((name) => name.endsWith('.cpuprofile') && !before.includes(name))
    if (written[0] !== undefined) profile = join(profileDir, written[0])
  }
  const serverCpuMs = (cpu.userMicros + cpu.systemMicros) / 1000
  let otherCores: number | undefined
  const used = machineUsed as { busyMs: number, totalMs: number } | null
  if (used !== null) otherCores = Math.max(0, (used.busyMs - serverCpuMs - load.clientCpuMs) / (load.elapsedMs))
  return {
    id: spec.id,
    status: 'ok',
    ...(ready.notes === undefined ? {} : { notes: ready.notes }),
    load,
    serverCpuMs: Math.round(serverCpuMs),
    serverSystemMs: Math.round(cpu.systemMicros / 1000),
    serverGcMs: Math.round(cpu.gcMs),
    mainThread: { cpuMs: Math.round(cpu.mainThread.cpuMs), waitMs: Math.round(cpu.mainThread.waitMs), slices: cpu.mainThread.slices },
    serverRssMb: Math.round(cpu.rssBytes / 1048576),
    ...(otherCores === undefined ? {} : { otherCores: round(otherCores, 2) }),
    ...(profile === undefined ? {} : { profile, windowUs: cpu.windowUs })
  }
}

interface Row {
  id: string
  label: string
  status: 'ok' | 'unavailable' | 'failed'
  reason?: string
  rps?: number
  p50?: number
  p99?: number
  errors?: number
  vsBare?: number | null
  vsPeer?: number | null
  /**
   * The same ratios from CPU per request (server + load client) instead of req/s: what the throughput ratio
   * would be if each server had the machine to itself, whatever else ran meanwhile. The machine's other
   * load moves req/s from one server to the next; it moves these much less.
   */
  vsBareCpu?: number | null
  vsPeerCpu?: number | null
  setCookiePct?: number
  newValuePct?: number
  serverCpuUsPerReq?: number
  /** Main-thread GC pause time per request. */
  serverGcUsPerReq?: number
  /** CPU of the server's main thread per request (without GC helper and compiler threads). */
  mainThreadUsPerReq?: number
  /** Share of the window the server's main thread was runnable but waiting for a core (other load). */
  mainThreadWaitPct?: number
  serverCores?: number
  clientCores?: number
  /** CPU of the load client per request (it parses every Set-Cookie and rebuilds its Cookie header). */
  clientUsPerReq?: number
  otherCores?: number
  serverRssMb?: number
  roundsRps?: number[]
}

function median<T> (values: T[], key: (value: T) => number): T {
  const sorted = [...values].sort((a, b) => key(a) - key(b))
  return sorted[Math.floor((sorted.length - 1) / 2)]!
}

function errorsOf (load: LoadResult): number {
  return load.non2xx + load.badBodies + load.networkErrors + load.otherErrors
}

function buildRows (outcomes: Map<string, RunOutcome[]>, specs: ServerSpec[]): Row[] {
  const rows: Row[] = specs.map((spec) => {
    const runs = outcomes.get(spec.id) ?? []
    const ok = runs.filter((run) => run.status === 'ok')
    if (ok.length === 0) {
      const first = runs[0]
      return { id: spec.id, label: spec.label, status: first?.status ?? 'failed', reason: first?.reason ?? 'not run' }
    }
    const chosen = median(ok, (run) => run.load!.rps)
    const load = chosen.load!
    const seconds = load.elapsedMs / 1000
    return {
      id: spec.id,
      label: spec.label,
      status: 'ok',
      rps: load.rps,
      p50: load.latencyMs.p50,
      p99: load.latencyMs.p99,
      errors: ok.reduce((sum, run) => sum + errorsOf(run.load!), 0) + runs.filter((run) => run.status !== 'ok').length,
      setCookiePct: round(100 * load.setCookie / Math.max(1, load.requests), 1),
      newValuePct: round(100 * load.newValue / Math.max(1, load.requests), 1),
      serverCpuUsPerReq: Math.round(1000 * chosen.serverCpuMs! / Math.max(1, load.requests)),
      serverGcUsPerReq: round(1000 * (chosen.serverGcMs ?? 0) / Math.max(1, load.requests), 1),
      ...(chosen.mainThread === undefined || chosen.mainThread.cpuMs === 0
        ? {}
        : {
            mainThreadUsPerReq: Math.round(1000 * chosen.mainThread.cpuMs / Math.max(1, load.requests)),
            mainThreadWaitPct: round(100 * chosen.mainThread.waitMs / load.elapsedMs, 1)
          }),
      serverCores: round(chosen.serverCpuMs! / 1000 / seconds, 2),
      clientCores: round(load.clientCpuMs / 1000 / seconds, 2),
      clientUsPerReq: Math.round(1000 * load.clientCpuMs / Math.max(1, load.requests)),
      ...(chosen.otherCores === undefined ? {} : { otherCores: chosen.otherCores }),
      serverRssMb: chosen.serverRssMb!,
      roundsRps: ok.map((run) => run.load!.rps)
    }
  })
  const rpsOf = (id: string): number | null => rows.find((row) => row.id === id && row.status === 'ok')?.rps ?? null
  const bare = rpsOf(BARE_ID)
  const peer = rpsOf(PEER_ID)
  const bareCpu = cpuOf(rows.find((row) => row.id === BARE_ID))
  const peerCpu = cpuOf(rows.find((row) => row.id === PEER_ID))
  for (const row of rows) {
    if (row.status !== 'ok') continue
    row.vsBare = bare === null ? null : round(row.rps! / bare, 2)
    row.vsPeer = peer === null ? null : round(row.rps! / peer, 2)
    const cpu = cpuOf(row)!
    row.vsBareCpu = bareCpu === null ? null : round(bareCpu / cpu, 2)
    row.vsPeerCpu = peerCpu === null ? null : round(peerCpu / cpu, 2)
  }
  return rows
}

/** Server + client CPU per request of a row (what the "by CPU" ratios compare), or null. */
function cpuOf (row: Row | undefined): number | null {
  return row === undefined || row.status !== 'ok' ? null : row.serverCpuUsPerReq! + row.clientUsPerReq!
}

interface Target { name: string, value: number | null, cpuValue: number | null, target: number, met: boolean | null }

function targetsOf (rows: Row[]): Target[] {
  const rotate = rows.find((row) => row.id === ROTATE_ID && row.status === 'ok')
  const redis = rows.find((row) => row.id === 'xems-redis' && row.status === 'ok')
  const redisPeer = rows.find((row) => row.id === 'fastify-session-redis' && row.status === 'ok')
  const ratio = (a: number | null | undefined, b: number | null | undefined): number | null =>
    a === null || a === undefined || b === null || b === undefined || b === 0 ? null : round(a / b, 2)
  const target = (name: string, value: number | null | undefined, cpuValue: number | null | undefined, limit: number): Target =>
    ({ name, value: value ?? null, cpuValue: cpuValue ?? null, target: limit, met: value === null || value === undefined ? null : value >= limit })
  return [
    target('fastify-xems rotation (MemoryStore) ≥ 1.5× @fastify/session (memory)', rotate?.vsPeer, rotate?.vsPeerCpu, 1.5),
    target('fastify-xems rotation (MemoryStore) ≥ 0.6× bare Fastify', rotate?.vsBare, rotate?.vsBareCpu, 0.6),
    target('fastify-xems RedisStore, rotation ≥ 1.2× @fastify/session + connect-redis', ratio(redis?.rps, redisPeer?.rps),
      ratio(cpuOf(redisPeer), cpuOf(redis)), 1.2)
  ]
}

function git (...args: string[]): string | null {
  try {
    return execFileSync('git', args, { cwd: repo, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim()
  } catch {
    return null
  }
}

function fmt (value: number | null | undefined, digits = 2): string {
  return value === null || value === undefined ? '—' : value.toFixed(digits)
}

function markdown (meta: Record<string, unknown>, rows: Row[], targets: Target[], options: Options): string {
  const lines: string[] = []
  lines.push(`Run ${String(meta.date)} · Node ${String(meta.node)} · ${String(meta.cpus)} × ${String(
    meta.cpuModel
  )} · commit ${String(meta.commit)}${meta.dirty === true ? ' (+ uncommitted changes)' : ''}`)
  lines.push(`${options.vus} VUs over ${options.connections} keep-alive connections · ${options.warmupMs / 1000} s warm-up + ${options.durationMs / 1000} s measured per server` +
    `${options.rounds > 1 ? ` · ${options.rounds} rounds, median round shown` : ''} · server and load client share the ${String(meta.cpus)} cores`)
  lines.push('')
  lines.push('| server | req/s | p50 ms | p99 ms | errors | × bare | × @fastify/session | × bare (CPU) | × @fastify/session (CPU) | CPU µs/req: server / client | Set-Cookie / ' +
    'new value | cores: server / client / other |')
  lines.push('| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |')
  for (const row of rows) {
    if (row.status !== 'ok') {
      lines.push(`| ${row.label} | ${row.status === 'unavailable' ? 'not available yet' : 'failed'} | | | | | | | | | | ${(row.reason ?? '').replace(/\|/g, '/')} |`)
      continue
    }
    lines.push(`| ${row.label} | ${row.rps!} | ${fmt(row.p50)} | ${fmt(row.p99)} | ${row.errors!} | ${fmt(row.vsBare)} | ${fmt(row.vsPeer)} | ` +
      `${fmt(row.vsBareCpu)} | ${fmt(row.vsPeerCpu)} | ${row.serverCpuUsPerReq!} / ${row.clientUsPerReq!} | ` +
      `${fmt(row.setCookiePct, 0)} % / ${fmt(row.newValuePct, 0)} % | ${fmt(row.serverCores)} / ${fmt(row.clientCores)} / ${fmt(row.otherCores)} |`)
  }
  lines.push('')
  for (const target of targets) {
    const verdict = target.met === null ? 'not measured' : target.met ? 'met' : 'NOT met'
    lines.push(`- ${target.name}: ${target.value === null ? '—' : `${target.value.toFixed(2)}×`} → ${verdict}` +
      `${target.cpuValue === null ? '' : ` (by CPU per request: ${target.cpuValue.toFixed(2)}× → ${target.cpuValue >= target.target ? 'met' : 'NOT met'})`}`)
  }
  const floor = rows.find((row) => row.id === 'redis-floor' && row.status === 'ok')
  const redisPeer = rows.find((row) => row.id === 'fastify-session-redis' && row.status === 'ok')
  if (floor !== undefined && redisPeer !== undefined) {
    // For scale: two bare round trips per request, no session library, against the same peer.
    lines.push(`- for scale, the Redis floor (no session library) × @fastify/session + connect-redis: ${(floor.rps! / redisPeer.rps!).toFixed(2)}× ` +
      `(by CPU per request: ${(cpuOf(redisPeer)! / cpuOf(floor)!).toFixed(2)}×)`)
  }
  if (options.rounds > 1) {
    lines.push('')
    lines.push('req/s of each round: ' + rows.filter((row) => row.status === 'ok').map((row) => `${row.id} ${row.roundsRps!.join(' / ')}`).join(' · '))
  }
  return lines.join('\n') + '\n'
}

async function main (): Promise<void> {
  const options = parseOptions(process.argv.slice(2))
  const specs = SERVERS.filter((spec) => options.only === null || options.only.includes(spec.id))
  const profileDir = options.profile === null ? null : join(resultsDir, 'profiles')
  if (profileDir !== null) mkdirSync(profileDir, { recursive: true })
  mkdirSync(resultsDir, { recursive: true })

  const outcomes = new Map<string, RunOutcome[]>()
  const started = Date.now()
  const load0 = loadavg()[0]!
  console.log(`bench: ${specs.length} servers × ${options.rounds} round(s), ${options.warmupMs / 1000} s warm-up + ${options.durationMs / 1000} s each, ` +
    `${options.vus} VUs / ${options.connections} connections; load average before: ${load0.toFixed(2)}`)
  for (let r = 0; r < options.rounds; r++) {
    for (const spec of specs) {
      const outcome = await runServer(spec, options, profileDir)
      const list = outcomes.get(spec.id) ?? []
      list.push(outcome)
      outcomes.set(spec.id, list)
      if (outcome.status === 'ok') {
        const load = outcome.load!
        console.log(`  ${spec.id.padEnd(22)} ${String(load.rps).padStart(6)} req/s  p50 ${load.latencyMs.p50.toFixed(2)} ms  p99 ${load.latencyMs.p99.toFixed(2)} ms  ` +
          `errors ${errorsOf(load)}  CPU µs/req ${Math.round(1000 * outcome.serverCpuMs! / Math.max(1, load.requests))} server + ` +
          `${Math.round(1000 * load.clientCpuMs / Math.max(1, load.requests))} client  other load ${outcome.otherCores?.toFixed(2) ?? '?'} cores`)
      } else {
        console.log(`  ${spec.id.padEnd(22)} ${outcome.status === 'unavailable' ? 'not available yet' : 'FAILED'}: ${outcome.reason ?? ''}`)
      }
    }
  }

  const rows = buildRows(outcomes, specs)
  const targets = targetsOf(rows)
  const status = git('status', '--porcelain')
  const meta = {
    date: new Date(started).toISOString(),
    node: process.version,
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model ?? 'unknown',
    commit: git('rev-parse', '--short', 'HEAD') ?? 'unknown',
    dirty: status === null ? null : status !== '',
    loadAverageBefore: round(load0, 2),
    loadAverageAfter: round(loadavg()[0]!, 2),
    seconds: Math.round((Date.now() - started) / 1000)
  }
  const md = markdown(meta, rows, targets, options)
  const json = {
    meta,
    settings: { vus: options.vus, connections: options.connections, warmupMs: options.warmupMs, durationMs: options.durationMs, rounds: options.rounds },
    servers: specs.map((spec) => ({ id: spec.id, label: spec.label, description: spec.description })),
    rows,
    targets,
    runs: Object.fromEntries(outcomes)
  }
  writeFileSync(join(resultsDir, `${options.tag}.json`), JSON.stringify(json, null, 2) + '\n')
  writeFileSync(join(resultsDir, `${options.tag}.md`), md)
  console.log('')
  console.log(md)
  console.log(`written: ${relative(process.cwd(), join(resultsDir, `${options.tag}.json`))}, ${relative(process.cwd(), join(resultsDir, `${options.tag}.md`))}`)

  if (options.profile !== null) {
    const run = outcomes.get(options.profile)?.find((outcome) => outcome.profile !== undefined)
    const row = rows.find((r) => r.id === options.profile)
    if (run?.profile === undefined) {
      console.log('no CPU profile was written')
    } else {
      const summary = summariseProfile(JSON.parse(readFileSync(run.profile, 'utf8')) as CpuProfile, repo, run.windowUs)
      const text = formatProfileSummary(summary, {
        title: `CPU profile of ${row?.label ?? options.profile} (measured window only, --cpu-prof-interval 200 µs)`,
        ...(row?.serverCpuUsPerReq === undefined ? {} : { perRequestUs: row.serverCpuUsPerReq })
      })
      writeFileSync(join(resultsDir, `profile-${options.profile}.md`), text)
      console.log(text)
      console.log(`profile: ${relative(process.cwd(), run.profile)} (open it in Chrome DevTools → Performance); summary: bench/results/profile-${options.profile}.md`)
    }
  }
}

main().catch((err: unknown) => {
  console.error(err)
  process.exit(1)
})
