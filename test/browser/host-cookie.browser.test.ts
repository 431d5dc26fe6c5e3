/**
 * Issue 12, item 6: what Debian's Chromium accepts on plain http://localhost (and http://127.0.0.1).
 * A `__Host-` cookie with Secure, Path=/ and no Domain is kept and sent back (Chromium treats
 * localhost as a secure context); without Secure, or with a Domain, it is dropped. The session plugin's
 * default `__Host-xems` cookie (secure: true) therefore works in Chromium on localhost during
 * development, and the session it carries resolves. The version is printed as a comment.
 */
import { existsSync } from 'node:fs'
import Fastify from 'fastify'
import t from 'tap'
import { chromium, type Browser } from 'playwright-core'
import { xemsSession } from '../../index.js'

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'

if (!existsSync(CHROMIUM)) {
  if (process.env.CI !== undefined) t.fail(`Chromium is missing at ${CHROMIUM}: .ci/run installs Debian's chromium package`)
  else t.test('__Host- cookies on http://localhost', { skip: `Chromium is not installed at ${CHROMIUM} (apt-get install -y chromium)` }, async () => {})
} else {
  t.test('Chromium on http://localhost keeps a Secure __Host- cookie, drops one without Secure or with a Domain; the default session cookie works', async (t) => {
    const app = Fastify()
    await app.register(xemsSession, {})
    app.post('/login', async (_request, reply) => { await reply.xLink({ who: 'ada' }); return { ok: true } })
    app.get('/me', { preHandler: app.xems.requireSession() }, async (request) => ({ who: request.session!.data.who }))
    app.get('/variants', async (_request, reply) => {
      reply.header(
        'set-cookie',
        ['__Host-secure=1; Secure; Path=/; HttpOnly', '__Host-plain=1; Path=/; HttpOnly', '__Host-domain=1; Secure; Path=/; Domain=localhost', 'plain-secure=1; Secure; Path=/']
      )
      return 'set'
    })
    app.get('/echo', async (request) => request.headers.cookie ?? '')
    await app.listen({ port: 0, host: '127.0.0.1' })
    const address = app.server.address()
    const port = typeof address === 'object' && address !== null ? address.port : 0
    const browser: Browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'] })
    t.teardown(async () => { await browser.close(); await app.close() })
    t.comment(`Chromium ${browser.version()}`)
    for (const host of ['localhost', '127.0.0.1']) {
      const context = await browser.newContext()
      const page = await context.newPage()
      await page.goto(`http://${host}:${port}/variants`)
      await page.goto(`http://${host}:${port}/echo`)
      const sent = (await page.textContent('body')) ?? ''
      t.comment(`http://${host}: sent back "${sent}"`)
      t.match(sent, /__Host-secure=1/, `${host}: a Secure __Host- cookie is kept on plain http`)
      t.notMatch(sent, /__Host-plain/, `${host}: without Secure it is dropped`)
      t.notMatch(sent, /__Host-domain/, `${host}: with a Domain it is dropped`)
      const login = await page.evaluate(async () => (await fetch('/login', { method: 'POST' })).status)
      t.equal(login, 200)
      const cookie = (await context.cookies(`http://${host}:${port}`)).find((c) => c.name === '__Host-xems')
      t.ok(cookie?.secure === true && cookie.httpOnly, `${host}: the default __Host-xems cookie is kept (Secure, HttpOnly)`)
      const me = await page.evaluate(async () => await (await fetch('/me')).json() as { who?: string })
      t.same(me, { who: 'ada' }, `${host}: and the session it carries resolves`)
      await context.close()
    }
  })
}
