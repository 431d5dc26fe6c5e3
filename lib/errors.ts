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
  | 'FST_XEMS_MFA_INVALID'
  /** A user name or password outside the accepted lengths (400), refused before any store work. */
  | 'FST_XEMS_MFA_BAD_INPUT'
  | 'FST_XEMS_MFA_LOCKED'
  | 'FST_XEMS_MFA_ATTEMPTS'
  | 'FST_XEMS_MFA_REQUIRED'
  | 'FST_XEMS_MFA_NOT_ENROLLED'
  | 'FST_XEMS_MFA_NO_ENROLMENT'
  /** A passkey response that is not one: missing or undecodable fields (400). */
  | 'FST_XEMS_PASSKEY_MALFORMED'
  /** A passkey response whose signature, RP id or flags do not verify (401; counts as a failed attempt). */
  | 'FST_XEMS_PASSKEY_INVALID'
  /** A passkey response made on an origin not in `passkeys.origins` (403): a phishing page, or a misconfiguration. */
  | 'FST_XEMS_PASSKEY_ORIGIN'
  /** A registration answer to an authentication challenge or the reverse (400). */
  | 'FST_XEMS_PASSKEY_CEREMONY'
  /** No passkey ceremony of this type is waiting for this session: never started, expired, superseded, or the session changed (400). */
  | 'FST_XEMS_PASSKEY_NO_CHALLENGE'
  /** The response answers a challenge that was already consumed: a replay (409). */
  | 'FST_XEMS_PASSKEY_REPLAYED'
  /** The signature counter did not move forward: the passkey may be cloned (401, with a security event). */
  | 'FST_XEMS_PASSKEY_COUNTER'
  /** The passkey is not one this ceremony accepts: not registered, or not this user's (401). */
  | 'FST_XEMS_PASSKEY_UNKNOWN'
  /** The user already has `passkeys.maxPerUser` passkeys (409). */
  | 'FST_XEMS_PASSKEY_LIMIT'
  /** This authenticator's passkey is already registered for the user (409). */
  | 'FST_XEMS_PASSKEY_EXISTS'
  /** No passkey with this id for the user (404). */
  | 'FST_XEMS_PASSKEY_NOT_FOUND'
  /** A passkey name that is empty, over 64 characters, or has control characters (400). */
  | 'FST_XEMS_PASSKEY_BAD_NAME'

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
