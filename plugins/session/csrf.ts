import type { FastifyRequest } from 'fastify'
import { badOption, XemsError, xemsError } from '../../lib/errors.js'

/**
 * The built-in CSRF defence: Fetch Metadata, with an Origin check for clients that send none.
 *
 * A state-changing request (any method but GET, HEAD, OPTIONS) that carries the session cookie is
 * refused with 403 FST_XEMS_CSRF before any store work or handler when
 *   - its `Sec-Fetch-Site` is `cross-site`, or `same-site` unless `allowSameSite` (a sibling subdomain
 *     is another site's code as far as this app is concerned; SameSite=Lax lets its requests carry the
 *     cookie); `same-origin` and `none` (the user typed it, a bookmark) pass;
 *   - it has no `Sec-Fetch-Site` (older browsers) but an `Origin` whose host is not the request's host
 *     (`request.host`, which honours `trustProxy`), or the opaque origin `null`.
 * A request with neither header is let through: browsers that send no Fetch Metadata send Origin on
 * cross-origin POSTs, so what has neither is not a browser's cross-site request (curl, a server).
 * Requests that carry only the header transport are not concerned: nothing sends that header on its own.
 */
export interface CsrfOptions {
  /** Let `Sec-Fetch-Site: same-site` through (default false: only same-origin requests change state). */
  allowSameSite?: boolean
}

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS'])

export function checkCsrfOptions (csrf: CsrfOptions | false | undefined): Required<CsrfOptions> | null {
  if (csrf === false) return null
  if (csrf !== undefined && (csrf === null || typeof csrf !== 'object')) throw badOption('csrf', 'must be { allowSameSite? } or false')
  const allowSameSite = csrf?.allowSameSite ?? false
  if (typeof allowSameSite !== 'boolean') throw badOption('csrf.allowSameSite', 'must be true or false')
  return { allowSameSite }
}

/** Throws 403 FST_XEMS_CSRF when `request` is a cross-site state change (see above); the caller knows it carries the cookie. */
export function assertSameOrigin (request: FastifyRequest, options: Required<CsrfOptions>): void {
  if (SAFE_METHODS.has(request.method)) return
  const site = request.headers['sec-fetch-site']
  if (typeof site === 'string') {
    if (site === 'cross-site' || (site === 'same-site' && !options.allowSameSite)) throw refused(`Sec-Fetch-Site: ${site}`)
    return
  }
  const origin = request.headers.origin
  if (typeof origin !== 'string') return
  if (origin === 'null' || hostOf(origin) !== withoutDefaultPort(request.host.toLowerCase())) throw refused('Origin')
}

function hostOf (origin: string): string | null {
  try {
    return new URL(origin).host.toLowerCase()
  } catch {
    return null
  }
}

/** URL drops the scheme's default port from `host`; the Host header may carry it. */
function withoutDefaultPort (host: string): string {
  return host.endsWith(':80') || host.endsWith(':443') ? host.slice(0, host.lastIndexOf(':')) : host
}

function refused (by: string): XemsError {
  return xemsError('FST_XEMS_CSRF', [by])
}
