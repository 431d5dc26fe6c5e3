/// <reference lib="dom" />
/**
 * End-to-end: the example's passkeys in headless Chromium, with the DevTools protocol's virtual
 * authenticator (ctap2, internal transport, resident keys, user verification) standing in for a
 * platform authenticator. Add a passkey, confirm with it (step-up) to see the devices, sign out, sign in
 * with it without a password, sign in with password + passkey as the second step, remove it.
 * WebAuthn runs on http only on localhost: the page is opened on http://localhost:<port>. Saves a
 * screenshot of the account view with its passkey to test/artifacts/passkeys-page.png.
 */
import { mkdirSync } from 'node:fs'
import { createServer } from 'node:net'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import type { Page } from 'playwright-core'
import { buildExample } from '../../example/server.js'
import { CHROMIUM, hasChromium, launchChromium } from '../helpers/chromium.js'

const ARTIFACTS = fileURLToPath(new URL('../artifacts/', import.meta.url))

/** A port free now, so that the origin the example is built with is the one it then listens on. */
async function freePort (): Promise<number> {
  return await new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      server.close(() => { resolve(typeof address === 'object' && address !== null ? address.port : 0) })
    })
  })
}

const message = async (page: Page, text: string | RegExp): Promise<void> => { await page.locator('#message', { hasText: text }).waitFor() }

if (!hasChromium()) {
  if (process.env.CI !== undefined) t.fail(`Chromium is missing at ${CHROMIUM}: .ci/run installs Debian's chromium package`)
  else t.test('passkeys in the browser', { skip: `Chromium is not installed at ${CHROMIUM} (apt-get install -y chromium)` }, async () => {})
} else {
  t.test('a user adds a passkey, confirms with it, signs in with it without a password and as the second step, and removes it', async (t) => {
    const port = await freePort()
    const base = `http://localhost:${port}`
    const app = await buildExample({ logLevel: 'silent', origin: base })
    await app.listen({ port, host: '127.0.0.1' })
    const browser = await launchChromium()
    t.teardown(async () => { await browser.close(); await app.close() })
    const context = await browser.newContext()
    const page = await context.newPage()
    const cdp = await context.newCDPSession(page)
    await cdp.send('WebAuthn.enable')
    const { authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
      options: { protocol: 'ctap2', transport: 'internal', hasResidentKey: true, hasUserVerification: true, isUserVerified: true }
    })
    const token = async (): Promise<string | undefined> => (await context.cookies(base)).find((c) => c.name === '__Host-xems')?.value
    const me = async (): Promise<Record<string, unknown>> => {
      const response = await page.evaluate(async () => await (await fetch('/api/me', { credentials: 'include' })).json())
      return response as Record<string, unknown>
    }

    await page.goto(base + '/')
    await page.locator('#view-signed-out').waitFor({ state: 'visible' })
    t.equal(
      await page.evaluate(() => typeof (window as unknown as { SimpleWebAuthnBrowser?: unknown }).SimpleWebAuthnBrowser), 'object',
      'the page loaded @simplewebauthn/browser from the example server'
    )
    const email = 'lin@example.com'
    const password = 'correct horse battery staple'
    await page.fill('#register-form input[name=email]', email)
    await page.fill('#register-form input[name=password]', password)
    await page.click('#register-form button')
    await message(page, 'Account created')
    await page.fill('#login-form input[name=email]', email)
    await page.fill('#login-form input[name=password]', password)
    await page.click('#login-form button')
    await page.locator('#view-account').waitFor({ state: 'visible' })
    t.ok(await page.locator('#passkeys-empty').isVisible(), 'no passkeys yet')
    t.notOk(await page.locator('#passkey-step-up').isVisible(), 'nothing to confirm with yet')

    // Add a passkey: without the password it is refused, with it the authenticator makes a resident key.
    await page.click('#passkey-add')
    await page.locator('#message.error').waitFor()
    t.equal((await me()).passkeys, 0, 'no passkey without the password')
    await page.fill('#account-password', password)
    await page.fill('#passkey-name', 'Laptop')
    await page.click('#passkey-add')
    await message(page, 'Passkey "Laptop" added')
    await page.locator('#passkeys tbody tr').first().waitFor()
    t.equal(await page.locator('#passkeys tbody tr').count(), 1, 'one passkey listed')
    t.equal(await page.textContent('#passkeys tbody tr td:nth-child(1)'), 'Laptop', 'with the name given')
    t.equal(await page.textContent('#passkeys tbody tr td:nth-child(3)'), 'never', 'not used yet')
    const { credentials } = await cdp.send('WebAuthn.getCredentials', { authenticatorId })
    t.equal(credentials.length, 1, 'the virtual authenticator holds one credential')
    t.equal(credentials[0]!.isResidentCredential, true, 'a discoverable credential (passkey)')
    t.equal(credentials[0]!.rpId, 'localhost', 'bound to the relying party localhost')
    t.equal((await me()).passkeys, 1, 'the server stored it')
    mkdirSync(ARTIFACTS, { recursive: true })
    await page.screenshot({ path: ARTIFACTS + 'passkeys-page.png', fullPage: true })

    // Step-up: the devices list needs a fresh second factor; a passkey assertion gives it.
    await page.click('#devices-show')
    await page.locator('#message.error').waitFor()
    t.notOk(await page.locator('#devices-panel').isVisible(), 'devices refused before confirming')
    t.equal(await page.evaluate(async () => (await fetch('/api/devices', { credentials: 'include' })).status), 401, 'the server refuses the devices list without a fresh factor')
    await page.click('#passkey-step-up')
    await message(page, 'Confirmed with a passkey')
    await page.click('#devices-show')
    await page.locator('#devices-panel').waitFor({ state: 'visible' })
    t.equal(await page.locator('#devices tbody tr').count(), 1, 'after the step-up the devices are listed')
    const afterStepUp = (await cdp.send('WebAuthn.getCredentials', { authenticatorId })).credentials[0]!.signCount
    t.ok(afterStepUp >= 1, 'the authenticator signed (its counter moved)')

    // Sign out, then sign in with the passkey alone: user verification makes it two factors, active and fresh.
    await page.click('#logout')
    await page.locator('#view-signed-out').waitFor({ state: 'visible' })
    t.equal(await token(), undefined, 'signed out')
    await page.click('#passkey-sign-in')
    await message(page, 'Signed in with a passkey')
    await page.locator('#view-account').waitFor({ state: 'visible' })
    const passwordless = await me()
    t.equal(passwordless.email, email, 'signed in as the passkey\'s user, without a password')
    t.equal(passwordless.signIn, 'passkey', 'the session records the passkey sign-in')
    t.not(await page.textContent('#passkeys tbody tr td:nth-child(3)'), 'never', 'the list shows the last use')
    t.equal(await page.evaluate(async () => (await fetch('/api/devices', { credentials: 'include' })).status), 200, 'a verified passkey sign-in is fresh: the devices list is open')

    // Password, then the passkey as the second step (the user has no authenticator app: passkey only).
    await page.click('#logout')
    await page.locator('#view-signed-out').waitFor({ state: 'visible' })
    await page.fill('#login-form input[name=email]', email)
    await page.fill('#login-form input[name=password]', password)
    await page.click('#login-form button')
    await page.locator('#view-code').waitFor({ state: 'visible' })
    t.notOk(await page.locator('#code-form').isVisible(), 'no code asked for: the user has no authenticator app')
    t.equal(await page.evaluate(async () => (await fetch('/api/me', { credentials: 'include' })).status), 401, 'the password alone does not sign in')
    await page.click('#code-passkey')
    await message(page, 'Signed in.')
    await page.locator('#view-account').waitFor({ state: 'visible' })
    t.equal((await me()).signIn, 'passkey', 'signed in with the password and the passkey')

    // Remove it: the password again, and the second factor of this sign-in is still fresh.
    await page.fill('#account-password', password)
    await page.click('.passkey-remove')
    await message(page, 'Passkey removed')
    await page.locator('#passkeys-empty').waitFor({ state: 'visible' })
    t.equal((await me()).passkeys, 0, 'the server removed it')

    // The authenticator still has the key, but the server no longer knows it: a passwordless try is refused.
    await page.click('#logout')
    await page.locator('#view-signed-out').waitFor({ state: 'visible' })
    await page.click('#passkey-sign-in')
    await page.locator('#message.error').waitFor()
    t.match(await page.textContent('#message'), /not registered/, 'a removed passkey no longer signs in')
    t.ok(await page.locator('#view-signed-out').isVisible(), 'still signed out')
  })
}
