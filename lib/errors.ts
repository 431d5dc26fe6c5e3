import createError from '@fastify/error'

/**
 * Every error fastify-xems throws, as one @fastify/error table: a code fixes its HTTP status and its
 * message. A message is one sentence whose `%s` slots only name things (an option, a file, a schema)
 * and say what to change; the same code never means two things. Messages never contain a token, a
 * secret, a code, a password or session data. docs/errors.md lists this table (a test keeps them equal).
 */
export const XEMS_ERRORS = {
  // Configuration: thrown at construction or `register`, before any request.
  FST_XEMS_BAD_OPTION: [500, 'fastify-xems: option "%s" %s'],
  FST_XEMS_BAD_DURATION: [500, 'fastify-xems: option "%s" must be a duration longer than zero: a whole number of milliseconds or a string like \'500ms\', \'30s\', \'15m\', \'1h\' or \'5d\' (at most 10 years); got %s'],
  FST_XEMS_BAD_SANDBOX: [500, 'fastify-xems: option "%s" must be a sandbox name of 1 to 64 characters from [A-Za-z0-9_:-]'],
  FST_XEMS_BAD_SECRET: [500, 'fastify-xems: option "%s" is not a usable secret: %s'],
  FST_XEMS_WRONG_SECRET: [500, 'fastify-xems: %s does not open with option "%s": %s'],
  FST_XEMS_MISSING_SESSION_PLUGIN: [500,
    'fastify-xems: register xemsSession on this instance (or a parent) before calling xems.forApp(app)'],
  // Stores and vault files, at start-up (nothing is read or changed) or when a store stops.
  FST_XEMS_STORE_FORMAT: [500, 'fastify-xems: %s are in layout format %s; this version reads format %s only and will not read them. %s'],
  FST_XEMS_STORE_UNAVAILABLE: [503, 'fastify-xems: the session store is unavailable'],
  FST_XEMS_STORE_CLOSED: [503, 'fastify-xems: the store has been closed'],
  FST_XEMS_VAULT_CORRUPT: [500, 'fastify-xems: the vault file %s cannot be read: %s. The store did not start and left the files untouched; restore them from a backup, or move the directory away to start empty.'],
  FST_XEMS_VAULT_FORMAT: [500, 'fastify-xems: the vault file %s is in format version %s; this version of fastify-xems reads format %s. Sessions cannot be carried over from another format: the store did not start and left the files untouched; move the vault directory away to start with an empty store.'],
  FST_XEMS_VAULT_OTHER_HOST: [500, 'fastify-xems: the vault file %s is bound to another host (bindToHost) and cannot be opened here; it was left untouched. Run on the host that wrote it, or give that host\'s id as option "hostId".'],
  FST_XEMS_VAULT_LOCKED: [500, 'fastify-xems: the vault directory %s is locked: %s'],
  FST_XEMS_VAULT_LOCK_LOST: [503,
    'fastify-xems: this store lost the lock on the vault directory %s (%s); it stopped writing and must be restarted'],
  FST_XEMS_VAULT_IO: [500, 'fastify-xems: the vault in %s could not be opened (%s)'],
  // The application's own calls with values a store cannot hold (a bug in the app, hence 500).
  FST_XEMS_BAD_VALUE: [500, 'fastify-xems: %s cannot be stored: %s'],
  FST_XEMS_BAD_TOTP_SECRET: [500, 'fastify-xems: a stored TOTP secret is not base32 (RFC 4648, upper case, no padding) of %s to %s bytes, as generateTotpSecret returns'],
  // Client answers.
  FST_XEMS_NO_SESSION: [401, 'A session is required: sign in first'],
  FST_XEMS_TOKEN_REUSED: [401, 'This session token was already replaced: sign in again'],
  FST_XEMS_CSRF: [403, 'Cross-site request refused (%s): this action must come from the site itself'],
  FST_XEMS_SESSION_LIMIT: [409, 'This account already has the most sessions allowed: sign out of one first'],
  FST_XEMS_RATE_LIMITED: [429, 'Too many sessions opened from this client: try again later'],
  // Device-bound sessions: DPoP (401 with WWW-Authenticate: DPoP) and DBSC.
  FST_XEMS_DPOP_MISSING: [401, 'This session is bound to a key: send a DPoP proof with every request'],
  FST_XEMS_DPOP_INVALID: [401, 'The DPoP proof is not valid'],
  FST_XEMS_DPOP_WRONG_KEY: [401, 'The DPoP proof is signed by another key than the one this session is bound to'],
  FST_XEMS_DPOP_REPLAYED: [401, 'The DPoP proof was already used: sign a new one for each request'],
  FST_XEMS_DPOP_WRONG_TARGET: [401, 'The DPoP proof was made for another method or URL'],
  FST_XEMS_DPOP_STALE: [401, 'The DPoP proof was made too long ago (or in the future): check the clock'],
  FST_XEMS_DPOP_ATH: [401, 'The DPoP proof was made for another token (ath)'],
  FST_XEMS_DPOP_NONCE: [401, 'Resource server requires nonce in DPoP proof'],
  FST_XEMS_DBSC_INVALID: [400, 'The device-bound session proof is not valid'],
  FST_XEMS_DBSC_CHALLENGE: [403, 'The device-bound session proof must sign the current challenge'],
  FST_XEMS_DBSC_BOUND: [409, 'This session is already bound to a device key'],
  FST_XEMS_BAD_PASSWORD: [400, 'A password must be a non-empty string of at most %s characters'],
  FST_XEMS_MFA_BAD_INPUT: [400, 'A user name must be 1 to %s characters and a password 1 to %s characters'],
  FST_XEMS_MFA_INVALID: [401, 'Wrong or used code: %s more attempts for this sign-in, then sign in again'],
  FST_XEMS_MFA_WRONG: [401, 'Wrong or used code: check the time on your device and try again'],
  FST_XEMS_MFA_ATTEMPTS: [401, 'Too many wrong codes: sign in again'],
  FST_XEMS_MFA_NOT_PENDING: [401, 'No sign-in is waiting for a code: sign in with your password first'],
  FST_XEMS_MFA_REQUIRED: [401, 'Confirm with your second factor (an authenticator code or a passkey) to continue'],
  FST_XEMS_MFA_LOCKED: [429, 'Too many failed attempts: this account is locked for a while'],
  FST_XEMS_MFA_NOT_ENROLLED: [409, 'Enrol an authenticator first'],
  FST_XEMS_MFA_NO_ENROLMENT: [400, 'No enrolment is waiting: start it again'],
  FST_XEMS_MFA_ENROLMENT_CONFIRMED: [409, 'This enrolment was already confirmed'],
  // Passkeys (WebAuthn) in xemsMfa.
  FST_XEMS_PASSKEY_MALFORMED: [400, 'This is not a passkey response'],
  FST_XEMS_PASSKEY_NO_CHALLENGE: [400, 'No passkey request is waiting (it expired or was replaced): start again'],
  FST_XEMS_PASSKEY_CEREMONY: [400, 'This passkey answer is for another kind of request'],
  FST_XEMS_PASSKEY_ORIGIN: [403, 'This passkey answer was made for another site'],
  FST_XEMS_PASSKEY_REPLAYED: [409, 'This passkey answer was already used: start again'],
  FST_XEMS_PASSKEY_UNKNOWN: [401, 'This passkey is not registered for this account'],
  FST_XEMS_PASSKEY_INVALID: [401, 'The passkey could not be verified'],
  FST_XEMS_PASSKEY_COUNTER: [401, 'This passkey was refused: it may have been copied'],
  FST_XEMS_PASSKEY_LIMIT: [409, 'At most %s passkeys per account: remove one first'],
  FST_XEMS_PASSKEY_EXISTS: [409, 'This passkey is already registered'],
  FST_XEMS_PASSKEY_NOT_FOUND: [404, 'No such passkey'],
  FST_XEMS_PASSKEY_BAD_NAME: [400, 'A passkey name must be 1 to 64 characters, without control characters']
} as const satisfies Record<string, readonly [number, string]>

export type XemsErrorCode = keyof typeof XEMS_ERRORS

/** Extra fields an error may carry beside its message. */
export interface XemsErrorExtras {
  cause?: unknown
  /** Seconds a client should wait (429 answers); the session plugin sends it as Retry-After. */
  retryAfter?: number | undefined
}

/**
 * The base of every fastify-xems error (`err instanceof XemsError`). Errors are built by `xemsError`
 * from the table; this class is never constructed directly.
 */
export class XemsError extends Error {
  declare readonly code: XemsErrorCode
  declare readonly statusCode: number
  /** Seconds a client should wait, for 429 answers. */
  declare readonly retryAfter?: number | undefined
}

type Constructor = new (...args: unknown[]) => XemsError
const constructors = new Map<XemsErrorCode, Constructor>()
for (const [code, [status, message]] of Object.entries(XEMS_ERRORS) as Array<[XemsErrorCode, readonly [number, string]]>) {
  constructors.set(code, createError(code, message, status, XemsError as unknown as ErrorConstructor) as unknown as Constructor)
}

/** The `%s` slots of a message, as a tuple type: every call passes exactly one value per slot. */
type Slots<Message extends string, Found extends unknown[] = []> =
  Message extends `${string}%s${infer Rest}` ? Slots<Rest, [...Found, string | number]> : Found

/** What `xemsError(code, …)` takes after the code: the slot values (omitted when there are none), then extras. */
export type XemsErrorArgs<Code extends XemsErrorCode> = Slots<(typeof XEMS_ERRORS)[Code][1]> extends []
  ? [args?: [], extras?: XemsErrorExtras]
  : [args: Slots<(typeof XEMS_ERRORS)[Code][1]>, extras?: XemsErrorExtras]

/** The error of `code`, its message's `%s` slots filled with `args` in order. */
export function xemsError<Code extends XemsErrorCode> (code: Code, ...[args, extras]: XemsErrorArgs<Code>): XemsError {
  const Ctor = constructors.get(code)!
  const values: ReadonlyArray<string | number> = args ?? []
  const error = extras?.cause === undefined ? new Ctor(...values) : new Ctor(...values, { cause: extras.cause })
  Object.defineProperty(error, 'name', { value: 'XemsError', enumerable: false, writable: true, configurable: true })
  if (extras?.retryAfter !== undefined) Object.defineProperty(error, 'retryAfter', { value: extras.retryAfter, enumerable: true })
  return error
}

/** A configuration mistake: thrown at construction or `register`, naming the option to change. */
export function badOption (option: string, problem: string): XemsError {
  return xemsError('FST_XEMS_BAD_OPTION', [option, problem])
}

export function isXemsError (err: unknown): err is XemsError {
  return err instanceof XemsError
}
