/**
 * A protocol-level DBSC browser for tests, following the W3C draft (w3c/webappsec-dbsc spec.bs at d346811)
 * step by step, against `app.inject()`: a cookie jar that honours Max-Age on a test clock; on a response
 * with `Secure-Session-Registration` it makes an ES256 key pair and POSTs a `dbsc+jwt` proof of the
 * challenge (its public key in the `jwk` header) to the given path; it keeps the session instructions and
 * caches `Secure-Session-Challenge`; before a request whose bound cookie is missing it refreshes ("send a
 * request" algorithm): POST refresh_url with `Sec-Secure-Session-Id` and a proof of the cached challenge,
 * a 403 restarts once with the challenge it carried, `{"continue": false}` or another 4xx ends the session.
 */
import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK } from 'jose'
import type { Clock } from '../helpers.js'

interface Instructions {
  session_identifier: string
  refresh_url: string
  credentials: Array<{ type: string, name: string, attributes: string }>
  continue?: boolean
}

export interface DbscSession {
  id: string
  refreshUrl: string
  cookieName: string
  privateKey: CryptoKey
  publicJwk: JWK
  challenge: string | null
}

export class DbscBrowser {
  readonly jar = new Map<string, { value: string, expiresAt: number | null }>()
  session: DbscSession | null = null
  /** Every request this browser sent, in order (method, url, status), refreshes included. */
  readonly log: Array<{ method: string, url: string, status: number }> = []
  /** False: a browser without DBSC (it ignores the headers). */
  readonly supportsDbsc: boolean

  constructor (readonly app: FastifyInstance, readonly clock: Clock, options: { dbsc?: boolean } = {}) {
    this.supportsDbsc = options.dbsc ?? true
  }

  cookies (): Record<string, string> {
    const out: Record<string, string> = {}
    for (const [name, cookie] of this.jar) {
      if (cookie.expiresAt !== null && cookie.expiresAt <= this.clock.now) this.jar.delete(name)
      else out[name] = cookie.value
    }
    return out
  }

  /** A request as a page makes it: a missing bound cookie is refreshed first (the request waits). */
  async fetch (method: 'GET' | 'POST', url: string, payload?: Record<string, unknown>, headers: Record<string, string> = {}): Promise<LightMyRequestResponse> {
    if (this.session !== null && this.cookies()[this.session.cookieName] === undefined) await this.refresh()
    return await this.send(method, url, payload, headers)
  }

  async send (method: 'GET' | 'POST', url: string, payload?: Record<string, unknown>, headers: Record<string, string> = {}): Promise<LightMyRequestResponse> {
    const response = await this.app.inject({
      method, url, cookies: this.cookies(), headers: { 'sec-fetch-site': 'same-origin', ...headers }, ...(payload === undefined ? {} : { payload })
    })
    this.log.push({ method, url, status: response.statusCode })
    this.store(response)
    if (this.supportsDbsc) {
      this.cacheChallenge(response)
      const registration = response.headers['secure-session-registration']
      if (typeof registration === 'string') await this.register(registration)
    }
    return response
  }

  store (response: LightMyRequestResponse): void {
    for (const cookie of response.cookies) {
      const maxAge = (cookie as { maxAge?: number }).maxAge
      const expires = (cookie as { expires?: Date }).expires
      if (maxAge !== undefined && maxAge <= 0) this.jar.delete(cookie.name)
      else if (expires !== undefined && expires.getTime() <= Date.now()) this.jar.delete(cookie.name)
      else this.jar.set(cookie.name, { value: cookie.value, expiresAt: maxAge === undefined ? null : this.clock.now + maxAge * 1000 })
    }
  }

  cacheChallenge (response: LightMyRequestResponse): void {
    const header = response.headers['secure-session-challenge']
    if (typeof header !== 'string' || this.session === null) return
    const match = /^"([^"]+)";id="([^"]+)"$/.exec(header)
    if (match !== null && match[2] === this.session.id) this.session.challenge = match[1]!
  }

  /** Process session registration + create session key pair + send request (registration). */
  async register (header: string): Promise<LightMyRequestResponse | null> {
    const match = /^\(([A-Z0-9 ]+)\);path="([^"]+)";challenge="([^"]+)"$/.exec(header)
    if (match === null || !match[1]!.split(' ').includes('ES256')) return null
    const { privateKey, publicKey } = await generateKeyPair('ES256')
    const publicJwk = await exportJWK(publicKey)
    const proof = await this.sign(privateKey, match[3]!, publicJwk)
    const response = await this.app.inject({
      method: 'POST', url: match[2]!, cookies: this.cookies(), headers: { 'sec-fetch-site': 'same-origin', 'secure-session-response': `"${proof}"` }
    })
    this.log.push({ method: 'POST', url: match[2]!, status: response.statusCode })
    this.store(response)
    if (response.statusCode !== 200) return response
    const instructions = response.json() as Instructions
    if (instructions.continue === false) return response
    this.session = {
      id: instructions.session_identifier,
      refreshUrl: instructions.refresh_url,
      cookieName: instructions.credentials[0]!.name,
      privateKey,
      publicJwk,
      challenge: null
    }
    this.cacheChallenge(response)
    return response
  }

  /** Send request (refresh), with the 403 restart. */
  async refresh (): Promise<LightMyRequestResponse | null> {
    const session = this.session
    if (session === null) return null
    let response: LightMyRequestResponse | null = null
    for (let attempt = 0; attempt < 2; attempt++) {
      const headers: Record<string, string> = { 'sec-fetch-site': 'same-origin', 'sec-secure-session-id': `"${session.id}"` }
      if (session.challenge !== null) headers['secure-session-response'] = `"${await this.sign(session.privateKey, session.challenge)}"`
      response = await this.app.inject({ method: 'POST', url: session.refreshUrl, cookies: this.cookies(), headers })
      this.log.push({ method: 'POST', url: session.refreshUrl, status: response.statusCode })
      this.store(response)
      this.cacheChallenge(response)
      if (response.statusCode !== 403) break
    }
    if (response === null) return null
    if (response.statusCode >= 400 && response.statusCode < 500 && response.statusCode !== 403) this.session = null
    else if (response.statusCode === 200 && response.body !== '' && (response.json() as Instructions).continue === false) this.session = null
    return response
  }

  async sign (key: CryptoKey, challenge: string, jwk?: JWK): Promise<string> {
    return await new SignJWT({ jti: challenge })
      .setProtectedHeader({ alg: 'ES256', typ: 'dbsc+jwt', ...(jwk === undefined ? {} : { jwk }) })
      .sign(key)
  }
}
