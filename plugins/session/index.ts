/**
 * xemsSession: the engine on `app.xems`, the request's session on `request.session`, `reply.xLink` /
 * `reply.xUnlink`, and the two hooks: `onRequest` resolves the presented token, `onSend` commits the
 * session and answers with its (rotated) token.
 */
import fastifyCookie from '@fastify/cookie'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { checkSignIn, deviceOf } from '../../lib/device.js'
import { XemsEngine } from '../../lib/session/engine.js'
import { badOption, isXemsError, XemsError, xemsError } from '../../lib/errors.js'
import { presentedOf, XemsSession, type Outcome } from '../../lib/session/handle.js'
import type { BindingContext, BindingHooks } from './binding-hooks.js'
import { cookieAttributes, setCookieHeader } from './cookie.js'
import { assertSameOrigin, checkCsrfOptions } from './csrf.js'
import { checkClearSiteData, checkCookie, checkCreateLimit, checkHeader, type XemsSessionOptions } from './options.js'
import { readRawCookie } from './raw-cookie.js'
import { StoreOutage } from './store-outage.js'
import { XemsApi, type XemsDecorator } from './api.js'
import type { LinkOptions, UnlinkOptions } from './types.js'

export type { ClearSiteDataType, CreateLimitOptions, XemsCookieOptions, XemsSessionOptions } from './options.js'
export type { XemsDecorator } from './api.js'
export type { LinkOptions, UnlinkOptions, XemsData, XemsSessionData, XemsTypes } from './types.js'

const kState = Symbol('xems.state')

interface RequestState {
  /** The client sent the header: answer by header too. */
  headerClient: boolean
  /**
   * Clear the client's cookie: its token was replayed after grace (theft signal) or the session was
   * ended on purpose. A merely unknown token is ignored, not cleared: clearing could race with a
   * concurrent response (a login, a migration) that carries the client's new token.
   */
  clear: boolean
  /**
   * The token was one a migration retired (within its deadline): no session here, but the session lives
   * on, and the client may be about to receive its new token. A logout then answers 401, not "signed out".
   */
  retired: boolean
  /** The response already carries its token outcome (onSend runs again for error responses). */
  done: boolean
  /** Clear-Site-Data to send (xUnlink). */
  clearSiteData: string | null
}

/** The state is a request decorator (null until this plugin's onRequest ran; it does not when an earlier hook answered). */
type StatefulRequest = FastifyRequest & { [kState]?: RequestState | null }

async function xemsSessionPlugin (fastify: FastifyInstance, options: XemsSessionOptions): Promise<void> {
  const cookie = checkCookie(options.cookie)
  const header = checkHeader(options.header)
  if (cookie === null && header === null) throw badOption('cookie', 'and option "header" cannot both be false: the token needs a transport')
  if (options.autoRotation !== undefined && typeof options.autoRotation !== 'boolean') {
    throw badOption('autoRotation', 'must be true or false')
  }
  const autoRotation = options.autoRotation ?? true
  const createLimit = checkCreateLimit(options.createLimit)
  const csrf = cookie === null ? null : checkCsrfOptions(options.csrf)
  if (options.recordIp !== undefined && typeof options.recordIp !== 'boolean') throw badOption('recordIp', 'must be true or false')
  const recordIp = options.recordIp ?? true
  const clearSiteData = checkClearSiteData(options.clearSiteData, 'clearSiteData')
  const deviceBound = options.deviceBound ?? false
  const dpop = options.dpop ?? false
  if (deviceBound === null) throw badOption('deviceBound', 'must be true, false or { … }')
  if (dpop === null) throw badOption('dpop', 'must be true, false or { … }')
  const ownsStore = options.store === undefined
  const engine = new XemsEngine(options)
  // A vault that does not open or a wrong secret fails register, not the first request. A store that is
  // merely unreachable (Redis down) does not: requests answer 503 until it is back.
  if (typeof engine.store.ready === 'function') {
    await engine.store.ready().catch((err: unknown) => {
      if (isXemsError(err)) throw err
      fastify.log.warn(
        { xems: 'store-unavailable', err: { message: err instanceof Error ? err.message : String(err) } },
        'xems: the session store is not reachable yet; requests that need it answer 503 until it is'
      )
    })
  }

  if (cookie !== null && !fastify.hasRequestDecorator('cookies')) await fastify.register(fastifyCookie)

  const api: XemsDecorator = new XemsApi(engine)
  fastify.decorate('xems', api)
  fastify.decorateRequest('session', null)
  fastify.decorateRequest(kState, null)
  fastify.decorateReply('xLink', xLink)
  fastify.decorateReply('xUnlink', xUnlink)

  engine.on('created', (event) => fastify.log.info({ xems: 'session-created', ...event }, 'xems: session created'))
  // Logged at debug only; not listened to otherwise, so a rotation does not derive a public id for nothing.
  if (['trace', 'debug'].includes(fastify.log.level)) {
    engine.on('rotated', (event) => fastify.log.debug({ xems: 'session-rotated', ...event }, 'xems: token rotated'))
  }
  engine.on('migrated', (event) => fastify.log.info({ xems: 'session-migrated', ...event }, 'xems: session migrated'))
  engine.on('destroyed', (event) => fastify.log.info({ xems: 'session-destroyed', ...event }, 'xems: session destroyed'))
  engine.on('revoked', (event) => fastify.log.info({ xems: 'user-revoked', ...event }, 'xems: sessions of a user revoked'))
  engine.on(
    'security',
    (event) => fastify.log.info(
      { xems: 'security-event', event: event.type, userId: event.userId, ...('id' in event ? { id: event.id } : {}) },
      `xems: security event ${event.type}`
    )
  )
  // 429 answers (session creation limit, MFA lockout) say when to come back.
  fastify.addHook('onError', async (_request, reply, error) => {
    if (isXemsError(error) && error.retryAfter !== undefined) reply.header('retry-after', String(error.retryAfter))
  })
  if (ownsStore) fastify.addHook('onClose', async () => { await engine.close() })

  const outage = new StoreOutage(fastify.log)
  const unavailable = (err: XemsError): string => JSON.stringify({
    statusCode: 503, code: err.code, error: 'Service Unavailable', message: err.message
  })

  fastify.addHook('onRequest', async (request: StatefulRequest, reply) => {
    const state: RequestState = { headerClient: false, clear: false, retired: false, done: false, clearSiteData: null }
    request[kState] = state
    let presented: string | undefined
    const fromHeader = header === null ? undefined : request.headers[header]
    if (fromHeader !== undefined) {
      state.headerClient = true
      presented = Array.isArray(fromHeader) ? '' : fromHeader
    } else if (cookie !== null) {
      // Raw, not percent-decoded; two different session cookies (cookie tossing) are no session.
      const raw = readRawCookie(request.headers.cookie, cookie.name)
      // Before any store work: a cross-site state change riding on the cookie never reaches the handler.
      if (csrf !== null && raw.status !== 'absent') assertSameOrigin(request, csrf)
      if (raw.status === 'one') presented = raw.value
      else if (raw.status === 'ambiguous') {
        request.log.warn({ xems: 'duplicate-session-cookie', count: raw.count }, 'xems: several different session cookies: none is used')
      }
    }
    if (presented === undefined) return
    let opened
    try {
      opened = await engine.open(presented)
    } catch (err) {
      // An outage is logged once per burst (StoreOutage), not once per request as a thrown error would be.
      if (!outage.failed(err)) throw err
      reply.code(503).header('retry-after', '1').type('application/json; charset=utf-8').send(unavailable(err))
      return reply
    }
    outage.succeeded()
    if (opened.status === 'reused') {
      state.clear = true
      request.log.warn(
        { xems: 'token-reuse', id: opened.id, sandbox: opened.sandbox, userId: opened.userId, revoked: opened.revoked },
        'xems: an earlier token of a session was replayed after its window (theft signal)'
      )
      const here = deviceOf(request.headers['user-agent'], request.ip, recordIp)
      const before = opened.device
      engine.security({
        type: 'theft',
        at: engine.now(),
        id: opened.id,
        sandbox: opened.sandbox,
        ...(opened.userId === undefined ? {} : { userId: opened.userId }),
        revoked: opened.revoked,
        lastUse: before === null
          ? null
          : {
              userAgent: before.userAgent, browser: before.browser, os: before.os, ...(before.ip === undefined ? {} : { ip: before.ip })
            },
        presented: { userAgent: here.userAgent, browser: here.browser, os: here.os, ...(here.ip === undefined ? {} : { ip: here.ip }) }
      })
      throw xemsError('FST_XEMS_TOKEN_REUSED')
    } else if (opened.status === 'retired') {
      state.retired = true
    } else if (opened.status !== 'none') {
      const session = new XemsSession(engine, opened.session, opened.status, opened.presented, opened.token)
      // A binding that does not decode, or whose plugin is not registered here, fails closed.
      const binding = session.binding?.type
      if (binding === undefined || (binding === 'dbsc' && deviceBound !== false) ||
        (binding === 'dpop' && dpop !== false)) request.session = session
      else {
        request.log.warn(
          { xems: 'unusable-binding', id: session.id, binding }, 'xems: a session bound to a key this app does not check: not served'
        )
      }
    }
  })

  fastify.addHook('onSend', async (request: StatefulRequest, reply, payload) => {
    const state = request[kState]
    if (state == null || state.done) return payload
    state.done = true
    let outcome: Outcome = state.clear ? { action: 'clear' } : { action: 'keep' }
    if (request.session !== null) {
      try {
        request.session.noteUse(request.headers['user-agent'], request.ip, recordIp)
        outcome = await request.session.finish({ rotate: autoRotation })
      } catch (err) {
        // Any other error answers as itself, through the error handler, and the token outcome is never
        // applied (no Set-Cookie, nothing cleared): FST_XEMS_NO_SESSION (401) when a concurrent migration
        // retired this request's token and its changes were not saved (see XemsSession.finish).
        if (!outage.failed(err)) throw err
        // The store did not confirm: the commit may still run (a timeout, a stall). Either way the client's
        // token stays valid: a rotation it never learnt of leaves that token working until the new one
        // is presented (the unseen window), and it is then answered with the new one.
        reply.code(503).header('retry-after', '1').type('application/json; charset=utf-8')
        return unavailable(err)
      }
      if (request.session.destroyed) request.session = null
    }
    applyOutcome(reply, state, outcome)
    if (state.clearSiteData !== null) reply.header('clear-site-data', state.clearSiteData)
    return payload
  })

  // The key bindings: their code (and jose) loads only when the app turns them on.
  const hooks: BindingHooks = { link: [], unlink: [] }
  const context: BindingContext = { engine, hooks, header, cookie }
  if (dpop !== false) {
    const { xemsDpop } = await import('./dpop.js')
    await fastify.register(xemsDpop, { dpop, context })
  }
  if (deviceBound !== false) {
    const { xemsDbsc } = await import('./dbsc.js')
    await fastify.register(xemsDbsc, { deviceBound, context })
  }

  function applyOutcome (reply: FastifyReply, state: RequestState, outcome: Outcome): void {
    if (outcome.action === 'keep') return
    reply.header('cache-control', 'no-store')
    // A request that presented the header is answered by header only: its session is never written
    // into (nor cleared from) the cookie, which may hold the browser's own session.
    if (outcome.action === 'clear') {
      if (cookie !== null && !state.headerClient) reply.clearCookie(cookie.name, cookieAttributes(cookie))
      return
    }
    if (cookie !== null && !state.headerClient) {
      // Written as the header itself, as @fastify/cookie would serialise it (a token needs no encoding):
      // other cookies the app sets still go through @fastify/cookie, which appends them to this one.
      const maxAge = cookie.persistent ? Math.max(1, Math.floor((outcome.absoluteExpiresAt - engine.now()) / 1000)) : null
      reply.header('set-cookie', setCookieHeader(cookie, outcome.token, maxAge))
    }
    if (header !== null && (state.headerClient || cookie === null)) reply.header(header, outcome.token)
  }

  async function xLink (
    this: FastifyReply, data: Record<string, unknown> = {}, sandboxOrOptions: string | LinkOptions = {}
  ): Promise<string> {
    const link: LinkOptions = typeof sandboxOrOptions === 'string' ? { sandbox: sandboxOrOptions } : sandboxOrOptions
    const request = this.request
    if (createLimit !== null) {
      const counted = await engine.hit(`xems:create:${createLimit.key(request)}`, createLimit.window)
      if (counted.count > createLimit.max) {
        const retryAfter = Math.max(1, Math.ceil((counted.resetAt - engine.now()) / 1000))
        this.header('retry-after', String(retryAfter))
        throw xemsError('FST_XEMS_RATE_LIMITED', [], { retryAfter })
      }
    }
    const signIn = checkSignIn(link.signIn)
    let binding = null
    for (const hook of hooks.link) binding ??= hook(request)
    // A sign-in ends the request's session first, unless a concurrent migration took that session over
    // meanwhile (its destroy() throws FST_XEMS_NO_SESSION and ends nothing): the sign-in goes on, with a
    // session of its own, and leaves the migrated one to whoever holds its token.
    if (request.session !== null) await request.session.destroy().catch(unlessRetired)
    const { token, session } = await engine.issue(link.sandbox ?? engine.defaultSandbox, data, {
      ...(link.userId === undefined ? {} : { userId: link.userId }),
      ...(link.ttl === undefined ? {} : { ttl: link.ttl }),
      ...(binding === null ? {} : { binding }),
      device: deviceOf(request.headers['user-agent'], request.ip, recordIp, signIn)
    })
    request.session = new XemsSession(engine, session, 'issued', presentedOf(token), token)
    return token
  }

  async function xUnlink (this: FastifyReply, unlink: UnlinkOptions = {}): Promise<void> {
    const request = this.request as StatefulRequest
    const siteData = unlink.clearSiteData === undefined ? clearSiteData : checkClearSiteData(unlink.clearSiteData, 'clearSiteData')
    const state = request[kState]
    // The request's token was retired by a migration that already ran (another tab's sign-in, a
    // regenerate): the session lives on, and the browser may store the migration's new token after this
    // answer. Saying "signed out" (and clearing the cookie) would leave it signed in; 401 says it did not
    // happen, and the client signs out again with the token it now holds.
    if (request.session === null && state?.retired === true) throw xemsError('FST_XEMS_NO_SESSION')
    if (request.session !== null) await request.session.destroy()
    request.session = null
    for (const hook of hooks.unlink) hook(this)
    // Whatever happens next, this answer is never cached (it also carries the cookie's removal).
    this.header('cache-control', 'no-store')
    if (state != null) {
      state.clear = true
      state.clearSiteData = siteData
    }
  }
}

/** Rethrows anything but the FST_XEMS_NO_SESSION of a destroy() that a concurrent migration refused. */
function unlessRetired (err: unknown): void {
  if (!isXemsError(err) || err.code !== 'FST_XEMS_NO_SESSION') throw err
}

/** Sessions for Fastify: `app.xems`, `request.session`, `reply.xLink` / `reply.xUnlink`, rotation on send. */
export const xemsSession = fp(xemsSessionPlugin, { name: 'xems-session', fastify: '5.x' })

/** `xems.forApp(app)`: the session API a registered xemsSession put on `app` (as the XEMS tutorials call it). */
export const xems = {
  forApp (app: FastifyInstance): XemsDecorator {
    if (!app.hasDecorator('xems')) {
      throw xemsError('FST_XEMS_MISSING_SESSION_PLUGIN')
    }
    return app.xems
  }
}
