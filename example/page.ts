/** The example's single page: plain HTML and fetch; the token stays in an HttpOnly cookie. */
export const PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>fastify-xems example</title>
<style>
  body { font: 16px/1.5 system-ui, sans-serif; max-width: 40rem; margin: 3rem auto; padding: 0 1rem; }
  section { border: 1px solid #ccc; border-radius: 8px; padding: 1rem; margin: 1rem 0; }
  pre { background: #f5f5f5; padding: .5rem; overflow: auto; }
</style>
</head>
<body>
<h1>fastify-xems</h1>
<p>A server-side session whose token changes on every request. Page scripts never see it:
<code>document.cookie</code> below stays empty of it, because the cookie is HttpOnly.</p>
<section>
  <form id="login"><label>Name <input name="name" required></label> <button>Sign in</button></form>
</section>
<section>
  <button id="me">Who am I?</button> <button id="logout">Sign out</button>
  <pre id="out">Not signed in.</pre>
  <p>document.cookie: <code id="cookies"></code></p>
</section>
<script>
const out = document.getElementById('out')
const show = (value) => { out.textContent = JSON.stringify(value, null, 2); document.getElementById('cookies').textContent = JSON.stringify(document.cookie) }
async function call (method, url, body) {
  const response = await fetch(url, { method, credentials: 'include', headers: body ? { 'content-type': 'application/json' } : {}, body: body ? JSON.stringify(body) : undefined })
  return { status: response.status, body: await response.json() }
}
document.getElementById('login').addEventListener('submit', async (event) => {
  event.preventDefault()
  show(await call('POST', '/api/login', { name: new FormData(event.target).get('name') }))
})
document.getElementById('me').addEventListener('click', async () => show(await call('GET', '/api/me')))
document.getElementById('logout').addEventListener('click', async () => show(await call('POST', '/api/logout')))
show('Not signed in.')
</script>
</body>
</html>
`
