/// <reference lib="dom" />
/**
 * Issue 14: the example's "Your devices" panel in headless Chromium. Two browser contexts sign in as one
 * user (the second with a recovery code); the first confirms with a code, sees two devices with "This
 * device" on its own row, signs the second out, and the second's next request gets "Your session
 * ended". Screenshots go to test/artifacts/devices/ (kept after the run).
 */
import { existsSync, mkdirSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { chromium, type Browser } from 'playwright-core'
import { buildExample } from '../../example/server.js'
import { generateTotp } from '../../lib/mfa/totp.js'

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'
const ARTIFACTS = fileURLToPath(new URL('../artifacts/devices/', import.meta.url))

if (!existsSync(CHROMIUM)) {
  if (process.env.CI !== undefined) t.fail(`Chromium is missing at ${CHROMIUM}: .ci/run installs Debian's chromium package`)
  else t.test('devices panel', { skip: `Chromium is not installed at ${CHROMIUM} (apt-get install -y chromium)` }, async () => {})
} else {
  t.test('two devices of one user: the first sees both and signs the second out; the second\'s next request ends', async (t) => {
    const app = await buildExample({ logLevel: 'silent' })
    await app.listen({ port: 0, host: '127.0.0.1' })
    const base = `http://localhost:${(app.server.address() as { port: number }).port}`
    const browser: Browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'] })
    t.teardown(async () => { await browser.close(); await app.close() })
    mkdirSync(ARTIFACTS, { recursive: true })
    const email = 'lin@example.com'
    const password = 'correct horse battery staple'

    const first = await browser.newContext({ viewport: { width: 900, height: 1100 } })
    const page1 = await first.newPage()
    t.equal((await page1.request.post(base + '/api/register', { data: { email, password } })).status(), 200)
    t.match(await (await page1.request.post(base + '/api/login', { data: { email, password } })).json(), { next: 'active' })
    const { secret } = await (await page1.request.post(base + '/api/mfa/enrol', { data: { password } })).json() as { secret: string }
    const { recoveryCodes } = await (await page1.request.post(base + '/api/mfa/confirm', { data: { code: await generateTotp({ secret }) } })).json() as { recoveryCodes: string[] }
    t.equal(recoveryCodes.length, 10)

    const second = await browser.newContext({
      viewport: { width: 900, height: 700 },
      userAgent: 'Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1'
    })
    const page2 = await second.newPage()
    t.match(await (await page2.request.post(base + '/api/login', { data: { email, password } })).json(), { next: 'totp' })
    t.match(await (await page2.request.post(base + '/api/mfa/verify', { data: { code: recoveryCodes[0] } })).json(), { method: 'recovery' })
    await page2.goto(base + '/')
    await page2.locator('#view-account').waitFor({ state: 'visible' })

    await page1.goto(base + '/')
    await page1.locator('#view-account').waitFor({ state: 'visible' })
    await page1.click('#devices-show')
    await page1.locator('#message', { hasText: 'Confirm with your second factor' }).waitFor()
    t.ok(await page1.locator('#devices-panel').isHidden(), 'without a fresh second factor the list is not shown')
    // The enrolment used the current step: the next one (within the drift window) confirms.
    await page1.fill('#step-up-form input[name=code]', await generateTotp({ secret, at: Date.now() + 30_000 }))
    await page1.click('#step-up-form button')
    await page1.locator('#message', { hasText: 'Confirmed' }).waitFor()
    await page1.click('#devices-show')
    await page1.locator('#devices tbody tr').nth(1).waitFor()
    t.equal(await page1.locator('#devices tbody tr').count(), 2, 'two devices')
    t.equal(await page1.locator('#devices tbody tr .this-device').count(), 1, 'one is this device')
    const rows = await page1.locator('#devices tbody tr').allTextContents()
    t.comment(rows.join(' | '))
    t.match(rows.find((row) => !row.includes('This device')), /Safari 17 \(mobile\)iOS 17/, 'the other one: Safari on an iPhone')
    t.match(rows.find((row) => row.includes('This device')), /Chrome/, 'this one: Chromium')
    await page1.screenshot({ path: ARTIFACTS + 'panel-two-devices.png', fullPage: true })

    await page1.click('#devices tbody tr .device-sign-out')
    await page1.locator('#message', { hasText: 'That device is signed out.' }).waitFor()
    await page1.waitForFunction(() => document.querySelectorAll('#devices tbody tr').length === 1)
    await page1.screenshot({ path: ARTIFACTS + 'panel-after-sign-out.png', fullPage: true })

    await page2.click('#refresh')
    await page2.locator('#message', { hasText: 'Your session ended' }).waitFor()
    t.ok(await page2.locator('#view-signed-out').isVisible(), 'the second device is back at sign-in')
    await page2.screenshot({ path: ARTIFACTS + 'second-device-ended.png', fullPage: true })
    t.ok(await page1.locator('#view-account').isVisible(), 'the first stays signed in')
    await page1.click('#refresh')
    t.equal(await page1.textContent('#message'), '', 'Refresh clears the last message')
    t.ok(existsSync(ARTIFACTS + 'panel-two-devices.png') && existsSync(ARTIFACTS + 'second-device-ended.png'), `screenshots in ${ARTIFACTS}`)
  })
}
