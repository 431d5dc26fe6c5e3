/** Shared test helpers: an app with the session plugin and a few routes, a movable clock, cookie reading. */
import Fastify, { type FastifyInstance, type LightMyRequestResponse } from 'fastify'
import { xemsSession, type XemsSessionOptions } from '../index.js'

export interface Clock {
  now: number
  advance: (ms: number) => void
}

export function makeClock (start = Date.now()): Clock {
  const clock = { now: start, advance (ms: number) { clock.now += ms } }
  return clock
}

export interface TestApp {
  app: FastifyInstance
  clock: Clock
  logs: string[]
}

/**
 * An app with xemsSession and routes:
 * POST /login {data?, sandbox?, userId?} → xLink; GET /me (guarded) → session; POST /me {key, value} (guarded);
 * POST /logout → xUnlink; POST /regenerate; POST /destroy; GET /public; GET /pending (guarded otp-pending).
 */
export async function buildApp (options: XemsSessionOptions = {}): Promise<TestApp> {
  const clock = makeClock()
  const logs: string[] = []
  const app = Fastify({
    logger: { level: 'debug', stream: { write: (line: string) => { logs.push(line) } } }
  })
  await app.register(xemsSession, { cookie: { secure: false }, clock: () => clock.now, ...options })
  app.post<{ Body: { data?: Record<string, unknown>, sandbox?: string, userId?: string } | undefined }>('/login', async (request, reply) => {
    const body = request.body ?? {}
    const token = await reply.xLink(
      body.data ?? { user: 'ada' }, { ...(body.sandbox === undefined ? {} : { sandbox: body.sandbox }), ...(body.userId === undefined ? {} : { userId: body.userId }) }
    )
    return { linked: token.length }
  })
  app.get('/me', { preHandler: app.xems.requireSession() }, async (request) => {
    const session = request.session!
    return { id: session.id, sandbox: session.sandbox, data: session.data, userId: session.userId ?? null, expiresAt: session.expiresAt }
  })
  app.post<{ Body: { key: string, value: unknown } }>('/me', { preHandler: app.xems.requireSession() }, async (request) => {
    request.session!.data[request.body.key] = request.body.value
    return { ok: true }
  })
  app.post('/logout', async (request, reply) => {
    await reply.xUnlink()
    return { ok: true }
  })
  app.post('/regenerate', { preHandler: app.xems.requireSession() }, async (request) => {
    await request.session!.regenerate()
    return { ok: true }
  })
  app.post('/destroy', { preHandler: app.xems.requireSession() }, async (request) => {
    await request.session!.destroy()
    return { ok: true }
  })
  app.get('/public', async (request) => ({ sandbox: request.session?.sandbox ?? null }))
  app.get('/pending', { preHandler: app.xems.requireSession('otp-pending') }, async (request) => ({ data: request.session!.data }))
  app.get('/boom', async (request) => {
    if (request.session !== null) request.session.data.beforeBoom = true
    throw new Error('handler failed')
  })
  return { app, clock, logs }
}

/** The value of the session cookie a response sets ('' when it clears it), or undefined. */
export function setCookieToken (response: LightMyRequestResponse, name = 'xems'): string | undefined {
  return response.cookies.find((cookie) => cookie.name === name)?.value
}

/** The session token a 200 response set; throws (with the status and body) when it set none. */
export function issuedToken (response: LightMyRequestResponse): string {
  const token = setCookieToken(response)
  if (response.statusCode !== 200 || token === undefined || token === '') throw new Error(`no token: ${response.statusCode} ${response.body}`)
  return token
}

/** Whether a response clears the session cookie. */
export function clearsSessionCookie (response: LightMyRequestResponse): boolean {
  return /(^|,\s*)xems=;/.test(String(response.headers['set-cookie'] ?? ''))
}

export function setCookieHeader (response: LightMyRequestResponse): string {
  const header = response.headers['set-cookie']
  return Array.isArray(header) ? header.join('\n') : header ?? ''
}

export async function login (app: FastifyInstance, body: Record<string, unknown> = {}): Promise<string> {
  const response = await app.inject({ method: 'POST', url: '/login', payload: body })
  const token = setCookieToken(response)
  if (response.statusCode !== 200 || token === undefined) throw new Error(`login failed: ${response.statusCode} ${response.body}`)
  return token
}
