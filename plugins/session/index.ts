import fastifyCookie from '@fastify/cookie'
import type { FastifyInstance, FastifyReply, FastifyRequest, preHandlerAsyncHookHandler } from 'fastify'
import fp from 'fastify-plugin'
import { parsePositiveDuration, type Duration } from '../../lib/duration.js'
import { checkSignIn, deviceOf, type SignInMethod } from '../../lib/device.js'
import { XemsEngine, type EngineOptions } from '../../lib/session/engine.js'
import { badOption, isXemsError, XemsError, xemsError } from '../../lib/errors.js'
import { presentedOf, XemsSession, type Outcome } from '../../lib/session/handle.js'
import type { BindingContext, BindingHooks } from './binding-hooks.js'
import { assertSameOrigin, checkCsrfOptions, type CsrfOptions } from './csrf.js'
import type { DeviceBoundOptions } from './dbsc.js'
import type { DpopOptions } from './dpop.js'
import { createSessionGuard } from './guard.js'
import { readRawCookie } from './raw-cookie.js'
import { StoreOutage } from './store-outage.js'

/**
 * The shape of session data, for `request.session.data`: any key (of type `unknown`) unless the app narrows
 * it. Type keys by declaration merging (other keys stay allowed):
 *
 * ```ts
 * declare module 'fastify-xems' {
 *   interface XemsSessionData { userId: string, cart?: string[] }
 * }
 * ```
 *
 * or allow only the app's keys through {@link XemsTypes}.
 */
export interface XemsSessionData {
  [key: string]: unknown
}

/**
 * Augment with `sessionData: YourShape` to type `request.session.data` (and `reply.xLink`) as exactly that
 * shape, with no index signature: a misspelt key is then a compile error.
 *
 * ```ts
 * declare module 'fastify-xems' {
 *   interface XemsTypes { sessionData: { userId: string, cart?: string[] } }
 * }
 * ```
 */
export interface XemsTypes {}

/** The type of session data: `XemsTypes['sessionData']` when the app set it, else {@link XemsSessionData}. */
export type XemsData = XemsTypes extends { sessionData: infer Data extends object } ? Data : XemsSessionData

export interface XemsCookieOptions {
  /**
   * Cookie name. Default `__Host-xems` when the cookie is secure with path `/` and no domain (no
   * sibling subdomain can then set or shadow it), `__Secure-xems` when secure otherwise, `xems` when
   * not secure. A `__Host-` name requires secure, path `/` and no domain.
   */
  name?: string | undefined
  path?: string | undefined
  domain?: string | undefined
  /** Default true; turn it off only for plain http://localhost development. */
  secure?: boolean | undefined
  sameSite?: 'lax' | 'strict' | 'none' | undefined
  /**
   * false (default): a browser-session cookie, gone when the browser closes (the OWASP cheat sheet's
   * advice). true: the cookie carries Max-Age up to the session's absolute deadline. Either way the
   * server enforces the idle and absolute timeouts.
   */
  persistent?: boolean | undefined
}

export interface CreateLimitOptions {
  /** Sessions one client may open per window. */
  max: number
  window: Duration
  /** Who "one client" is (default: the request's IP). */
  key?: ((request: FastifyRequest) => string) | undefined
}

export interface XemsSessionOptions extends EngineOptions {
  /** A new token on every response to a request that resolved a session (default true). */
  autoRotation?: boolean | undefined
  /** Cookie transport for browsers, always HttpOnly (default on); false turns it off. */
  cookie?: XemsCookieOptions | false | undefined
  /** Header transport for other clients (default `x-xems-token`); false turns it off. */
  header?: string | false | undefined
  /** Rate limit on sessions opened through `reply.xLink` (default off). */
  createLimit?: CreateLimitOptions | false | undefined
  /**
   * Refuse cross-site state-changing requests that carry the session cookie, with 403 FST_XEMS_CSRF
   * (Fetch Metadata, else Origin; see plugins/session/csrf.ts). Default on; false turns it off.
   */
  csrf?: CsrfOptions | false | undefined
  /** Record the client's IP in each session's device record (default true; false for privacy). */
  recordIp?: boolean | undefined
  /**
   * What `reply.xUnlink()` sends as `Clear-Site-Data` (default none; e.g. `['cache', 'storage']`).
   * `"cookies"` clears every cookie of the registrable domain (example.com and all its subdomains),
   * not only this app's: choose it only when the app owns the whole domain.
   */
  clearSiteData?: ClearSiteDataType[] | false | undefined
  /**
   * Device Bound Session Credentials for browsers (W3C draft; default off): a sign-in offers the browser
   * to bind the session to a device key; once bound, requests are served as the session only with a
   * short-lived bound cookie that only the key can refresh. See docs/sessions.md and plugins/session/dbsc.ts.
   */
  deviceBound?: DeviceBoundOptions | boolean | undefined
  /**
   * DPoP (RFC 9449) for header clients (default off): a header client that signs in with a `DPoP` proof
   * gets a session bound to its key, and every request of it must carry a fresh proof. See plugins/session/dpop.ts.
   */
  dpop?: DpopOptions | boolean | undefined
}

export type ClearSiteDataType = 'cache' | 'cookies' | 'storage' | 'executionContexts' | '*'

export interface LinkOptions {
  sandbox?: string | undefined
  userId?: string | undefined
  ttl?: Duration | undefined
  /** How the user signed in, kept in the session's device record. */
  signIn?: SignInMethod | undefined
}

export interface UnlinkOptions {
  /** Overrides the `clearSiteData` option for this response. */
  clearSiteData?: ClearSiteDataType[] | false | undefined
}

export type XemsDecorator = XemsEngine & {
  /** A preHandler that answers 401 unless the request has a session in `sandbox` (default: the default sandbox). */
  requireSession: (sandbox?: string) => preHandlerAsyncHookHandler
}

declare module 'fastify' {
  interface FastifyInstance {
    xems: XemsDecorator
  }
  interface FastifyRequest {
    /** The request's session, or null. */
    session: XemsSession<XemsData> | null
  }
  interface FastifyReply {
    /**
     * Opens a session (ending the request's current one) and sends its token with this response.
     * Returns the token.
     */
    xLink: (data?: Partial<XemsData>, sandboxOrOptions?: string | LinkOptions) => Promise<string>
    /** Ends the request's session everywhere and clears the cookie; the answer is never cached. */
    xUnlink: (options?: UnlinkOptions) => Promise<void>
  }
}

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
  /** The response already carries its token outcome (onSend runs again for error responses). */
  done: boolean
  /** Clear-Site-Data to send (xUnlink). */
  clearSiteData: string | null
}

type StatefulRequest = FastifyRequest & { [kState]?: RequestState }

const COOKIE_NAME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,128}$/
const HEADER_NAME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,128}$/
const COOKIE_PATH = /^\/[\x21-\x3a\x3c-\x7e]{0,255}$/
const COOKIE_DOMAIN = /^\.?[A-Za-z0-9](?:[A-Za-z0-9-.]{0,251}[A-Za-z0-9])?$/

interface CookieSettings {
  name: string
  path: string
  domain?: string | undefined
  secure: boolean
  sameSite: 'lax' | 'strict' | 'none'
  persistent: boolean
  /** The Set-Cookie attributes after the value, built once (setCookieHeader). */
  tail?: string
}

function checkCookie (cookie: XemsCookieOptions | false | undefined): CookieSettings | null {
  if (cookie === false) return null
  if (cookie !== undefined && (cookie === null || typeof cookie !== 'object')) throw badOption('cookie', 'must be an object of cookie options or false')
  const options = cookie ?? {}
  if ('httpOnly' in options && (options as { httpOnly?: unknown }).httpOnly !== true) {
    throw badOption('cookie.httpOnly', 'cannot be turned off: the session cookie is always HttpOnly, so page scripts never see the token')
  }
  const secure = options.secure ?? true
  const path = options.path ?? '/'
  const settings: CookieSettings = {
    name: options.name ?? (!secure ? 'xems' : path === '/' && options.domain === undefined ? '__Host-xems' : '__Secure-xems'),
    path,
    secure,
    sameSite: options.sameSite ?? 'lax',
    persistent: options.persistent ?? false
  }
  if (typeof settings.name !== 'string' || !COOKIE_NAME.test(settings.name)) throw badOption('cookie.name', 'must be 1 to 128 cookie-name characters (letters, digits, !#$%&\'*+-.^_`|~)')
  if (typeof settings.path !== 'string' || !COOKIE_PATH.test(settings.path)) throw badOption('cookie.path', 'must start with "/" and hold no ";" or control characters')
  if (typeof settings.secure !== 'boolean') throw badOption('cookie.secure', 'must be true or false')
  if (typeof settings.persistent !== 'boolean') throw badOption('cookie.persistent', 'must be true or false')
  if (!['lax', 'strict', 'none'].includes(settings.sameSite)) throw badOption('cookie.sameSite', "must be 'lax', 'strict' or 'none'")
  if (options.domain !== undefined) {
    if (typeof options.domain !== 'string' || !COOKIE_DOMAIN.test(options.domain)) throw badOption('cookie.domain', 'must be a host name')
    settings.domain = options.domain
  }
  if (settings.sameSite === 'none' && !settings.secure) throw badOption('cookie.sameSite', "'none' requires cookie.secure: browsers drop insecure SameSite=None cookies")
  if (settings.name.startsWith('__Host-') && (!settings.secure || settings.path !== '/' || settings.domain !== undefined)) {
    throw badOption('cookie.name', 'with the __Host- prefix requires secure: true, path: "/" and no domain')
  }
  if (settings.name.startsWith('__Secure-') && !settings.secure) throw badOption('cookie.name', 'with the __Secure- prefix requires secure: true')
  return settings
}

function checkHeader (header: string | false | undefined): string | null {
  if (header === false) return null
  const name = header ?? 'x-xems-token'
  if (typeof name !== 'string' || !HEADER_NAME.test(name)) throw badOption('header', 'must be a header name (letters, digits, !#$%&\'*+-.^_`|~) or false')
  const lower = name.toLowerCase()
  if (['cookie', 'set-cookie', 'authorization', 'host', 'content-type', 'content-length'].includes(lower)) throw badOption('header', `cannot be "${lower}"`)
  return lower
}

function checkCreateLimit (limit: CreateLimitOptions | false | undefined): { max: number, window: number, key: (request: FastifyRequest) => string } | null {
  if (limit === undefined || limit === false) return null
  if (limit === null || typeof limit !== 'object') throw badOption('createLimit', 'must be { max, window } or false')
  if (!Number.isSafeInteger(limit.max) || limit.max < 1) throw badOption('createLimit.max', 'must be a whole number of at least 1')
  if (limit.key !== undefined && typeof limit.key !== 'function') throw badOption('createLimit.key', 'must be a function of the request')
  return { max: limit.max, window: parsePositiveDuration(limit.window, 'createLimit.window'), key: limit.key ?? ((request) => request.ip) }
}

async function xemsSessionPlugin (fastify: FastifyInstance, options: XemsSessionOptions): Promise<void> {
  const cookie = checkCookie(options.cookie)
  const header = checkHeader(options.header)
  if (cookie === null && header === null) throw badOption('cookie', 'and option "header" cannot both be false: the token needs a transport')
  if (options.autoRotation !== undefined && typeof options.autoRotation !== 'boolean') throw badOption('autoRotation', 'must be true or false')
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
      fastify.log.warn({ xems: 'store-unavailable', err: { message: err instanceof Error ? err.message : String(err) } }, 'xems: the session store is not reachable yet; requests that need it answer 503 until it is')
    })
  }

  if (cookie !== null && !fastify.hasRequestDecorator('cookies')) await fastify.register(fastifyCookie)

  const decorator: XemsDecorator = Object.assign(engine, { requireSession: createSessionGuard(engine.defaultSandbox) })
  fastify.decorate('xems', decorator)
  fastify.decorateRequest('session', null)
  fastify.decorateRequest(kState, null)
  fastify.decorateReply('xLink', xLink)
  fastify.decorateReply('xUnlink', xUnlink)

  engine.on('created', (event) => fastify.log.info({ xems: 'session-created', ...event }, 'xems: session created'))
  // Logged at debug only; not listened to otherwise, so a rotation does not derive a public id for nothing.
  if (['trace', 'debug'].includes(fastify.log.level)) engine.on('rotated', (event) => fastify.log.debug({ xems: 'session-rotated', ...event }, 'xems: token rotated'))
  engine.on('migrated', (event) => fastify.log.info({ xems: 'session-migrated', ...event }, 'xems: session migrated'))
  engine.on('destroyed', (event) => fastify.log.info({ xems: 'session-destroyed', ...event }, 'xems: session destroyed'))
  engine.on('revoked', (event) => fastify.log.info({ xems: 'user-revoked', ...event }, 'xems: sessions of a user revoked'))
  engine.on('security', (event) => fastify.log.info({ xems: 'security-event', event: event.type, userId: event.userId, ...('id' in event ? { id: event.id } : {}) }, `xems: security event ${event.type}`))
  // 429 answers (session creation limit, MFA lockout) say when to come back.
  fastify.addHook('onError', async (_request, reply, error) => {
    if (isXemsError(error) && error.retryAfter !== undefined) reply.header('retry-after', String(error.retryAfter))
  })
  if (ownsStore) fastify.addHook('onClose', async () => { await engine.close() })

  const outage = new StoreOutage(fastify.log)
  const unavailable = (err: XemsError): string => JSON.stringify({ statusCode: 503, code: err.code, error: 'Service Unavailable', message: err.message })

  fastify.addHook('onRequest', async (request: StatefulRequest, reply) => {
    const state: RequestState = { headerClient: false, clear: false, done: false, clearSiteData: null }
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
      else if (raw.status === 'ambiguous') request.log.warn({ xems: 'duplicate-session-cookie', count: raw.count }, 'xems: several different session cookies: none is used')
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
      request.log.warn({ xems: 'token-reuse', id: opened.id, sandbox: opened.sandbox, userId: opened.userId, revoked: opened.revoked }, 'xems: an earlier token of a session was replayed after its window (theft signal)')
      const here = deviceOf(request.headers['user-agent'], request.ip, recordIp)
      const before = opened.device
      engine.security({
        type: 'theft',
        at: engine.now(),
        id: opened.id,
        sandbox: opened.sandbox,
        ...(opened.userId === undefined ? {} : { userId: opened.userId }),
        revoked: opened.revoked,
        lastUse: before === null ? null : { userAgent: before.userAgent, browser: before.browser, os: before.os, ...(before.ip === undefined ? {} : { ip: before.ip }) },
        presented: { userAgent: here.userAgent, browser: here.browser, os: here.os, ...(here.ip === undefined ? {} : { ip: here.ip }) }
      })
      throw xemsError('FST_XEMS_TOKEN_REUSED')
    } else if (opened.status !== 'none') {
      const session = new XemsSession(engine, opened.session, opened.status, opened.presented, opened.token)
      // A binding that does not decode, or whose plugin is not registered here, fails closed.
      const binding = session.binding?.type
      if (binding === undefined || (binding === 'dbsc' && deviceBound !== false) || (binding === 'dpop' && dpop !== false)) request.session = session
      else request.log.warn({ xems: 'unusable-binding', id: session.id, binding }, 'xems: a session bound to a key this app does not check: not served')
    }
  })

  fastify.addHook('onSend', async (request: StatefulRequest, reply, payload) => {
    const state = request[kState]
    if (state === undefined || state.done) return payload
    state.done = true
    let outcome: Outcome = state.clear ? { action: 'clear' } : { action: 'keep' }
    if (request.session !== null) {
      try {
        request.session.noteUse(request.headers['user-agent'], request.ip, recordIp)
        outcome = await request.session.finish({ rotate: autoRotation })
      } catch (err) {
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

  async function xLink (this: FastifyReply, data: Record<string, unknown> = {}, sandboxOrOptions: string | LinkOptions = {}): Promise<string> {
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
    if (request.session !== null) await request.session.destroy()
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
    if (request.session !== null) await request.session.destroy()
    request.session = null
    for (const hook of hooks.unlink) hook(this)
    // Whatever happens next, this answer is never cached (it also carries the cookie's removal).
    this.header('cache-control', 'no-store')
    const state = request[kState]
    if (state !== undefined) {
      state.clear = true
      state.clearSiteData = siteData
    }
  }
}

const CLEAR_SITE_DATA_TYPES = new Set(['cache', 'cookies', 'storage', 'executionContexts', '*'])

/** The Clear-Site-Data header value (quoted types), or null for none. */
function checkClearSiteData (types: ClearSiteDataType[] | false | undefined, option: string): string | null {
  if (types === undefined || types === false) return null
  if (!Array.isArray(types) || types.length === 0 || !types.every((type) => CLEAR_SITE_DATA_TYPES.has(type))) {
    throw badOption(option, "must be false or a non-empty list of 'cache', 'cookies', 'storage', 'executionContexts', '*'")
  }
  return [...new Set(types)].map((type) => `"${type}"`).join(', ')
}

/**
 * The Set-Cookie value carrying a token, attributes in the order and spelling of the cookie module that
 * @fastify/cookie uses (`name=value; Max-Age=…; Domain=…; Path=…; HttpOnly; Secure; SameSite=…`). A
 * token is base64url and `.`, which cookie encoding leaves as they are.
 */
function setCookieHeader (cookie: CookieSettings, token: string, maxAge: number | null): string {
  cookie.tail ??= `${cookie.domain === undefined ? '' : `; Domain=${cookie.domain}`}; Path=${cookie.path}; HttpOnly${cookie.secure ? '; Secure' : ''}; SameSite=${SAME_SITE[cookie.sameSite]}`
  return maxAge === null ? `${cookie.name}=${token}${cookie.tail}` : `${cookie.name}=${token}; Max-Age=${maxAge}${cookie.tail}`
}

const SAME_SITE = { lax: 'Lax', strict: 'Strict', none: 'None' } as const

function cookieAttributes (cookie: CookieSettings): { path: string, domain?: string, secure: boolean, sameSite: 'lax' | 'strict' | 'none', httpOnly: true } {
  return { path: cookie.path, secure: cookie.secure, sameSite: cookie.sameSite, httpOnly: true, ...(cookie.domain === undefined ? {} : { domain: cookie.domain }) }
}

/** Sessions for Fastify: `app.xems`, `request.session`, `reply.xLink` / `reply.xUnlink`, rotation on send. */
export const xemsSession = fp(xemsSessionPlugin, { name: 'xems-session', fastify: '5.x' })

/** `xems.forApp(app)`: the engine a registered xemsSession put on `app` (as the XEMS tutorials call it). */
export const xems = {
  forApp (app: FastifyInstance): XemsDecorator {
    if (!app.hasDecorator('xems')) {
      throw xemsError('FST_XEMS_MISSING_SESSION_PLUGIN')
    }
    return app.xems
  }
}
