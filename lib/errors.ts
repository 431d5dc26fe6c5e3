/**
 * Typed errors with stable codes, in the style of @fastify/error: every error carries a `code` that
 * never changes between releases and a `statusCode` that Fastify's error handler turns into the HTTP
 * status. Messages never contain a token, a secret or session data.
 */
export type XemsErrorCode =
  | 'FST_XEMS_BAD_OPTION'
  | 'FST_XEMS_BAD_DURATION'
  | 'FST_XEMS_BAD_SANDBOX'
  | 'FST_XEMS_BAD_SECRET'
  | 'FST_XEMS_BAD_VALUE'
  | 'FST_XEMS_NO_SESSION'
  | 'FST_XEMS_TOKEN_REUSED'
  | 'FST_XEMS_RATE_LIMITED'
  | 'FST_XEMS_STORE_UNAVAILABLE'
  | 'FST_XEMS_STORE_CLOSED'
  /** A store holds data in a layout format this version does not read (start-up stops, nothing is read or changed). */
  | 'FST_XEMS_STORE_FORMAT'
  | 'FST_XEMS_MISSING_SESSION_PLUGIN'
  /** A cross-site state-changing request carrying the session cookie (403; see plugins/csrf.ts). */
  | 'FST_XEMS_CSRF'
  /** A vault file of a persistent MemoryStore is damaged or tampered with (start-up stops, files untouched). */
  | 'FST_XEMS_VAULT_CORRUPT'
  /** A vault file is in another format version (written by another version of fastify-xems). */
  | 'FST_XEMS_VAULT_FORMAT'
  /** A vault file is bound to another host (bindToHost) and does not open on this one. */
  | 'FST_XEMS_VAULT_OTHER_HOST'
  /** The vault directory is in use by another store or process. */
  | 'FST_XEMS_VAULT_LOCKED'
  /** The vault directory could not be read or written at start-up. */
  | 'FST_XEMS_VAULT_IO'
  /** DPoP (401, `WWW-Authenticate: DPoP`): a request presents the token of a DPoP-bound session without a `DPoP` proof. */
  | 'FST_XEMS_DPOP_MISSING'
  /** DPoP (401): the proof is malformed, not `dpop+jwt`, of a refused algorithm, or its signature does not verify. */
  | 'FST_XEMS_DPOP_INVALID'
  /** DPoP (401): the proof is signed by another key than the one the session is bound to. */
  | 'FST_XEMS_DPOP_WRONG_KEY'
  /** DPoP (401): the proof's `jti` was already used (a replayed proof). */
  | 'FST_XEMS_DPOP_REPLAYED'
  /** DPoP (401): the proof's `htm` or `htu` is not this request's method or URL. */
  | 'FST_XEMS_DPOP_WRONG_TARGET'
  /** DPoP (401): the proof's `iat` is outside the accepted window. */
  | 'FST_XEMS_DPOP_STALE'
  /** DPoP (401): the proof's `ath` is not the hash of the token the request presents. */
  | 'FST_XEMS_DPOP_ATH'
  /** DPoP (401, `error="use_dpop_nonce"` with a `DPoP-Nonce` header): the proof lacks the server's current nonce. */
  | 'FST_XEMS_DPOP_NONCE'
  /** DBSC (400): the registration or refresh proof is malformed or its signature does not verify with the session's key. */
  | 'FST_XEMS_DBSC_INVALID'
  /** DBSC (403, with a fresh `Secure-Session-Challenge`): the proof's challenge is missing, unknown, expired or already used. */
  | 'FST_XEMS_DBSC_CHALLENGE'
  /** DBSC (409): a registration for a session that is already bound to a key. */
  | 'FST_XEMS_DBSC_BOUND'
  | 'FST_XEMS_MFA_INVALID'
  /** A user name or password outside the accepted lengths (400), refused before any store work. */
  | 'FST_XEMS_MFA_BAD_INPUT'
  | 'FST_XEMS_MFA_LOCKED'
  | 'FST_XEMS_MFA_ATTEMPTS'
  | 'FST_XEMS_MFA_REQUIRED'
  | 'FST_XEMS_MFA_NOT_ENROLLED'
  | 'FST_XEMS_MFA_NO_ENROLMENT'

export class XemsError extends Error {
  readonly code: XemsErrorCode
  readonly statusCode: number
  /** Seconds a client should wait, for 429 answers. */
  readonly retryAfter?: number | undefined

  constructor (code: XemsErrorCode, message: string, statusCode = 500, options: { retryAfter?: number, cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause })
    this.name = 'XemsError'
    this.code = code
    this.statusCode = statusCode
    if (options.retryAfter !== undefined) this.retryAfter = options.retryAfter
  }
}

/** A configuration mistake: thrown at construction or `register`, naming the option to change. */
export function badOption (option: string, problem: string): XemsError {
  return new XemsError('FST_XEMS_BAD_OPTION', `fastify-xems: option "${option}" ${problem}`)
}

export function isXemsError (err: unknown): err is XemsError {
  return err instanceof XemsError
}
