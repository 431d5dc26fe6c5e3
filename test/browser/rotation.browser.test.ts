/// <reference lib="dom" />
/**
 * Issue 11's browser cases, in Debian's Chromium (driven by playwright-core), against a small app built
 * here: an honest browser that presents a rotated token must never be taken for a thief.
 *
 * The server side records every request: which token generation it presented (generations are numbered in
 * the order the server issued them; tokens are compared by SHA-256 and never printed) and what it was
 * answered. The assertions on that record prove each scenario really happened (requests that presented
 * an already rotated token, a rotation the browser never learnt of), not a lucky ordering.
 */
import { createHash } from 'node:crypto'
import { existsSync } from 'node:fs'
import { setTimeout as sleep } from 'node:timers/promises'
import Fastify, { type FastifyInstance } from 'fastify'
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core'
import t, { type Test } from 'tap'
import { xemsSession, type Duration } from '../../index.js'

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'
const SLOW_MS = 1500
const COOKIE = 'xems'

/** One request as the server saw it. */
interface Hit {
  /** Arrival order. */
  n: number
  method: string
  url: string
  /** Arrival and send times, ms since the app started. */
  at: number
  sentAt?: number
  /** Generation of the token presented: null none, 0 one this test never saw issued. */
  presented: number | null
  /** The newest generation the server had issued (to anyone) when the request arrived. */
  newest: number
  status?: number
  /** Generation in the response's Set-Cookie; 'cleared' for a cleared cookie, null for none. */
  answered?: number | 'cleared' | null
  /** The Set-Cookie carried a token first issued by this response (a rotation or a login). */
  fresh?: boolean
  /** The client had gone away (aborted) by the time the response was sent. */
  aborted?: boolean
}

// No favicon request: Chromium would send one with the cookie after the page loads, and its answer would
// rotate the session at a moment the test does not control.
const PAGE = `<!doctype html>
<meta charset="utf-8"><title>xems rotation</title>
<link rel="icon" href="data:,">
<button id="me">me</button> <button id="logout">sign out</button>
<pre id="out"></pre>
<script>
  async function status (url, init) {
    try { const res = await fetch(url, init); await res.text(); return res.status } catch (err) { return err.name }
  }
  window.login = () => status('/login', { method: 'POST' })
  window.me = () => status('/me')
  // Four identical GETs at once, default cache mode, same URL.
  window.fourSlow = () => Promise.all([0, 1, 2, 3].map(() => status('/slow')))
  // The same, and 2 s in (after the first GET was answered) one other guarded request, which presents
  // the new token while GETs 3 and 4 still wait in the cache lock holding the old one.
  window.fourSlowAndMe = () => Promise.all([
    Promise.all([0, 1, 2, 3].map(() => status('/slow'))),
    new Promise((resolve) => setTimeout(resolve, 2000)).then(() => status('/me?during'))
  ]).then(([slow, me]) => [...slow, me])
  // A slow GET aborted after ~200 ms: the server still answers (and rotates), the browser never sees it.
  window.abortedSlow = async () => {
    const controller = new AbortController()
    setTimeout(() => controller.abort(), 200)
    return await status('/slow', { signal: controller.signal })
  }
  document.getElementById('me').addEventListener('click', async () => {
    document.getElementById('out').textContent = 'me ' + await status('/me')
  })
  document.getElementById('logout').addEventListener('click', async () => {
    document.getElementById('out').textContent = 'logout ' + await status('/logout', { method: 'POST' })
  })
</script>`

/**
 * A guarded page that fires 20 guarded fetches as it loads and, while about half of them are still in
 * flight, navigates to its next round; the last round waits for all 20. Every settled fetch is kept in
 * sessionStorage, so the last round can show the statuses of all rounds.
 */
const APP_PAGE = `<!doctype html>
<meta charset="utf-8"><title>xems app</title>
<link rel="icon" href="data:,">
<pre id="out"></pre>
<script>
  const round = Number(new URLSearchParams(location.search).get('round') ?? '1')
  const rounds = Number(new URLSearchParams(location.search).get('rounds') ?? '1')
  const seen = JSON.parse(sessionStorage.getItem('statuses') ?? '[]')
  const keep = (s) => { seen.push(s); sessionStorage.setItem('statuses', JSON.stringify(seen)) }
  let settled = 0
  const fetches = Array.from({ length: 20 }, (_, i) =>
    fetch('/me?round=' + round + '&i=' + i + '&wait=' + ((i * 37) % 400))
      .then(async (res) => { await res.text(); keep(res.status) }, (err) => keep(err.name))
      .then(() => {
        settled++
        if (settled === 10 && round < rounds) location.assign('/app?round=' + (round + 1) + '&rounds=' + rounds)
      }))
  if (round === rounds) Promise.all(fetches).then(() => { document.getElementById('out').textContent = JSON.stringify(seen) })
</script>`

function fingerprint (token: string): string {
  return createHash('sha256').update(token).digest('hex')
}

function cookieIn (header: string | undefined): string | undefined {
  if (header === undefined) return undefined
  const match = new RegExp(`(?:^|;\\s*)${COOKIE}=([^;]*)`).exec(header)
  return match === null ? undefined : decodeURIComponent(match[1]!)
}

interface TestApp {
  app: FastifyInstance
  base: string
  hits: Hit[]
  /** Reuse (theft signal) events the engine emitted. */
  reuses: () => number
  /** Generation of a token (0: never issued to this test's knowledge). */
  generationOf: (token: string) => number
  /** The newest generation issued so far. */
  newestGeneration: () => number
  /** Hits to one path, in arrival order. */
  hitsTo: (path: string) => Hit[]
  /** A one-line account of a hit, with generations only. */
  describe: (hit: Hit) => string
}

async function startApp (gracePeriod?: Duration): Promise<TestApp> {
  const app = Fastify({ logger: false })
  const started = Date.now()
  const generations = new Map<string, number>()
  const hits: Hit[] = []
  const byRequest = new WeakMap<object, Hit>()
  let newest = 0
  let reuses = 0
  const generationOf = (token: string): number => generations.get(fingerprint(token)) ?? 0

  // Before the session plugin's hooks: the token exactly as the browser sent it.
  app.addHook('onRequest', async (request) => {
    const token = cookieIn(request.headers.cookie)
    const hit: Hit = {
      n: hits.length + 1,
      method: request.method,
      url: request.url,
      at: Date.now() - started,
      presented: token === undefined || token === '' ? null : generationOf(token),
      newest
    }
    hits.push(hit)
    byRequest.set(request, hit)
  })
  await app.register(xemsSession, { cookie: { secure: false }, ...(gracePeriod === undefined ? {} : { gracePeriod }) })
  app.xems.on('reuse', () => { reuses++ })
  // After the session plugin's onSend: the Set-Cookie it decided on.
  app.addHook('onSend', async (request, reply, payload) => {
    const hit = byRequest.get(request)
    if (hit === undefined) return payload
    hit.sentAt = Date.now() - started
    hit.status = reply.statusCode
    hit.aborted = request.raw.destroyed || request.socket.destroyed
    const setCookie = reply.getHeader('set-cookie')
    const lines = setCookie === undefined ? [] : Array.isArray(setCookie) ? setCookie : [String(setCookie)]
    const line = lines.find((value) => value.startsWith(`${COOKIE}=`))
    if (line === undefined) {
      hit.answered = null
    } else {
      const token = decodeURIComponent(line.slice(COOKIE.length + 1).split(';')[0]!)
      if (token === '') {
        hit.answered = 'cleared'
      } else {
        const key = fingerprint(token)
        hit.fresh = !generations.has(key)
        if (hit.fresh) generations.set(key, ++newest)
        hit.answered = generations.get(key)!
      }
    }
    return payload
  })

  app.get('/', async (_request, reply) => reply.type('text/html; charset=utf-8').send(PAGE))
  app.get('/app', { preHandler: app.xems.requireSession() }, async (_request, reply) => reply.type('text/html; charset=utf-8').send(APP_PAGE))
  app.post('/login', async (_request, reply) => {
    await reply.xLink({ user: { id: 'ada', name: 'Ada' } })
    return { ok: true }
  })
  app.get('/slow', { preHandler: app.xems.requireSession() }, async () => {
    await sleep(SLOW_MS)
    return { ok: true }
  })
  app.get<{ Querystring: { wait?: string } }>('/me', { preHandler: app.xems.requireSession() }, async (request) => {
    const wait = Math.min(Number(request.query.wait ?? 0) || 0, 500)
    if (wait > 0) await sleep(wait)
    return { user: request.session!.data.user?.name }
  })
  app.post('/logout', async (_request, reply) => {
    await reply.xUnlink()
    return { ok: true }
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const address = app.server.address()
  const base = `http://127.0.0.1:${typeof address === 'object' && address !== null ? address.port : 0}`
  const describe = (hit: Hit): string => {
    const gen = (g: number | null | undefined | 'cleared'): string => g === null || g === undefined ? 'none' : g === 'cleared' ? 'cleared' : g === 0 ? 'g?' : `g${g}`
    return `#${hit.n} ${hit.method} ${hit.url} at ${hit.at} ms presented ${gen(hit.presented)} (newest issued g${hit.newest})` +
      ` → ${hit.status ?? 'no answer'} at ${hit.sentAt ?? '-'} ms, cookie ${gen(hit.answered)}${hit.fresh === true ? ' (new)' : ''}${hit.aborted === true ? ', client gone' : ''}`
  }
  return {
    app,
    base,
    hits,
    reuses: () => reuses,
    generationOf,
    newestGeneration: () => newest,
    hitsTo: (path) => hits.filter((hit) => hit.url.split('?')[0] === path),
    describe
  }
}

/** The server answered every hit (its onSend ran). */
async function settledHits (app: TestApp, count: number, timeout = 10_000): Promise<void> {
  const deadline = Date.now() + timeout
  while (app.hits.filter((hit) => hit.status !== undefined).length < count || app.hits.some((hit) => hit.status === undefined)) {
    if (Date.now() > deadline) throw new Error(`the server answered ${app.hits.filter((hit) => hit.status !== undefined).length} of ${app.hits.length} requests (wanted ${count})`)
    await sleep(20)
  }
}

async function browserCookie (context: BrowserContext, base: string): Promise<string | undefined> {
  return (await context.cookies(base)).find((cookie) => cookie.name === COOKIE)?.value
}

/** Generation of the token the browser holds: null for none. */
async function heldGeneration (context: BrowserContext, app: TestApp): Promise<number | null> {
  // fetch() settles when the headers arrive; the network service may store the cookie a moment later.
  for (let tries = 0; ; tries++) {
    const cookie = await browserCookie(context, app.base)
    const generation = cookie === undefined ? null : app.generationOf(cookie)
    if (tries >= 20 || generation === app.newestGeneration()) return generation
    await sleep(50)
  }
}

/** A signed-in page; `gracePeriod` (default: the plugin's) short, to prove a case is carried by the unseen window, not by grace. */
async function signedIn (t: Test, browser: Browser, gracePeriod?: Duration): Promise<{ app: TestApp, context: BrowserContext, page: Page }> {
  const app = await startApp(gracePeriod)
  const context = await browser.newContext()
  t.teardown(async () => { await context.close(); await app.app.close() })
  const page = await context.newPage()
  await page.goto(app.base + '/')
  t.equal(await page.evaluate(() => (window as unknown as { login: () => Promise<number> }).login()), 200, 'signed in')
  t.equal(await heldGeneration(context, app), 1, 'the browser holds the login token (g1)')
  return { app, context, page }
}

type PageApi = Record<'login' | 'me' | 'fourSlow' | 'fourSlowAndMe' | 'abortedSlow', () => Promise<unknown>>
const call = async <T>(page: Page, name: keyof PageApi): Promise<T> => await page.evaluate(async (fn) => await (window as unknown as PageApi)[fn]!(), name) as T

if (!existsSync(CHROMIUM)) {
  if (process.env.CI !== undefined) t.fail(`Chromium is missing at ${CHROMIUM}: .ci/run installs Debian's chromium package`)
  else t.test('rotation in a real browser', { skip: `Chromium is not installed at ${CHROMIUM} (apt-get install -y chromium)` }, async () => {})
} else {
  const browser: Browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--no-first-run', '--disable-component-update', '--disable-sync']
  })
  t.teardown(async () => { await browser.close() })

  t.test('four identical slow GETs at once: Chromium serialises them on its cache, each with the cookie it started with; all 200', async (t) => {
    const { app, context, page } = await signedIn(t, browser, '2s')
    const statuses = await call<Array<number | string>>(page, 'fourSlow')
    await settledHits(app, app.hits.length)
    const slow = app.hitsTo('/slow')
    for (const hit of slow) t.comment(app.describe(hit))
    t.same(statuses, [200, 200, 200, 200], 'all four GETs answered 200 in the browser')
    t.equal(slow.length, 4, 'four GETs reached the server')
    t.ok(slow.every((hit) => hit.status === 200), 'the server answered all four 200')
    // Serialised: each GET reached the server only after the one before it had been answered.
    for (let i = 1; i < slow.length; i++) {
      t.ok(slow[i]!.at >= slow[i - 1]!.sentAt!, `GET ${i + 1} arrived after GET ${i} was answered (the cache lock serialised them)`)
    }
    // Each carried the cookie it started with: the login token, rotated away by the first answer.
    t.ok(slow.every((hit) => hit.presented === 1), 'every GET presented the token it started with (g1)')
    const stale = slow.filter((hit) => hit.presented !== null && hit.presented < hit.newest)
    t.ok(stale.length >= 3, `at least three GETs presented a token the server had already rotated (${stale.length})`)
    const late = slow[3]!.at - slow[0]!.sentAt!
    t.ok(late > app.app.xems.gracePeriod, `the last one ${late} ms after that rotation, beyond the ${app.app.xems.gracePeriod} ms grace period`)
    t.equal(app.reuses(), 0, 'no theft signal')
    t.equal(await heldGeneration(context, app), 2, 'the browser holds g2, learnt from the first answer')
    t.equal(await call(page, 'me'), 200, 'the session is alive: a guarded request afterwards answers 200')
    const last = app.hits[app.hits.length - 1]!
    t.equal(last.status, 200)
    t.ok(last.presented !== null && last.presented > 1, 'and it presented the rotated token the browser learnt')
  })

  // The queued GETs carry the old token past the moment another request used the new one: what covers
  // them is the grace period, which the default (10 s) makes long enough for a browser's own queues.
  t.test('four serialised slow GETs and one other guarded request while they wait: all 200, session alive', async (t) => {
    const { app, page } = await signedIn(t, browser)
    const statuses = await call<Array<number | string>>(page, 'fourSlowAndMe')
    await settledHits(app, app.hits.length)
    for (const hit of app.hits.filter((hit) => hit.url.startsWith('/slow') || hit.url.startsWith('/me'))) t.comment(app.describe(hit))
    const slow = app.hitsTo('/slow')
    t.ok(slow.length === 4 && slow.every((hit) => hit.presented === 1), 'the four GETs all presented g1 (the cookie they started with)')
    for (let i = 1; i < slow.length; i++) t.ok(slow[i]!.at >= slow[i - 1]!.sentAt!, `GET ${i + 1} arrived after GET ${i} was answered`)
    const during = app.hitsTo('/me')[0]
    t.ok(during !== undefined && during.presented === 2 && during.at < slow[2]!.at, 'the other request presented g2 while GETs 3 and 4 were still queued')
    t.same(statuses, [200, 200, 200, 200, 200], 'all five answered 200 in the browser')
    t.equal(app.reuses(), 0, 'no theft signal')
    t.equal(await call(page, 'me'), 200, 'the session is alive')
  })

  t.test('an aborted fetch (the server rotates, the browser never learns it) and a click 3 s later: 200, session alive', async (t) => {
    const { app, context, page } = await signedIn(t, browser, '2s')
    const before = await browserCookie(context, app.base)
    t.equal(await call(page, 'abortedSlow'), 'AbortError', 'the browser aborted the fetch')
    await settledHits(app, app.hits.length)
    const slow = app.hitsTo('/slow')
    for (const hit of slow) t.comment(app.describe(hit))
    t.equal(slow.length, 1, 'the aborted GET reached the server')
    t.equal(slow[0]!.presented, 1, 'presenting g1')
    t.ok(slow[0]!.fresh === true && slow[0]!.answered === 2, 'the server rotated the session to g2 in its answer')
    t.equal(slow[0]!.aborted, true, 'the browser had gone by the time the server answered')
    t.equal(await browserCookie(context, app.base), before, 'the browser never saw the Set-Cookie: it still holds g1')
    await sleep(3000)
    const count = app.hits.length
    await page.click('#me')
    await page.locator('#out', { hasText: /^me / }).waitFor()
    t.equal(await page.textContent('#out'), 'me 200', 'the click 3 s later answered 200')
    await settledHits(app, count + 1)
    const click = app.hits[count]!
    t.comment(app.describe(click))
    t.ok(click.url === '/me' && click.presented === 1 && click.newest === 2, 'the click presented g1, rotated away more than 3 s before')
    const late = click.at - slow[0]!.sentAt!
    t.ok(late > app.app.xems.gracePeriod, `${late} ms after that rotation, beyond the ${app.app.xems.gracePeriod} ms grace period`)
    t.equal(click.answered, 2, 'and was answered with the current token (g2)')
    t.equal(app.reuses(), 0, 'no theft signal')
    t.equal(await heldGeneration(context, app), 2, 'the browser now holds g2')
    t.equal(await call(page, 'me'), 200, 'the session is alive')
    t.equal(app.hits[app.hits.length - 1]!.presented, 2)
  })

  t.test('page loads firing 20 guarded fetches and a navigation, four rounds: all 200; after sign-out the old cookie is refused', async (t) => {
    const { app, context, page } = await signedIn(t, browser)
    const rounds = 4
    const firstHit = app.hits.length
    await page.goto(`${app.base}/app?round=1&rounds=${rounds}`)
    await page.waitForURL(`${app.base}/app?round=${rounds}&rounds=${rounds}`)
    await page.locator('#out', { hasText: /^\[/ }).waitFor()
    const seen = JSON.parse((await page.textContent('#out'))!) as Array<number | string>
    await sleep(600) // requests of earlier rounds still on their way (the longest waits 400 ms)
    await settledHits(app, app.hits.length)
    const round = app.hits.slice(firstHit)
    const pages = round.filter((hit) => hit.url.startsWith('/app'))
    const fetches = round.filter((hit) => hit.url.startsWith('/me'))
    t.equal(pages.length, rounds, `${rounds} guarded page loads reached the server`)
    // Chromium keeps at most 6 connections per host: fetches still queued when a page navigates away are
    // cancelled before they are sent.
    t.ok(
      fetches.length >= 10 * (rounds - 1) + 20 && fetches.length <= 20 * rounds,
      `at least 10 fetches of each navigating round and all 20 of the last reached the server (${fetches.length})`
    )
    const refused = round.filter((hit) => hit.status !== 200)
    for (const hit of refused) t.comment(app.describe(hit))
    t.equal(refused.length, 0, 'the server answered every page load and fetch 200')
    t.ok(
      seen.length >= 20 * rounds - 10 * (rounds - 1) && seen.every((s) => s === 200 || s === 'AbortError' || s === 'TypeError'),
      'every fetch the pages saw settle answered 200 (or was cut off by the navigation)'
    )
    t.equal(seen.filter((s) => s === 200).length >= 10 * (rounds - 1) + 20, true, 'at least 10 fetches per navigating round and all 20 of the last answered 200 in the browser')
    const stale = round.filter((hit) => hit.presented !== null && hit.presented < hit.newest)
    t.comment(`${stale.length} of ${round.length} requests presented a token the server had already rotated; ${round.filter((hit) => hit.fresh === true).length} rotations; ` +
      `${round.filter((hit) => hit.aborted === true).length} answers the browser had stopped waiting for`)
    t.ok(stale.length > 0, 'requests did present rotated tokens (the scenario happened)')
    t.equal(app.reuses(), 0, 'no theft signal')
    await page.goto(app.base + '/')
    t.equal(await call(page, 'me'), 200, 'the session is alive')

    const old = await browserCookie(context, app.base)
    if (old === undefined) throw new Error('the browser holds no session cookie')
    t.ok(app.generationOf(old) > 1, 'the browser holds a rotated token')
    await page.click('#logout')
    await page.locator('#out', { hasText: /^logout / }).waitFor()
    t.equal(await page.textContent('#out'), 'logout 200', 'signed out')
    t.equal(await browserCookie(context, app.base), undefined, 'signing out cleared the cookie')
    t.equal(await call(page, 'me'), 401, 'no session without the cookie')
    const url = new URL(app.base)
    await context.addCookies([{ name: COOKIE, value: old, domain: url.hostname, path: '/', httpOnly: true, secure: false, sameSite: 'Lax' }])
    const count = app.hits.length
    t.equal(await call(page, 'me'), 401, 'the cookie from before sign-out, put back, no longer works')
    await settledHits(app, count + 1)
    const replay = app.hits[count]!
    t.comment(app.describe(replay))
    t.equal(replay.presented, app.generationOf(old), 'the replay presented the pre-sign-out token')
  })
}
