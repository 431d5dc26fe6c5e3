/**
 * The package as a user installs it: the tarball `npm pack` makes holds only what a user needs, and a
 * CommonJS and an ESM project that install it both run the README's first example. Each entry point
 * loads only what it needs: `fastify-xems` never loads argon2's native addon, the QR encoder or ioredis.
 *
 * The tarball is packed from the dist that `npm test` built (`--ignore-scripts`: `prepack` would
 * rebuild dist under the other test files' feet) and unpacked into a consumer project whose
 * node_modules links this project's installed dependencies.
 */
import t from 'tap'
import { execFileSync } from 'node:child_process'
import { mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'

const root = resolve(import.meta.dirname, '../..')
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm'

/** Every file the tarball may hold; anything else (sources, maps, tests, bench) is a packaging bug. */
const ALLOWED: RegExp[] = [
  /^package\.json$/, /^README\.md$/, /^LICENSE$/, /^docs\/[A-Za-z-]+\.(md|sql)$/,
  /^dist\/[a-z-]+\.(js|d\.ts)$/,
  /^dist\/example\/[a-z-]+\.js$/,
  /^dist\/(lib|plugins)\/([a-z-]+\/)*[a-z0-9-]+\.(js|d\.ts)$/,
]
const REQUIRED = ['package.json', 'README.md', 'LICENSE', 'dist/index.js', 'dist/index.d.ts', 'dist/mfa.js', 'dist/redis.js', 'dist/postgres.js', 'dist/conformance.js']

function packedFiles (): string[] {
  const out = execFileSync(npm, ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })
  const [info] = JSON.parse(out) as Array<{ files: Array<{ path: string }> }>
  return info!.files.map((f) => f.path).sort()
}

t.test('npm pack ships only the allow-listed files, and all the entry points', async (t) => {
  const files = packedFiles()
  t.same(files.filter((f) => !ALLOWED.some((re) => re.test(f))), [], 'no file outside the allow-list')
  t.same(REQUIRED.filter((f) => !files.includes(f)), [], 'every required file is packed')
  t.notOk(files.some((f) => f.endsWith('.map')), 'no source maps pointing at sources that do not ship')
  t.notOk(files.some((f) => f.startsWith('dist/bench/')), 'no bench code')
  t.ok(files.includes('dist/example/server.js'), 'the example that docs/getting-started.md runs from the package ships, as JavaScript only')
})

/** A consumer project with the packed tarball unpacked as node_modules/fastify-xems. */
function consumerProject (dir: string): string {
  const tarball = execFileSync(npm, ['pack', '--ignore-scripts', '--silent', '--pack-destination', dir], { cwd: root, encoding: 'utf8' }).trim().split('\n').pop()!
  const project = join(dir, 'app')
  const modules = join(project, 'node_modules')
  mkdirSync(join(modules, 'fastify-xems'), { recursive: true })
  execFileSync('tar', ['-xzf', join(dir, tarball), '-C', join(modules, 'fastify-xems'), '--strip-components=1'])
  for (const entry of readdirSync(join(root, 'node_modules'))) {
    if (entry.startsWith('.') || entry === 'fastify-xems') continue
    symlinkSync(join(root, 'node_modules', entry), join(modules, entry))
  }
  writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'consumer', version: '1.0.0', private: true }))
  // Records every module URL the loader resolves (module hooks run in a thread of their own).
  writeFileSync(join(project, 'record-hooks.mjs'), `import { appendFileSync } from 'node:fs'
export async function resolve (specifier, context, next) {
  const result = await next(specifier, context)
  appendFileSync(process.env.RESOLVED_LOG, result.url + '\\n')
  return result
}
`)
  writeFileSync(join(project, 'record.mjs'), "import { register } from 'node:module'\nregister('./record-hooks.mjs', import.meta.url)\n")
  return project
}

/** The README's first example, in plain JavaScript; `load` is `require` or `import`. */
const readmeExample = (load: (id: string) => string): string => `
const Fastify = ${load('fastify')}
const { xemsSession } = ${load('fastify-xems')}
async function main () {
  const app = (Fastify.default ?? Fastify)()
  await app.register(xemsSession, { ttl: '1h', maxAge: '5d', cookie: { secure: true } })
  app.post('/login', async (request, reply) => {
    await reply.xLink({ userId: 'u1' }, { userId: 'u1' })
    return { ok: true }
  })
  app.get('/me', { preHandler: app.xems.requireSession() }, async (request) => {
    request.session.data.cart ??= []
    return request.session.data
  })
  app.post('/logout', async (request, reply) => {
    await reply.xUnlink()
    return { ok: true }
  })
  const cookieOf = (res) => res.cookies.find((c) => c.name === '__Host-xems')?.value
  const login = await app.inject({ method: 'POST', url: '/login' })
  const me = await app.inject({ url: '/me', cookies: { '__Host-xems': cookieOf(login) } })
  const logout = await app.inject({ method: 'POST', url: '/logout', cookies: { '__Host-xems': cookieOf(me) } })
  const after = await app.inject({ url: '/me', cookies: { '__Host-xems': cookieOf(me) } })
  await app.close()
  const addons = process.report.getReport().sharedObjects.filter((s) => s.includes('argon2'))
  console.log(JSON.stringify({ login: login.statusCode, me: me.statusCode, data: me.json(), logout: logout.statusCode, after: after.statusCode, addons }))
}
main().catch((err) => { console.error(err); process.exit(1) })
`

interface ExampleRun { login: number, me: number, data: unknown, logout: number, after: number, addons: string[], resolved: string[] }

function run (project: string, file: string, source: string): ExampleRun {
  writeFileSync(join(project, file), source)
  const log = join(project, `${file}.resolved`)
  writeFileSync(log, '')
  const out = execFileSync(process.execPath, ['--import', './record.mjs', file], {
    cwd: project, encoding: 'utf8', env: { ...process.env, RESOLVED_LOG: log, NODE_OPTIONS: '' },
  })
  const result = JSON.parse(out.trim().split('\n').pop()!) as Omit<ExampleRun, 'resolved'>
  const resolved = readFileSync(log, 'utf8').split('\n').filter(Boolean)
  return { ...result, resolved }
}

const OPTIONAL = /\/node_modules\/(argon2|uqr|ioredis|pg|otplib|jose|@simplewebauthn\/server)\//

t.test('a CommonJS and an ESM project both run the README example from the packed tarball', async (t) => {
  const project = consumerProject(t.testdir())
  const expected = { login: 200, me: 200, data: { userId: 'u1', cart: [] }, logout: 200, after: 401, addons: [] }

  const esm = run(project, 'readme.mjs', readmeExample((id) => `await import('${id}')`))
  t.match(esm, expected, `ESM on node ${process.version}`)
  t.same(esm.resolved.filter((url) => OPTIONAL.test(url)), [], 'import "fastify-xems" resolves no optional or MFA dependency')
  t.ok(esm.resolved.some((url) => url.includes('/app/node_modules/fastify-xems/dist/index.js')), 'the packed copy was the one loaded')

  const cjs = run(project, 'readme.cjs', readmeExample((id) => `require('${id}')`))
  t.match(cjs, expected, `CommonJS (require of the ESM build) on node ${process.version}`)
  t.same(cjs.addons, [], 'require("fastify-xems") loads no native addon')
})

t.test('fastify-xems/mfa and fastify-xems/redis load from both module systems', async (t) => {
  const project = consumerProject(t.testdir())
  const probe = (load: (id: string) => string): string => `
const mfa = ${load('fastify-xems/mfa')}
const redis = ${load('fastify-xems/redis')}
const hash = await mfa.hashPassword('correct horse battery staple')
console.log(JSON.stringify({ mfa: typeof mfa.xemsMfa, redis: typeof redis.RedisStore, verified: await mfa.verifyPassword(hash, 'correct horse battery staple'),
  addons: process.report.getReport().sharedObjects.filter((s) => s.includes('argon2')).length > 0 }))
`
  writeFileSync(join(project, 'mfa.mjs'), probe((id) => `await import('${id}')`))
  writeFileSync(join(project, 'mfa.cjs'), `(async () => {${probe((id) => `require('${id}')`)}})().catch((e) => { console.error(e); process.exit(1) })`)
  for (const file of ['mfa.mjs', 'mfa.cjs']) {
    const out = execFileSync(process.execPath, [file], { cwd: project, encoding: 'utf8', env: { ...process.env, NODE_OPTIONS: '' } })
    t.same(JSON.parse(out.trim()), { mfa: 'function', redis: 'function', verified: true, addons: true }, `${file}: the MFA entry loads argon2 and works`)
  }
})
