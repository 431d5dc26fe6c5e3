/// <reference lib="dom" />
/**
 * End-to-end: the example app in headless Chromium (Debian's package, driven by playwright-core).
 * Register, enrol by reading the secret the page shows, sign in with a computed code, check the cookie
 * is HttpOnly and changes between requests, sign out, and check the old cookie no longer works.
 * Saves a screenshot of the enrolment page to test/artifacts/enrolment-page.png.
 */
import { existsSync, mkdirSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { chromium, type Browser, type Page } from 'playwright-core'
import { buildExample } from '../../example/server.js'
import { generateTotp } from '../../lib/mfa/totp.js'

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'
const ARTIFACTS = fileURLToPath(new URL('../artifacts/', import.meta.url))

if (!existsSync(CHROMIUM)) {
  if (process.env.CI !== undefined) t.fail(`Chromium is missing at ${CHROMIUM}: .ci/run installs Debian's chromium package`)
  else t.test('browser walkthrough', { skip: `Chromium is not installed at ${CHROMIUM} (apt-get install -y chromium)` }, async () => {})
} else {
  t.test('a newcomer registers, enrols, signs in with TOTP, and signs out in a real browser', async (t) => {
    const app = await buildExample({ logLevel: 'silent' })
    await app.listen({ port: 0, host: '127.0.0.1' })
    const address = app.server.address()
    const base = `http://127.0.0.1:${typeof address === 'object' && address !== null ? address.port : 0}`
    const browser: Browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--no-first-run', '--disable-component-update', '--disable-sync']
    })
    t.teardown(async () => { await browser.close(); await app.close() })
    const context = await browser.newContext()
    const page: Page = await context.newPage()
    const sessionCookie = async (): Promise<{ value: string, httpOnly: boolean } | undefined> =>
      (await context.cookies(base)).find((cookie) => cookie.name === '__Host-xems')

    await page.goto(base + '/')
    await page.locator('#view-signed-out').waitFor({ state: 'visible' })
    const email = 'grace@example.com'
    const password = 'correct horse battery staple'

    await page.fill('#register-form input[name=email]', email)
    await page.fill('#register-form input[name=password]', password)
    await page.click('#register-form button')
    await page.locator('#message', { hasText: 'Account created' }).waitFor()

    await page.fill('#login-form input[name=email]', email)
    await page.fill('#login-form input[name=password]', password)
    await page.click('#login-form button')
    await page.locator('#view-account').waitFor({ state: 'visible' })

    await page.fill('#account-password', password)
    await page.click('#enrol-button')
    await page.locator('#view-enrol').waitFor({ state: 'visible' })
    t.equal(await page.locator('#qr svg').count(), 1, 'the QR code is shown')
    const secret = (await page.textContent('#secret'))!.trim()
    t.match(secret, /^[A-Z2-7]{32,}$/, 'the page shows the base32 secret')
    mkdirSync(ARTIFACTS, { recursive: true })
    await page.screenshot({ path: ARTIFACTS + 'enrolment-page.png', fullPage: true })

    await page.fill('#confirm-form input[name=code]', await generateTotp({ secret }))
    await page.click('#confirm-form button')
    await page.locator('#view-recovery').waitFor({ state: 'visible' })
    t.equal(await page.locator('#recovery-codes li').count(), 10, 'ten recovery codes shown once')
    await page.click('#recovery-done')
    await page.locator('#view-account').waitFor({ state: 'visible' })

    const cookie = await sessionCookie()
    t.ok(cookie, 'a session cookie')
    t.equal(cookie!.httpOnly, true, 'the cookie is HttpOnly')
    t.notOk((await page.evaluate(() => document.cookie)).includes(cookie!.value), 'page scripts cannot read the token')
    t.equal(await page.textContent('#cookies'), '""', 'the page itself shows an empty document.cookie')

    const fingerprintBefore = await page.textContent('#token-fingerprint')
    await page.click('#refresh')
    await page.waitForFunction((before) => document.getElementById('token-fingerprint')!.textContent !== before, fingerprintBefore)
    const afterRefresh = await sessionCookie()
    t.not(afterRefresh!.value, cookie!.value, 'the cookie changed between requests')

    await page.click('#logout')
    await page.locator('#view-signed-out').waitFor({ state: 'visible' })
    t.equal(await sessionCookie(), undefined, 'signing out clears the cookie')
    const replay = await app.inject({ url: '/api/me', cookies: { '__Host-xems': afterRefresh!.value } })
    t.equal(replay.statusCode, 401, 'the old cookie no longer works')

    await page.fill('#login-form input[name=email]', email)
    await page.fill('#login-form input[name=password]', password)
    await page.click('#login-form button')
    await page.locator('#view-code').waitFor({ state: 'visible' })
    // The enrolment code used up its step: answer with the next step's code (inside the drift window).
    await page.fill('#code-form input[name=code]', await generateTotp({ secret, at: Date.now() + 30_000 }))
    await page.click('#code-form button')
    await page.locator('#view-account').waitFor({ state: 'visible' })
    t.match(await page.textContent('#account'), /"mfaEnrolled": true/, 'signed in with the second factor')
    await page.click('#logout-everywhere')
    await page.locator('#message', { hasText: 'Signed out of' }).waitFor()
    t.equal(await sessionCookie(), undefined)
  })
}
