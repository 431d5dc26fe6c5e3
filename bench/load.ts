/**
 * The load client, in its own process: `node dist/bench/load.js '<LoadConfig JSON>'` (forked by run.js).
 *
 * Every virtual user (VU) keeps its own cookie jar: it logs in once (POST /login), then loops GET /me
 * sending its current cookie and taking the new value from each response's Set-Cookie, so rotating
 * servers are measured with the token they just issued (a client replaying one cookie would not
 * measure rotation). The VUs share one undici Pool of keep-alive connections: with more VUs than
 * connections, a request also waits for a free connection, as it would behind a busy proxy.
 *
 * Correctness is checked while measuring: every non-2xx answer, every body that is not the VU's own
 * session data and every socket error is counted. On a 401 the VU logs in again (and it counts).
 */
import { createHistogram } from 'node:perf_hooks'
import { Pool } from 'undici'
import type { LoadConfig, LoadMessage, LoadResult } from './common.js'

const config = JSON.parse(process.argv[2] ?? '{}') as LoadConfig

function send (message: LoadMessage): void {
  if (process.send !== undefined) process.send(message)
  else if (message.type === 'result') console.log(JSON.stringify(message.result, null, 2))
}

/** One VU's cookies: name → value, and the Cookie header they make. */
class CookieJar {
  readonly #cookies = new Map<string, string>()
  header = ''

  /**
   * Applies the Set-Cookie headers of a response. Returns 0 when there was none, 1 when they only
   * re-sent what the jar held, 2 when a value changed (a new token) or a cookie was cleared.
   */
  update (setCookie: string | string[] | undefined): 0 | 1 | 2 {
    if (setCookie === undefined) return 0
    let outcome: 1 | 2 = 1
    for (const line of Array.isArray(setCookie) ? setCookie : [setCookie]) {
      const semi = line.indexOf(';')
      const pair = semi === -1 ? line : line.slice(0, semi)
      const eq = pair.indexOf('=')
      if (eq <= 0) continue
      const name = pair.slice(0, eq).trim()
      const value = pair.slice(eq + 1).trim()
      const attributes = semi === -1 ? '' : line.slice(semi).toLowerCase()
      const cleared = value === '' || /;\s*max-age=(0|-\d+)/.test(attributes) || /;\s*expires=thu, 01 jan 1970/.test(attributes)
      if (cleared) {
        if (this.#cookies.delete(name)) outcome = 2
      } else if (this.#cookies.get(name) !== value) {
        this.#cookies.set(name, value)
        outcome = 2
      }
    }
    if (outcome === 2) this.header = [...this.#cookies].map(([name, value]) => `${name}=${value}`).join('; ')
    return outcome
  }
}

const pool = new Pool(config.origin, { connections: config.connections, pipelining: 1, keepAliveTimeout: 60_000, keepAliveMaxTimeout: 60_000 })
const histogram = createHistogram()
let measuring = false
let stopping = false
const measured = { requests: 0, non2xx: 0, badBodies: 0, networkErrors: 0, setCookie: 0, newValue: 0, statuses: {} as Record<string, number> }
let otherErrors = 0
let logins = 0

async function login (user: string, jar: CookieJar): Promise<boolean> {
  logins++
  try {
    const response = await pool.request({
      path: '/login',
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(jar.header === '' ? {} : { cookie: jar.header }) },
      body: JSON.stringify({ user })
    })
    await response.body.text()
    jar.update(response.headers['set-cookie'])
    if (response.statusCode >= 200 && response.statusCode < 300 && (jar.header !== '' || !config.sessions)) return true
  } catch {}
  otherErrors++
  return false
}

async function virtualUser (index: number): Promise<void> {
  const user = `vu-${String(index).padStart(4, '0')}`
  const marker = config.sessions ? `"id":"${user}"` : '"id":"constant"'
  const jar = new CookieJar()
  while (!stopping && !(await login(user, jar))) await new Promise((resolve) => setTimeout(resolve, 100))
  while (!stopping) {
    const started = performance.now()
    let status = 0
    let body = ''
    let cookie: 0 | 1 | 2 = 0
    try {
      const response = await pool.request({ path: '/me', method: 'GET', headers: jar.header === '' ? {} : { cookie: jar.header } })
      body = await response.body.text()
      status = response.statusCode
      cookie = jar.update(response.headers['set-cookie'])
    } catch {
      if (measuring) measured.networkErrors++
      else otherErrors++
      await new Promise((resolve) => setTimeout(resolve, 10))
      continue
    }
    const micros = Math.max(1, Math.round((performance.now() - started) * 1000))
    const ok = status >= 200 && status < 300
    if (measuring) {
      measured.requests++
      histogram.record(micros)
      if (cookie !== 0) measured.setCookie++
      if (cookie === 2) measured.newValue++
      if (!ok) {
        measured.non2xx++
        measured.statuses[status] = (measured.statuses[status] ?? 0) + 1
      } else if (!body.includes(marker)) {
        measured.badBodies++
      }
    } else if (!ok || !body.includes(marker)) {
      otherErrors++
    }
    if (status === 401) await login(user, jar)
  }
}

async function main (): Promise<void> {
  const users = Array.from({ length: config.vus }, async (_, i) => await virtualUser(i + 1))
  await new Promise((resolve) => setTimeout(resolve, config.warmupMs))
  histogram.reset()
  const cpuStart = process.cpuUsage()
  send({ type: 'measure-start' })
  measuring = true
  const started = performance.now()
  await new Promise((resolve) => setTimeout(resolve, config.durationMs))
  measuring = false
  const elapsedMs = performance.now() - started
  const cpu = process.cpuUsage(cpuStart)
  send({ type: 'measure-stop' })
  stopping = true
  await Promise.all(users)
  await pool.close()
  const ms = (value: number): number => Math.round(value / 10) / 100
  const result: LoadResult = {
    requests: measured.requests,
    elapsedMs: Math.round(elapsedMs),
    rps: Math.round(measured.requests / (elapsedMs / 1000)),
    latencyMs: {
      p50: ms(histogram.percentile(50)),
      p90: ms(histogram.percentile(90)),
      p99: ms(histogram.percentile(99)),
      max: ms(histogram.max),
      mean: ms(histogram.mean)
    },
    statuses: measured.statuses,
    non2xx: measured.non2xx,
    badBodies: measured.badBodies,
    networkErrors: measured.networkErrors,
    otherErrors,
    setCookie: measured.setCookie,
    newValue: measured.newValue,
    logins,
    clientCpuMs: Math.round((cpu.user + cpu.system) / 1000)
  }
  send({ type: 'result', result })
  process.disconnect?.()
}

main().catch((err: unknown) => {
  console.error(err)
  process.exit(1)
})
