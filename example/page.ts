/**
 * The example's single page: plain HTML and fetch with credentials. The session token lives in an
 * HttpOnly cookie: page scripts never see it (the account view shows `document.cookie` to prove it).
 * Passkeys go through @simplewebauthn/browser's prebuilt bundle, served by the example at
 * /vendor/simplewebauthn-browser.js (window.SimpleWebAuthnBrowser).
 */
export const PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>fastify-xems example</title>
<style>
  body { font: 16px/1.5 system-ui, sans-serif; max-width: 44rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
  h1 { margin-bottom: 0; } .lead { color: #555; margin-top: .25rem; }
  section { border: 1px solid #ccc; border-radius: 8px; padding: 1rem 1.25rem; margin: 1rem 0; }
  section[hidden] { display: none; }
  label { display: block; margin: .4rem 0; } input[type=email], input[type=password], input[type=text] { width: 18rem; padding: .3rem; }
  button { padding: .35rem .9rem; margin: .25rem .25rem .25rem 0; cursor: pointer; }
  pre { background: #f5f5f5; padding: .6rem; overflow: auto; font-size: 14px; }
  #qr svg { width: 200px; height: 200px; } code { background: #f0f0f0; padding: 0 .25rem; }
  #message { min-height: 1.5rem; font-weight: 600; } .error { color: #b00020; } .ok { color: #0a7a33; }
  ol#recovery-codes { font-family: monospace; font-size: 1.1rem; }
  table#devices { border-collapse: collapse; width: 100%; font-size: 15px; } #devices th, #devices td { text-align: left; padding: .3rem .4rem; border-bottom: 1px solid #ddd; }
  table#passkeys { border-collapse: collapse; width: 100%; font-size: 15px; } #passkeys th, #passkeys td { text-align: left; padding: .3rem .4rem; border-bottom: 1px solid #ddd; }
  .this-device { font-weight: 600; color: #0a7a33; }
</style>
</head>
<body>
<h1>fastify-xems</h1>
<p class="lead">Password → authenticator-app or passkey login, or a passkey alone. The session token changes on every request and stays in an HttpOnly cookie.</p>
<p id="message" role="status"></p>

<section id="view-signed-out" hidden>
  <h2>Create an account</h2>
  <form id="register-form">
    <label>Email <input type="email" name="email" autocomplete="username" required></label>
    <label>Password <input type="password" name="password" autocomplete="new-password" minlength="8" required></label>
    <button type="submit">Register</button>
  </form>
  <h2>Sign in</h2>
  <form id="login-form">
    <label>Email <input type="email" name="email" autocomplete="username" required></label>
    <label>Password <input type="password" name="password" autocomplete="current-password" required></label>
    <button type="submit">Sign in</button>
  </form>
  <p>Or, once you have added one: <button id="passkey-sign-in">Sign in with a passkey</button></p>
</section>

<section id="view-code" hidden>
  <h2>Second step</h2>
  <p id="code-hint">Enter the 6-digit code from your authenticator app, or one of your recovery codes.</p>
  <form id="code-form">
    <label>Code <input type="text" name="code" inputmode="numeric" autocomplete="one-time-code" required></label>
    <label><input type="checkbox" name="remember"> Remember this device for 5 days</label>
    <button type="submit">Verify</button>
  </form>
  <button id="code-passkey">Use a passkey</button>
  <button id="code-back">Back: sign in as someone else</button>
</section>

<section id="view-enrol" hidden>
  <h2>Set up your authenticator</h2>
  <p>Scan the QR code with an authenticator app, or type the secret in by hand, then enter the code it shows.</p>
  <div id="qr"></div>
  <p>Secret: <code id="secret"></code></p>
  <form id="confirm-form">
    <label>Code <input type="text" name="code" inputmode="numeric" autocomplete="one-time-code" required></label>
    <button type="submit">Confirm</button>
  </form>
</section>

<section id="view-recovery" hidden>
  <h2>Your recovery codes</h2>
  <p>Each works once, if you lose your authenticator. They are shown only now: keep them somewhere safe.</p>
  <ol id="recovery-codes"></ol>
  <button id="recovery-copy">Copy</button>
  <button id="recovery-download">Download as a file</button>
  <button id="recovery-done">I have saved them</button>
</section>

<section id="view-account" hidden>
  <h2>Your account</h2>
  <p>Device-bound session (DBSC): <strong id="device-bound"></strong></p>
  <p>Token fingerprint of the last request: <code id="token-fingerprint"></code> (press refresh: it changes every time)</p>
  <pre id="account"></pre>
  <p>What page scripts see in <code>document.cookie</code>: <code id="cookies"></code></p>
  <button id="refresh">Refresh</button>
  <button id="logout">Sign out</button>
  <button id="logout-everywhere">Sign out everywhere</button>
  <h3>Your devices</h3>
  <p>Where you are signed in. Seeing and ending sessions needs a code or a passkey confirmed in the last 10 minutes (confirm below first).</p>
  <button id="devices-show">Show my devices</button>
  <div id="devices-panel" hidden>
    <table id="devices"><thead><tr><th>Browser</th><th>System</th><th>IP</th><th>Last seen</th><th></th></tr></thead><tbody></tbody></table>
    <button id="devices-sign-out-others">Sign out all others</button>
  </div>
  <h3>How you sign in</h3>
  <p>Changes need your password and, once an authenticator or a passkey is set up, a code or a passkey (confirm first).</p>
  <label>Password <input type="password" id="account-password" autocomplete="current-password"></label>
  <button id="enrol-button">Set up authenticator</button>
  <button id="passkey-step-up">Confirm with a passkey</button>
  <span id="factor-actions">
    <form id="step-up-form"><label>Code <input type="text" name="code" inputmode="numeric" autocomplete="one-time-code"
      required></label><button type="submit">Confirm with a code</button></form>
    <button id="reenrol-button">Replace authenticator</button>
    <button id="new-codes-button">New recovery codes</button>
    <button id="disable-button">Remove authenticator</button>
  </span>
  <h3>Passkeys</h3>
  <p>A passkey signs you in without a password (with your device's PIN or fingerprint), and serves as the second step or to confirm.
    Adding or removing one needs your password above.</p>
  <label>Name <input type="text" id="passkey-name" maxlength="64" placeholder="e.g. Laptop"></label>
  <button id="passkey-add">Add a passkey</button>
  <p id="passkeys-empty">No passkeys yet.</p>
  <table id="passkeys" hidden><thead><tr><th>Name</th><th>Added</th><th>Last used</th><th>Synced</th><th></th></tr></thead><tbody></tbody></table>
</section>

<script src="/vendor/simplewebauthn-browser.js"></script>

<script>
const views = ['signed-out', 'code', 'enrol', 'recovery', 'account']
function show (view) { for (const name of views) document.getElementById('view-' + name).hidden = name !== view }
function say (text, kind) { const m = document.getElementById('message'); m.textContent = text || ''; m.className = kind || '' }
async function call (method, url, body) {
  const response = await fetch(url, {
    method, credentials: 'include',
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body)
  })
  let data = null
  try { data = await response.json() } catch {}
  data = data || {}
  if (response.status >= 400 && !data.message) data.message = 'Something went wrong: try again'
  return { status: response.status, data }
}
const fields = (form) => Object.fromEntries(new FormData(form))

async function showAccount () {
  const me = await call('GET', '/api/me')
  if (me.status !== 200) { show('signed-out'); return false }
  document.getElementById('token-fingerprint').textContent = me.data.tokenFingerprint
  document.getElementById('device-bound').textContent = me.data.deviceBound === 'dbsc'
    ? 'yes: this browser proves a device key to keep it'
    : 'no (this browser does not support DBSC, or has not registered yet)'
  document.getElementById('account').textContent = JSON.stringify(me.data, null, 2)
  document.getElementById('cookies').textContent = JSON.stringify(document.cookie)
  document.getElementById('enrol-button').hidden = me.data.mfaEnrolled
  document.getElementById('factor-actions').hidden = !me.data.mfaEnrolled
  document.getElementById('passkey-step-up').hidden = me.data.passkeys === 0
  show('account')
  await showPasskeys()
  return true
}

// Passkeys, through @simplewebauthn/browser's prebuilt bundle (window.SimpleWebAuthnBrowser).
const webauthn = () => window.SimpleWebAuthnBrowser
const when = (at) => at === null ? 'never' : new Date(at).toLocaleString()
function passkeyRefused (error) {
  if (!webauthn()) return say('Passkeys need @simplewebauthn/browser next to the example: npm install @simplewebauthn/browser, then restart it.', 'error')
  say(error && error.name === 'NotAllowedError'
    ? 'The passkey request was cancelled or timed out.'
    : 'Your browser could not use a passkey: ' + (error && error.message || error), 'error')
}
async function showPasskeys () {
  const result = await call('GET', '/api/mfa/passkeys')
  if (result.status !== 200) return
  const rows = result.data.map((passkey) => {
    const tr = document.createElement('tr')
    tr.dataset.id = passkey.id
    for (const text of [passkey.name, when(passkey.createdAt), when(passkey.lastUsedAt), passkey.backedUp ? 'yes' : 'no']) {
      const td = document.createElement('td'); td.textContent = text; tr.append(td)
    }
    const last = document.createElement('td')
    const button = document.createElement('button')
    button.textContent = 'Remove'
    button.className = 'passkey-remove'
    button.addEventListener('click', async () => {
      const removed = await call('POST', '/api/mfa/passkeys/' + encodeURIComponent(passkey.id) + '/remove', { password: accountPassword() })
      if (removed.status !== 200) return say(removed.data.message, 'error')
      say('Passkey removed. Your other sessions were signed out.', 'ok')
      await showAccount()
    })
    last.append(button)
    tr.append(last)
    return tr
  })
  document.querySelector('#passkeys tbody').replaceChildren(...rows)
  document.getElementById('passkeys').hidden = rows.length === 0
  document.getElementById('passkeys-empty').hidden = rows.length > 0
}
document.getElementById('passkey-add').addEventListener('click', async () => {
  const options = await call('POST', '/api/mfa/passkeys/register/options', { password: accountPassword() })
  if (options.status !== 200) return say(options.data.message, 'error')
  let response
  try { response = await webauthn().startRegistration({ optionsJSON: options.data }) } catch (error) { return passkeyRefused(error) }
  const name = document.getElementById('passkey-name')
  const result = await call('POST', '/api/mfa/passkeys/register', { response, name: name.value })
  if (result.status !== 200) return say(result.data.message, 'error')
  name.value = ''
  say('Passkey "' + result.data.name + '" added. Your other sessions were signed out.', 'ok')
  await showAccount()
})
/** One assertion: the server decides from the session whether it signs in, is the second step, or confirms. */
async function usePasskey (remember) {
  const options = await call('POST', '/api/mfa/passkeys/auth/options')
  if (options.status !== 200) { say(options.data.message, 'error'); return null }
  let response
  try { response = await webauthn().startAuthentication({ optionsJSON: options.data }) } catch (error) { passkeyRefused(error); return null }
  const result = await call('POST', '/api/mfa/passkeys/auth', { response, remember })
  if (result.status !== 200) { say(result.data.message, 'error'); return null }
  return result.data
}
function showSecondStep (methods) {
  document.getElementById('code-form').hidden = !methods.includes('totp')
  document.getElementById('code-hint').hidden = !methods.includes('totp')
  document.getElementById('code-passkey').hidden = !methods.includes('passkey')
  show('code')
}
document.getElementById('passkey-sign-in').addEventListener('click', async () => {
  const result = await usePasskey(false)
  if (result === null) return
  if (result.next !== 'active') { say('Passkey accepted: one more step.', 'ok'); return showSecondStep(result.methods) }
  say('Signed in with a passkey.', 'ok')
  await showAccount()
})
document.getElementById('code-passkey').addEventListener('click', async () => {
  const result = await usePasskey(document.querySelector('#code-form input[name=remember]').checked)
  if (result === null) return
  say('Signed in.', 'ok')
  await showAccount()
})
document.getElementById('passkey-step-up').addEventListener('click', async () => {
  const result = await usePasskey(false)
  if (result !== null) say('Confirmed with a passkey: you can change how you sign in for 10 minutes.', 'ok')
})

document.getElementById('register-form').addEventListener('submit', async (event) => {
  event.preventDefault()
  const result = await call('POST', '/api/register', fields(event.target))
  if (result.status === 200) { say('Account created: sign in below.', 'ok'); event.target.reset() } else say(result.data.message, 'error')
})

document.getElementById('login-form').addEventListener('submit', async (event) => {
  event.preventDefault()
  const result = await call('POST', '/api/login', fields(event.target))
  if (result.status !== 200) return say(result.data.message, 'error')
  event.target.reset()
  if (result.data.next !== 'active') {
    say('Password accepted.', 'ok'); showSecondStep(result.data.methods || [result.data.next])
  } else {
    say(result.data.remembered ? 'Signed in (remembered device).' : 'Signed in.', 'ok'); await showAccount()
  }
})

document.getElementById('code-form').addEventListener('submit', async (event) => {
  event.preventDefault()
  const form = fields(event.target)
  const result = await call('POST', '/api/mfa/verify', { code: form.code.trim(), remember: form.remember === 'on' })
  event.target.reset()
  if (result.status !== 200) {
    say(result.data.message, 'error')
    if (result.status === 429 || result.data.code === 'FST_XEMS_MFA_ATTEMPTS' || result.data.code === 'FST_XEMS_MFA_NOT_PENDING') show('signed-out')
    return
  }
  say(result.data.method === 'recovery' ? 'Signed in with a recovery code (' + result.data.recoveryCodesLeft + ' left).' : 'Signed in.', 'ok')
  await showAccount()
})

const accountPassword = () => { const input = document.getElementById('account-password'); const value = input.value; input.value = ''; return value }
async function enrol () {
  const result = await call('POST', '/api/mfa/enrol', { password: accountPassword() })
  if (result.status !== 200) return say(result.data.message, 'error')
  document.getElementById('qr').innerHTML = result.data.qrSvg
  document.getElementById('secret').textContent = result.data.secret
  say('')
  show('enrol')
}
document.getElementById('enrol-button').addEventListener('click', enrol)
document.getElementById('reenrol-button').addEventListener('click', enrol)
document.getElementById('step-up-form').addEventListener('submit', async (event) => {
  event.preventDefault()
  const result = await call('POST', '/api/mfa/step-up', { code: fields(event.target).code.trim() })
  event.target.reset()
  say(result.status === 200 ? 'Confirmed: you can change how you sign in for 10 minutes.' : result.data.message, result.status === 200 ? 'ok' : 'error')
})
function showCodes (codes) {
  const list = document.getElementById('recovery-codes')
  list.replaceChildren(...codes.map((code) => { const li = document.createElement('li'); li.textContent = code; return li }))
  show('recovery')
}
document.getElementById('new-codes-button').addEventListener('click', async () => {
  const result = await call('POST', '/api/mfa/recovery-codes', { password: accountPassword() })
  if (result.status !== 200) return say(result.data.message, 'error')
  say('New recovery codes: the old ones no longer work.', 'ok')
  showCodes(result.data.recoveryCodes)
})
document.getElementById('disable-button').addEventListener('click', async () => {
  const result = await call('POST', '/api/mfa/disable', { password: accountPassword() })
  if (result.status !== 200) return say(result.data.message, 'error')
  say('Authenticator removed. Your other sessions were signed out.', 'ok')
  await showAccount()
})

document.getElementById('confirm-form').addEventListener('submit', async (event) => {
  event.preventDefault()
  const result = await call('POST', '/api/mfa/confirm', { code: fields(event.target).code.trim() })
  event.target.reset()
  if (result.status !== 200) return say(result.data.message, 'error')
  say('Authenticator enrolled. Your other sessions were signed out.', 'ok')
  showCodes(result.data.recoveryCodes)
})

const codesText = () => [...document.querySelectorAll('#recovery-codes li')].map((li) => li.textContent).join('\\n') + '\\n'
document.getElementById('recovery-copy').addEventListener('click', async () => {
  try {
    await navigator.clipboard.writeText(codesText()); say('Recovery codes copied.', 'ok')
  } catch { say('Copying is not allowed here: select the codes and copy them by hand.', 'error') }
})
document.getElementById('recovery-download').addEventListener('click', () => {
  const link = document.createElement('a')
  link.href = URL.createObjectURL(new Blob([codesText()], { type: 'text/plain' }))
  link.download = 'recovery-codes.txt'
  link.click()
  setTimeout(() => URL.revokeObjectURL(link.href), 1000)
})
document.getElementById('recovery-done').addEventListener('click', async () => { document.getElementById('recovery-codes').replaceChildren(); say(''); await showAccount() })
document.getElementById('code-back').addEventListener('click', async () => { await call('POST', '/api/logout'); say(''); show('signed-out') })
document.getElementById('refresh').addEventListener('click', async () => { say(''); if (!await showAccount()) say('Your session ended: sign in again.', 'error') })

async function showDevices () {
  const result = await call('GET', '/api/devices')
  if (result.status !== 200) {
    document.getElementById('devices-panel').hidden = true
    if (result.status === 401 && result.data.code === 'FST_XEMS_NO_SESSION') { show('signed-out'); return say('Your session ended: sign in again.', 'error') }
    return say(result.data.message, 'error')
  }
  const rows = result.data.map((device) => {
    const tr = document.createElement('tr')
    tr.dataset.id = device.id
    const cells = [
      device.browser + (device.type === 'mobile' || device.type === 'tablet' ? ' (' + device.type + ')' : ''),
      device.os, device.ip || '—', new Date(device.lastSeenAt).toLocaleString()
    ]
    for (const text of cells) { const td = document.createElement('td'); td.textContent = text; tr.append(td) }
    const last = document.createElement('td')
    if (device.current) { const mark = document.createElement('span'); mark.className = 'this-device'; mark.textContent = 'This device'; last.append(mark) } else {
      const button = document.createElement('button')
      button.textContent = 'Sign out'
      button.className = 'device-sign-out'
      button.addEventListener('click', async () => {
        const ended = await call('POST', '/api/devices/' + encodeURIComponent(device.id) + '/sign-out')
        say(ended.status === 200 ? 'That device is signed out.' : ended.data.message, ended.status === 200 ? 'ok' : 'error')
        await showDevices()
      })
      last.append(button)
    }
    tr.append(last)
    return tr
  })
  document.querySelector('#devices tbody').replaceChildren(...rows)
  document.getElementById('devices-sign-out-others').hidden = rows.length < 2
  document.getElementById('devices-panel').hidden = false
}
document.getElementById('devices-show').addEventListener('click', async () => { say(''); await showDevices() })
document.getElementById('devices-sign-out-others').addEventListener('click', async () => {
  const result = await call('POST', '/api/devices/sign-out-others')
  say(result.status === 200 ? 'Signed out of ' + result.data.ended + ' other session(s).' : result.data.message, result.status === 200 ? 'ok' : 'error')
  await showDevices()
})
document.getElementById('logout').addEventListener('click', async () => {
  await call('POST', '/api/logout'); document.getElementById('devices-panel').hidden = true; say('Signed out.', 'ok'); show('signed-out')
})
document.getElementById('logout-everywhere').addEventListener('click', async () => {
  const result = await call('POST', '/api/logout-everywhere')
  say('Signed out of ' + (result.data.ended ?? 0) + ' session(s).', 'ok')
  show('signed-out')
})

showAccount()
</script>
</body>
</html>
`
