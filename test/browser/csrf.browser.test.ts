/**
 * Issue 14: the built-in CSRF check in Chromium. The app listens on http://localhost:A; a second server
 * on another loopback port B serves the attacker's page, as http://127.0.0.1:B (another site) and as
 * http://localhost:B (the same site, another origin: a sibling subdomain's position). From each, a
 * real form post and a `fetch` with credentials aim at a state-changing route. The session cookie is
 * SameSite=None here, so that the browser does send it cross-site and it is the plugin's check, not
 * SameSite, that refuses (recorded on the server: the cookie arrived, Sec-Fetch-Site said where from,
 * the answer was 403 and no handler ran). The same post from the app's own page goes through.
 */
import { existsSync } from 'node:fs'
import Fastify from 'fastify'
import t from 'tap'
import { chromium, type Browser } from 'playwright-core'
import { xemsSession } from '../../index.js'

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'

interface Seen { url: string, method: string, site: string | null, origin: string | null, cookie: boolean, status: number }

if (!existsSync(CHROMIUM)) {
  if (process.env.CI !== undefined) t.fail(`Chromium is missing at ${CHROMIUM}: .ci/run installs Debian's chromium package`)
  else t.test('CSRF in Chromium', { skip: `Chromium is not installed at ${CHROMIUM} (apt-get install -y chromium)` }, async () => {})
} else {
  t.test('Chromium: cross-site and same-site form posts and fetches carrying the cookie get 403; the app\'s own post passes', async (t) => {
    const seen: Seen[] = []
    let transfers = 0
    const app = Fastify()
    await app.register(xemsSession, { cookie: { sameSite: 'none' } })
    app.addHook('onResponse', async (request, reply) => {
      if (!request.url.startsWith('/transfer')) return
      seen.push({
        url: request.url,
        method: request.method,
        site: (request.headers['sec-fetch-site'] as string | undefined) ?? null,
        origin: request.headers.origin ?? null,
        cookie: (request.headers.cookie ?? '').includes('__Host-xems='),
        status: reply.statusCode
      })
    })
    app.post('/login', async (_request, reply) => { await reply.xLink({ who: 'ada' }, { userId: 'ada' }); return { ok: true } })
    app.get('/', async (_request, reply) => reply.type('text/html').send('<!doctype html><title>app</title><p>app</p>'))
    app.post('/transfer', { preHandler: app.xems.requireSession() }, async () => { transfers++; return { ok: true } })
    await app.listen({ port: 0, host: '127.0.0.1' })
    const appPort = (app.server.address() as { port: number }).port

    const attacker = Fastify()
    attacker.get('/form', async (_request, reply) => reply.type('text/html').send(
      `<!doctype html><title>attacker</title><form id="f" method="post" action="http://localhost:${appPort}/transfer?via=form"><input name="to" value="mallory"></form>`))
    attacker.get('/blank', async (_request, reply) => reply.type('text/html').send('<!doctype html><title>attacker</title>'))
    await attacker.listen({ port: 0, host: '127.0.0.1' })
    const attackerPort = (attacker.server.address() as { port: number }).port

    const browser: Browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'] })
    t.teardown(async () => { await browser.close(); await app.close(); await attacker.close() })
    t.comment(`Chromium ${browser.version()}`)
    const context = await browser.newContext()
    const page = await context.newPage()
    await page.goto(`http://localhost:${appPort}/`)
    t.equal(await page.evaluate(async () => (await fetch('/login', { method: 'POST' })).status), 200, 'signed in')

    const own = await page.evaluate(async () => (await fetch(
      '/transfer?via=own', { method: 'POST', body: '{"to":"bob"}', headers: { 'content-type': 'application/json' } }
    )).status)
    t.equal(own, 200, 'the app\'s own fetch passes')
    t.equal(transfers, 1)

    for (const [label, origin, site] of [['another site', `http://127.0.0.1:${attackerPort}`, 'cross-site'], ['the same site, another origin', `http://localhost:${attackerPort}`, 'same-site']] as const) {
      const before = transfers
      const evil = await context.newPage()
      await evil.goto(`${origin}/form`)
      const answer = evil.waitForResponse((response) => response.url().includes('/transfer?via=form'))
      await evil.evaluate(() => { (document.getElementById('f') as HTMLFormElement).submit() })
      t.equal((await answer).status(), 403, `${label}: a real form post is refused`)
      await evil.waitForURL(/via=form/)
      const evil2 = await context.newPage()
      await evil2.goto(`${origin}/blank`)
      await evil2.evaluate(async (url) => {
        await fetch(url, { method: 'POST', credentials: 'include', mode: 'no-cors', body: 'to=mallory', headers: { 'content-type': 'text/plain' } }).catch(() => null)
      }, `http://localhost:${appPort}/transfer?via=fetch`)
      await new Promise((resolve) => setTimeout(resolve, 200))
      const form = seen.filter((s) => s.url.includes('via=form')).at(-1)
      const fetched = seen.filter((s) => s.url.includes('via=fetch')).at(-1)
      t.comment(`${label}: form ${JSON.stringify(form)}; fetch ${JSON.stringify(fetched)}`)
      t.match(form, { site, origin, cookie: true, status: 403 }, `${label}: the form post carried the cookie and Sec-Fetch-Site: ${site}, and got 403`)
      t.ok(fetched !== undefined, `${label}: the fetch reached the server`)
      if (fetched?.cookie === true) t.match(fetched, { site, status: 403 }, `${label}: the fetch carried the cookie and got 403`)
      else {
        // Chromium 156 keeps third-party cookies out of a cross-site fetch even with SameSite=None:
        // no cookie, nothing to ride on, and the route answers 401 (no session).
        t.match(fetched, { site, cookie: false, status: 401 }, `${label}: the browser sent no cookie with the fetch: no session (401)`)
      }
      t.equal(transfers, before, `${label}: no transfer handler ran`)
      await evil.close()
      await evil2.close()
    }
    const last = await page.evaluate(async () => (await fetch('/transfer?via=own-again', { method: 'POST', body: '{}', headers: { 'content-type': 'application/json' } })).status)
    t.equal(last, 200, 'the session still works on its own site')
  })
}
