/**
 * xemsSession's own options (beyond the engine's) and their checks: each check refuses a bad value at
 * register with FST_XEMS_BAD_OPTION and returns the settled value the plugin uses.
 */
import type { FastifyRequest } from 'fastify'
import { parsePositiveDuration, type Duration } from '../../lib/duration.js'
import type { EngineOptions } from '../../lib/session/engine.js'
import { badOption } from '../../lib/errors.js'
import type { CookieSettings } from './cookie.js'
import type { CsrfOptions } from './csrf.js'
import type { DeviceBoundOptions } from './dbsc.js'
import type { DpopOptions } from './dpop.js'

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

const COOKIE_NAME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,128}$/
const HEADER_NAME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,128}$/
const COOKIE_PATH = /^\/[\x21-\x3a\x3c-\x7e]{0,255}$/
const COOKIE_DOMAIN = /^\.?[A-Za-z0-9](?:[A-Za-z0-9-.]{0,251}[A-Za-z0-9])?$/

export function checkCookie (cookie: XemsCookieOptions | false | undefined): CookieSettings | null {
  if (cookie === false) return null
  if (cookie !== undefined && (cookie === null || typeof cookie !== 'object')) {
    throw badOption('cookie', 'must be an object of cookie options or false')
  }
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
  if (typeof settings.name !== 'string' || !COOKIE_NAME.test(settings.name)) {
    throw badOption('cookie.name', 'must be 1 to 128 cookie-name characters (letters, digits, !#$%&\'*+-.^_`|~)')
  }
  if (typeof settings.path !== 'string' || !COOKIE_PATH.test(settings.path)) {
    throw badOption('cookie.path', 'must start with "/" and hold no ";" or control characters')
  }
  if (typeof settings.secure !== 'boolean') throw badOption('cookie.secure', 'must be true or false')
  if (typeof settings.persistent !== 'boolean') throw badOption('cookie.persistent', 'must be true or false')
  if (!['lax', 'strict', 'none'].includes(settings.sameSite)) throw badOption('cookie.sameSite', "must be 'lax', 'strict' or 'none'")
  if (options.domain !== undefined) {
    if (typeof options.domain !== 'string' || !COOKIE_DOMAIN.test(options.domain)) throw badOption('cookie.domain', 'must be a host name')
    settings.domain = options.domain
  }
  if (settings.sameSite === 'none' && !settings.secure) {
    throw badOption('cookie.sameSite', "'none' requires cookie.secure: browsers drop insecure SameSite=None cookies")
  }
  if (settings.name.startsWith('__Host-') && (!settings.secure || settings.path !== '/' || settings.domain !== undefined)) {
    throw badOption('cookie.name', 'with the __Host- prefix requires secure: true, path: "/" and no domain')
  }
  if (settings.name.startsWith('__Secure-') && !settings.secure) {
    throw badOption('cookie.name', 'with the __Secure- prefix requires secure: true')
  }
  return settings
}

export function checkHeader (header: string | false | undefined): string | null {
  if (header === false) return null
  const name = header ?? 'x-xems-token'
  if (typeof name !== 'string' || !HEADER_NAME.test(name)) {
    throw badOption('header', 'must be a header name (letters, digits, !#$%&\'*+-.^_`|~) or false')
  }
  const lower = name.toLowerCase()
  if (['cookie', 'set-cookie', 'authorization', 'host', 'content-type', 'content-length'].includes(lower)) {
    throw badOption('header', `cannot be "${lower}"`)
  }
  return lower
}

export function checkCreateLimit (limit: CreateLimitOptions | false | undefined): {
  max: number
  window: number
  key: (request: FastifyRequest) => string
} | null {
  if (limit === undefined || limit === false) return null
  if (limit === null || typeof limit !== 'object') throw badOption('createLimit', 'must be { max, window } or false')
  if (!Number.isSafeInteger(limit.max) || limit.max < 1) throw badOption('createLimit.max', 'must be a whole number of at least 1')
  if (limit.key !== undefined && typeof limit.key !== 'function') throw badOption('createLimit.key', 'must be a function of the request')
  return { max: limit.max, window: parsePositiveDuration(limit.window, 'createLimit.window'), key: limit.key ?? ((request) => request.ip) }
}

const CLEAR_SITE_DATA_TYPES = new Set(['cache', 'cookies', 'storage', 'executionContexts', '*'])

/** The Clear-Site-Data header value (quoted types), or null for none. */
export function checkClearSiteData (types: ClearSiteDataType[] | false | undefined, option: string): string | null {
  if (types === undefined || types === false) return null
  if (!Array.isArray(types) || types.length === 0 || !types.every((type) => CLEAR_SITE_DATA_TYPES.has(type))) {
    throw badOption(option, "must be false or a non-empty list of 'cache', 'cookies', 'storage', 'executionContexts', '*'")
  }
  return [...new Set(types)].map((type) => `"${type}"`).join(', ')
}
