import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import type { DbscBinding } from '../../lib/binding/binding.js'
import {
  boundCookieValid, boundCookieValue, challengeHeader, DBSC_ALGORITHMS, dbscError, newBinding, parseSfString, randomId,
  registrationHeader, sessionInstructions, skippedReasons, TERMINATE, verifyRefreshProof, verifyRegistrationProof, type DbscAlgorithm
} from '../../lib/binding/dbsc.js'
import { parsePositiveDuration, type Duration } from '../../lib/duration.js'
import { badOption, xemsError } from '../../lib/errors.js'
import type { BindingContext } from './binding-hooks.js'
import { readRawCookie } from './raw-cookie.js'

/** The `deviceBound` option of xemsSession: Device Bound Session Credentials for browsers (W3C draft). */
export interface DeviceBoundOptions {
  /** The registration route the sign-in response points the browser to (default `/xems/dbsc/register`). */
  registrationPath?: string | undefined
  /** The refresh route (default `/xems/dbsc/refresh`). */
  refreshPath?: string | undefined
  /** Lifetime of the short-lived bound cookie (default `10m`; 30 seconds to 1 hour). */
  cookieLifetime?: Duration | undefined
  /** Name of the bound cookie (default the session cookie's name + `-bound`, e.g. `__Host-xems-bound`). */
  cookieName?: string | undefined
  /** Key algorithms offered to the browser, in order of preference (default `['ES256', 'RS256']`). */
  algorithms?: DbscAlgorithm[] | undefined
  /** How long a challenge stays usable, once (default `5m`, at most 1 hour). */
  challengeTtl?: Duration | undefined
}

const CHALLENGE_SANDBOX = 'xems:dbsc'
const PATH = /^\/[A-Za-z0-9\-._~!$&'()*+,=:@/%]{0,200}$/
const COOKIE_NAME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,128}$/

interface Challenge { sid: string, purpose: 'register' | 'refresh' }

interface DbscPluginOptions {
  deviceBound: DeviceBoundOptions | true
  context: BindingContext
}

const kStart = Symbol('xems.dbsc.start')
type StartedRequest = FastifyRequest & { [kStart]?: string | null }

interface DeviceBoundSettings {
  registrationPath: string
  refreshPath: string
  cookieLifetimeMs: number
  cookieName: string
  algorithms: DbscAlgorithm[]
  challengeTtlMs: number
}

export function checkDeviceBoundOptions (options: DeviceBoundOptions | true, sessionCookieName: string): DeviceBoundSettings {
  const o: DeviceBoundOptions = options === true ? {} : options
  if (o === null || typeof o !== 'object') {
    throw badOption(
      'deviceBound', 'must be true or { registrationPath?, refreshPath?, cookieLifetime?, cookieName?, algorithms?, challengeTtl? }'
    )
  }
  const registrationPath = o.registrationPath ?? '/xems/dbsc/register'
  const refreshPath = o.refreshPath ?? '/xems/dbsc/refresh'
  if (typeof registrationPath !== 'string' || !PATH.test(registrationPath)) {
    throw badOption('deviceBound.registrationPath', 'must be a path starting with "/" (no quotes, no query)')
  }
  if (typeof refreshPath !== 'string' || !PATH.test(refreshPath)) {
    throw badOption('deviceBound.refreshPath', 'must be a path starting with "/" (no quotes, no query)')
  }
  if (registrationPath === refreshPath) throw badOption('deviceBound.refreshPath', 'must differ from deviceBound.registrationPath')
  const cookieLifetimeMs = parsePositiveDuration(o.cookieLifetime ?? '10m', 'deviceBound.cookieLifetime')
  if (cookieLifetimeMs < 30_000 || cookieLifetimeMs > 3_600_000) {
    throw badOption('deviceBound.cookieLifetime', 'must be between 30 seconds and 1 hour: a copied bound cookie works that long')
  }
  const challengeTtlMs = parsePositiveDuration(o.challengeTtl ?? '5m', 'deviceBound.challengeTtl')
  if (challengeTtlMs > 3_600_000) throw badOption('deviceBound.challengeTtl', 'must be at most 1 hour')
  const cookieName = o.cookieName ?? `${sessionCookieName}-bound`
  if (typeof cookieName !== 'string' || !COOKIE_NAME.test(cookieName) || cookieName === sessionCookieName) {
    throw badOption('deviceBound.cookieName', 'must be a cookie name other than the session cookie\'s')
  }
  const algorithms = o.algorithms ?? [...DBSC_ALGORITHMS]
  if (!Array.isArray(algorithms) || algorithms.length === 0 ||
    !algorithms.every((alg) => (DBSC_ALGORITHMS as readonly string[]).includes(alg))) {
    throw badOption('deviceBound.algorithms', "must be a non-empty list of 'ES256', 'RS256'")
  }
  return { registrationPath, refreshPath, cookieLifetimeMs, cookieName, algorithms: [...new Set(algorithms)], challengeTtlMs }
}

async function xemsDbscPlugin (fastify: FastifyInstance, { deviceBound, context }: DbscPluginOptions): Promise<void> {
  const { engine, hooks, header, cookie } = context
  if (cookie === null) throw badOption('deviceBound', 'needs the cookie transport (option "cookie"): DBSC binds browser sessions')
  const settings = checkDeviceBoundOptions(deviceBound, cookie.name)
  const challenges = engine.from(CHALLENGE_SANDBOX)
  const attributes = [
    `Path=${cookie.path}`, ...(cookie.domain === undefined ? [] : [`Domain=${cookie.domain}`]), ...(cookie.secure ? ['Secure'] : []),
    'HttpOnly', `SameSite=${cookie.sameSite[0]!.toUpperCase()}${cookie.sameSite.slice(1)}`
  ].join('; ')
  const cookieOptions = {
    path: cookie.path,
    secure: cookie.secure,
    sameSite: cookie.sameSite,
    httpOnly: true as const,
    ...(cookie.domain === undefined ? {} : { domain: cookie.domain })
  }
  const instructions = (binding: DbscBinding): Record<string, unknown> =>
    sessionInstructions({
      sessionId: binding.id, refreshUrl: settings.refreshPath, cookieName: settings.cookieName, cookieAttributes: attributes
    })

  const isRefresh = (request: FastifyRequest): boolean => request.method === 'POST' && request.routeOptions.url === settings.refreshPath

  // After xemsSession's onRequest: a DBSC-bound session is served only with its valid bound cookie. The
  // long-lived session token alone (copied from the cookie jar, replayed in the header) is not enough.
  fastify.addHook('onRequest', async (request: StartedRequest) => {
    const session = request.session
    request[kStart] = session === null ? null : `${session.sandbox}/${session.id}`
    if (session === null) return
    const binding = session.binding
    if (binding?.type !== 'dbsc' || isRefresh(request)) return
    const bound = readRawCookie(request.headers.cookie, settings.cookieName)
    if (boundCookieValid(binding, bound.status === 'one' ? bound.value : undefined, engine.now())) return
    const skipped = skippedReasons(request.headers['secure-session-skipped'])
    request.log.info(
      { xems: 'dbsc-unbound-request', id: session.id, bound: bound.status, ...(skipped.length === 0 ? {} : { skipped }) },
      'xems: a device-bound session without its valid bound cookie: not served as that session'
    )
    request.session = null
  })

  // A sign-in (a session that reached the default sandbox during this request) in a browser: offer DBSC.
  fastify.addHook('onSend', async (request: StartedRequest, reply, payload) => {
    const session = request.session
    if (session === null || session.destroyed || session.sandbox !== engine.defaultSandbox || session.binding !== null) return payload
    if (header !== null && request.headers[header] !== undefined) return payload
    if (request[kStart] === `${session.sandbox}/${session.id}` || reply.statusCode >= 400) return payload
    const challenge = randomId()
    await challenges.set(challenge, { sid: session.id, purpose: 'register' } satisfies Challenge, settings.challengeTtlMs)
    reply.header('secure-session-registration', registrationHeader(settings.algorithms, settings.registrationPath, challenge))
    return payload
  })

  async function freshChallenge (reply: FastifyReply, binding: DbscBinding): Promise<void> {
    const challenge = randomId()
    await challenges.set(challenge, { sid: binding.id, purpose: 'refresh' } satisfies Challenge, settings.challengeTtlMs)
    reply.header('secure-session-challenge', challengeHeader(challenge, binding.id))
  }

  function setBoundCookie (reply: FastifyReply, binding: DbscBinding): void {
    const maxAge = Math.floor(settings.cookieLifetimeMs / 1000)
    reply.setCookie(settings.cookieName, boundCookieValue(binding, engine.now() + settings.cookieLifetimeMs), { ...cookieOptions, maxAge })
  }

  fastify.post(settings.registrationPath, async (request, reply) => {
    reply.header('cache-control', 'no-store')
    const session = request.session
    if (session === null || session.sandbox !== engine.defaultSandbox) throw xemsError('FST_XEMS_NO_SESSION')
    if (session.binding !== null) throw dbscError('FST_XEMS_DBSC_BOUND')
    const proof = await verifyRegistrationProof(request.headers['secure-session-response'], settings.algorithms)
    // One atomic step: of parallel registrations with one challenge, exactly one takes it.
    const challenge = await challenges.take<Challenge>(proof.jti)
    if (challenge === null || challenge.purpose !== 'register' || challenge.sid !== session.id) throw dbscError('FST_XEMS_DBSC_CHALLENGE')
    const binding = newBinding(proof, engine.now())
    session.bind(binding)
    request.log.info({ xems: 'dbsc-registered', id: session.id, alg: binding.alg }, 'xems: session bound to a device key (DBSC)')
    setBoundCookie(reply, binding)
    await freshChallenge(reply, binding)
    return instructions(binding)
  })

  fastify.post(settings.refreshPath, async (request, reply) => {
    reply.header('cache-control', 'no-store')
    const session = request.session
    const binding = session?.binding
    const sid = parseSfString(request.headers['sec-secure-session-id'], 64)
    // The session ended (signed out, revoked, expired) or was replaced: the browser drops its DBSC session.
    if (session == null || binding?.type !== 'dbsc' || sid !== binding.id) {
      reply.clearCookie(settings.cookieName, cookieOptions)
      return TERMINATE
    }
    const jti = await verifyRefreshProof(request.headers['secure-session-response'], binding)
    const challenge = jti === null ? null : await challenges.take<Challenge>(jti)
    if (challenge === null || challenge.purpose !== 'refresh' || challenge.sid !== binding.id) {
      await freshChallenge(reply, binding)
      throw dbscError('FST_XEMS_DBSC_CHALLENGE')
    }
    setBoundCookie(reply, binding)
    await freshChallenge(reply, binding)
    return instructions(binding)
  })

  hooks.unlink.push((reply) => { reply.clearCookie(settings.cookieName, cookieOptions) })
}

/** DBSC for browsers; registered by xemsSession when its `deviceBound` option is set. */
export const xemsDbsc = fp(xemsDbscPlugin, { name: 'xems-dbsc', fastify: '5.x' })
