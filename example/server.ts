/**
 * The example app: register → login (argon2id) → TOTP enrolment / code step → account → logout, and
 * passkeys: add one, sign in with it (no password), use it as the second step or to confirm (step-up).
 *
 *   npm start        → http://localhost:3000, on the embedded store (in memory)
 *
 * Environment: PORT (default 3000), HOST (default 127.0.0.1), LOG_LEVEL; XEMS_ORIGIN, the origin the page
 * is opened on, for passkeys (default http://localhost:PORT); XEMS_SECRET (64 hex characters)
 * keeps sessions in an encrypted vault (XEMS_VAULT, default ./.xems-vault); REDIS_URL moves them to
 * Redis (see example/store.ts). Only the package's public exports are used.
 */
import { createHash } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify'
import { isXemsError, xemsSession, type SecurityEvent, type SessionStore } from 'fastify-xems'
import { hashPassword, xemsMfa, type MfaRecord } from 'fastify-xems/mfa'
import { openStore } from './store.js'
import { PAGE } from './page.js'

declare module 'fastify-xems' {
  interface XemsSessionData {
    email?: string
  }
}

/** A user as the example keeps it: in the `users-registry` sandbox, as the XEMS tutorials do. */
interface UserRecord {
  email: string
  passwordHash: string
  mfa: MfaRecord
  createdAt: number
}

const EMAIL = /^[^\s@]{1,64}@[^\s@]{1,190}$/

export interface ExampleOptions {
  store?: SessionStore
  /** Logger level (default info; 'silent' in tests). */
  logLevel?: string
  /**
   * Secure cookies (default true; XEMS_COOKIE_SECURE=false turns them off): the session cookie is then
   * `__Host-xems`. Chromium (since Chrome 89) and Firefox (since 75) keep Secure and __Host- cookies on
   * plain http://localhost and http://127.0.0.1; Safari drops them, so turn this off only to try the
   * example in Safari (docs/sessions.md, "Secure cookies on localhost", gives the sources).
   */
  secureCookies?: boolean
  /** Where log lines go (default stdout); for tests. */
  logStream?: { write: (line: string) => void }
  /**
   * The origin the page is opened on (default http://localhost:3000): passkeys are bound to its host name
   * (the relying-party id, `localhost` here) and answers made on any other origin are refused. WebAuthn
   * runs on https, or on http://localhost only: open the page on localhost, not 127.0.0.1, to use passkeys.
   */
  origin?: string | undefined
  /** Receives the security events (the example logs them; a real app would e-mail the user, see docs/security.md). */
  onSecurityEvent?: (event: SecurityEvent) => void
}

/** Every error answer has one shape: { statusCode, code, error, message }; the page shows `message`. */
function fail (reply: FastifyReply, statusCode: number, code: string, message: string): FastifyReply {
  const error = ({ 400: 'Bad Request', 401: 'Unauthorized', 404: 'Not Found', 409: 'Conflict' } as Record<number, string>)[statusCode] ?? 'Refused'
  return reply.code(statusCode).send({ statusCode, code, error, message })
}

/**
 * The prebuilt browser bundle of @simplewebauthn/browser (a dev dependency: the library never loads it),
 * served to the page as is: no CDN, no build step. Null when it is not installed.
 */
async function webauthnBrowserBundle (): Promise<string | null> {
  try {
    const entry = createRequire(import.meta.url).resolve('@simplewebauthn/browser')
    return await readFile(join(dirname(entry), '..', 'dist', 'bundle', 'index.umd.min.js'), 'utf8')
  } catch {
    return null
  }
}

/** The passkey index of the registry: user handle → email (emails have an '@', these keys none: they never collide). */
const handleKey = (handle: string): string => `passkey-handle:${handle}`

export async function buildExample (options: ExampleOptions = {}): Promise<FastifyInstance> {
  const app = Fastify({
    logger: { level: options.logLevel ?? process.env.LOG_LEVEL ?? 'info', ...(options.logStream === undefined ? {} : { stream: options.logStream }) },
    bodyLimit: 16 * 1024
  })
  const secure = options.secureCookies ?? process.env.XEMS_COOKIE_SECURE !== 'false'
  // The plugin's default name: __Host-xems when secure (path /, no domain), xems otherwise.
  const cookieName = secure ? '__Host-xems' : 'xems'
  await app.register(xemsSession, {
    sandbox: 'auth-active',
    ttl: '1h',
    maxAge: '5d',
    sandboxes: { 'otp-pending': { ttl: '10m' }, 'users-registry': { ttl: '5d' } },
    // Secure by default, also on http://localhost (Chromium and Firefox keep Secure cookies there): no sibling
    // subdomain can set or shadow a __Host- cookie.
    cookie: { secure, sameSite: 'lax' },
    createLimit: { max: 30, window: '1m' },
    // Fetch-Metadata CSRF check (the default): a cross-site POST carrying the cookie gets 403.
    csrf: {},
    // Signing out clears the browser's cache of this origin too; not "cookies": that would clear
    // every cookie of the registrable domain (see docs/sessions.md).
    clearSiteData: ['cache'],
    // Device Bound Session Credentials: a browser that supports them (Chrome on Windows) binds the session to
    // a key in its TPM at sign-in; the page shows whether it did. Other browsers are not affected.
    deviceBound: { cookieLifetime: '10m' },
    onSecurityEvent: options.onSecurityEvent ?? ((event) => { app.log.info({ securityEvent: event.type, userId: event.userId }, 'security event') }),
    ...(options.store === undefined ? {} : { store: options.store })
  })
  // Expected refusals (401 no session, wrong code, 403, 429) are logged in one line without a stack;
  // only server faults (5xx) are logged as errors.
  app.setErrorHandler(async (error: Error & { statusCode?: number, code?: string }, request, reply) => {
    const statusCode = typeof error.statusCode === 'number' && error.statusCode >= 400 ? error.statusCode : 500
    if (statusCode >= 500) request.log.error({ err: error }, 'request failed')
    else request.log.info({ code: error.code, statusCode }, 'request refused')
    const message = statusCode >= 500 && !isXemsError(error) ? 'Something went wrong on our side: try again' : error.message
    return await reply.code(statusCode).send({ statusCode, code: error.code ?? 'FST_ERR', error: statusCode >= 500 ? 'Server Error' : 'Refused', message })
  })
  const registry = app.xems.from('users-registry')

  app.get('/', async (_request, reply) => await reply.type('text/html; charset=utf-8').header('cache-control', 'no-store').send(PAGE))
  const bundle = await webauthnBrowserBundle()
  app.get('/vendor/simplewebauthn-browser.js', async (_request, reply) => {
    if (bundle === null) return fail(reply, 404, 'EXAMPLE_NO_WEBAUTHN', 'Passkeys need @simplewebauthn/browser: run npm install')
    return await reply.type('text/javascript; charset=utf-8').header('cache-control', 'no-cache').send(bundle)
  })
  const origin = new URL(options.origin ?? 'http://localhost:3000').origin

  await app.register(async (routes) => {
    await routes.register(xemsMfa, {
      issuer: 'fastify-xems example',
      rememberDevice: { secure },
      users: {
        load: async (email) => (await registry.get<UserRecord>(email))?.mfa ?? null,
        save: async (email, mfa) => {
          const user = await registry.get<UserRecord>(email)
          if (user === null) return
          await registry.set(email, { ...user, mfa })
          if (mfa.passkeyUserHandle !== undefined) await registry.set(handleKey(mfa.passkeyUserHandle), email)
        },
        // Passwordless sign-in finds the user by the passkey's user handle; the plugin checks it is theirs.
        findUserByPasskey: async (handle) => await registry.get<string>(handleKey(handle))
      },
      passkeys: { rpId: new URL(origin).hostname, rpName: 'fastify-xems example', origins: [origin] }
    })
    const mfa = routes.xemsMfa
    const signedIn = app.xems.requireSession()

    routes.post<{ Body: { email?: unknown, password?: unknown } }>('/api/register', async (request, reply) => {
      const { email, password } = request.body ?? {}
      if (typeof email !== 'string' || !EMAIL.test(email)) return fail(reply, 400, 'EXAMPLE_BAD_EMAIL', 'Enter a valid email address')
      if (typeof password !== 'string' || password.length < 8 || password.length > 1024) return fail(reply, 400, 'EXAMPLE_BAD_PASSWORD', 'Use a password of 8 to 1024 characters')
      const user: UserRecord = { email: email.toLowerCase(), passwordHash: await hashPassword(password), mfa: {}, createdAt: Date.now() }
      if (!await registry.add(user.email, user)) return fail(reply, 409, 'EXAMPLE_TAKEN', 'This email is already registered')
      return { ok: true }
    })

    routes.post<{ Body: { email?: unknown, password?: unknown } }>('/api/login', async (request, reply) => {
      const { email, password } = request.body ?? {}
      if (typeof email !== 'string' || typeof password !== 'string') return fail(reply, 400, 'EXAMPLE_MISSING', 'Enter your email and password')
      const login = email.toLowerCase()
      const user = await registry.get<UserRecord>(login)
      // The name tried, known or not: failures lock unknown names alike, so nothing tells which exist.
      // Over-long names (> 256) or passwords (> 1024) are a 400 before any store work.
      if (!await mfa.verifyPassword(login, password, user?.passwordHash, request)) {
        return fail(reply, 401, 'EXAMPLE_WRONG_PASSWORD', 'Wrong email or password')
      }
      return await mfa.begin(request, reply, { userId: user!.email, data: { email: user!.email } })
    })

    routes.post<{ Body: { code?: unknown, remember?: unknown } }>('/api/mfa/verify', async (request, reply) =>
      await mfa.verify(request, reply, request.body?.code, { remember: request.body?.remember === true }))

    /**
     * Changing the factors needs the password again (checked and throttled like a login) and, once a
     * factor exists, a code verified within the last 10 minutes (the plugin checks that itself: a
     * login on a remembered device, or a stolen cookie, is not enough).
     */
    async function passwordAgain (request: FastifyRequest<{ Body: { password?: unknown } }>, reply: FastifyReply): Promise<boolean> {
      const password = request.body?.password
      const user = await registry.get<UserRecord>(request.session!.userId!)
      if (typeof password === 'string' && await mfa.verifyPassword(request.session!.userId!, password, user?.passwordHash, request)) return true
      fail(reply, 401, 'EXAMPLE_PASSWORD_AGAIN', 'Enter your password to change how you sign in')
      return false
    }

    routes.post<{ Body: { password?: unknown } }>('/api/mfa/enrol', { preHandler: signedIn }, async (request, reply) => {
      if (!await passwordAgain(request, reply)) return reply
      return await mfa.startEnrolment(request, { label: request.session!.userId! })
    })
    routes.post<{ Body: { code?: unknown } }>('/api/mfa/confirm', { preHandler: signedIn }, async (request) =>
      await mfa.confirmEnrolment(request, request.body?.code))
    routes.post<{ Body: { code?: unknown } }>('/api/mfa/step-up', { preHandler: signedIn }, async (request, reply) =>
      await mfa.stepUp(request, reply, request.body?.code))
    routes.post<{ Body: { password?: unknown } }>('/api/mfa/recovery-codes', { preHandler: signedIn }, async (request, reply) => {
      if (!await passwordAgain(request, reply)) return reply
      return { recoveryCodes: await mfa.regenerateRecoveryCodes(request) }
    })
    routes.post<{ Body: { password?: unknown } }>('/api/mfa/disable', { preHandler: signedIn }, async (request, reply) => {
      if (!await passwordAgain(request, reply)) return reply
      await mfa.disable(request)
      return { ok: true }
    })

    // Passkeys. Adding and removing one needs the password again, like the authenticator; once a factor
    // exists the plugin also wants a second factor within 10 minutes (a code or a passkey: step-up).
    routes.post<{ Body: { password?: unknown } }>('/api/mfa/passkeys/register/options', { preHandler: signedIn }, async (request, reply) => {
      if (!await passwordAgain(request, reply)) return reply
      return await mfa.startPasskeyRegistration(request, reply, { userName: request.session!.userId! })
    })
    routes.post<{ Body: { response?: unknown, name?: unknown } }>('/api/mfa/passkeys/register', { preHandler: signedIn }, async (request, reply) => {
      const name = request.body?.name
      return await mfa.finishPasskeyRegistration(request, reply, request.body?.response, { name: typeof name === 'string' && name.trim() !== '' ? name : undefined })
    })
    // Sign in with a passkey (no session), the second step (pending session) and step-up (signed in): the
    // same two routes, the session decides which.
    routes.post('/api/mfa/passkeys/auth/options', async (request, reply) => await mfa.startPasskeyAuthentication(request, reply))
    routes.post<{ Body: { response?: unknown, remember?: unknown } }>('/api/mfa/passkeys/auth', async (request, reply) =>
      await mfa.finishPasskeyAuthentication(request, reply, request.body?.response, { remember: request.body?.remember === true }))
    routes.get('/api/mfa/passkeys', { preHandler: signedIn }, async (request, reply) => {
      reply.header('cache-control', 'no-store')
      return await mfa.listPasskeys(request)
    })
    routes.post<{ Params: { id: string }, Body: { password?: unknown } }>('/api/mfa/passkeys/:id/remove', { preHandler: signedIn }, async (request, reply) => {
      if (!await passwordAgain(request, reply)) return reply
      await mfa.removePasskey(request, request.params.id)
      return { ok: true }
    })

    routes.get('/api/me', { preHandler: signedIn }, async (request) => {
      const session = request.session!
      const user = await registry.get<UserRecord>(session.userId!)
      const presented = request.cookies[cookieName] ?? request.headers['x-xems-token']
      return {
        // A passkey sign-in carries no data from the login form: the user record has the email.
        email: session.data.email ?? user?.email,
        mfaEnrolled: user?.mfa.totp !== undefined && user.mfa.totp !== null,
        passkeys: user?.mfa.passkeys?.length ?? 0,
        signIn: session.device?.signIn ?? null,
        recoveryCodesLeft: user?.mfa.recoveryCodes?.filter((hash) => hash !== null).length ?? 0,
        sessionId: session.id,
        // 'dbsc' when the browser bound this session to a device key, null when it did not.
        deviceBound: session.binding?.type ?? null,
        // A fingerprint of the token this request carried: it changes on every request. The token
        // itself never reaches the page (HttpOnly cookie).
        tokenFingerprint: typeof presented === 'string' ? createHash('sha256').update(presented).digest('hex').slice(0, 12) : null,
        createdAt: new Date(session.createdAt).toISOString(),
        expiresAt: new Date(session.expiresAt).toISOString(),
        absoluteExpiresAt: new Date(session.absoluteExpiresAt).toISOString(),
        sessions: (await app.xems.listUserSessions(session.userId!)).length
      }
    })

    // "Your devices": listing and ending other sessions need a second factor verified within 10 minutes.
    const freshFactor = mfa.requireFreshMfa('10m')
    routes.get('/api/devices', { preHandler: [signedIn, freshFactor] }, async (request, reply) => {
      reply.header('cache-control', 'no-store')
      const sessions = await app.xems.listUserSessions(request.session!.userId!, { current: request })
      return sessions.filter((session) => session.sandbox === 'auth-active').map((session) => ({
        id: session.id,
        current: session.current,
        browser: [session.device?.browser, session.device?.browserVersion?.split('.')[0]].filter(Boolean).join(' ') || 'Unknown browser',
        os: session.device?.os || 'Unknown system',
        type: session.device?.type ?? 'unknown',
        ip: session.device?.ip ?? null,
        signIn: session.device?.signIn ?? null,
        createdAt: new Date(session.createdAt).toISOString(),
        lastSeenAt: new Date(session.lastSeenAt).toISOString()
      }))
    })
    routes.post<{ Params: { id: string } }>('/api/devices/:id/sign-out', { preHandler: [signedIn, freshFactor] }, async (request, reply) => {
      if (request.params.id === request.session!.id) {
        await reply.xUnlink()
        return { ended: true, current: true }
      }
      const ended = await app.xems.revokeSession(request.session!.userId!, request.params.id)
      if (!ended) return fail(reply, 404, 'EXAMPLE_NO_DEVICE', 'That session already ended')
      return { ended, current: false }
    })
    routes.post('/api/devices/sign-out-others', { preHandler: [signedIn, freshFactor] }, async (request) =>
      ({ ended: await mfa.revokeUser(request.session!.userId!, { except: request.session!.id }) }))

    routes.post('/api/logout', async (_request, reply) => {
      await reply.xUnlink()
      return { ok: true }
    })

    routes.post('/api/logout-everywhere', { preHandler: signedIn }, async (request, reply) => {
      const ended = await mfa.revokeUser(request.session!.userId!)
      await reply.xUnlink()
      return { ended }
    })
  })

  return app
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { store, description, close } = await openStore(process.env)
  const port = Number(process.env.PORT ?? 3000)
  const app = await buildExample({ store, origin: process.env.XEMS_ORIGIN ?? `http://localhost:${port}` })
  app.addHook('onClose', async () => { await close() })
  await app.listen({ port, host: process.env.HOST ?? '127.0.0.1' })
  console.log(`\nfastify-xems example on ${description}\n  → open http://localhost:${port}/ in a browser\n`)
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => { void app.close().then(() => process.exit(0)) })
  }
}
