/**
 * The public types of xemsMfa: the user record the application stores, the adapter it is read and
 * written through, the results of the flow, and the API the plugin decorates (`fastify.xemsMfa`).
 */
import type { FastifyReply, FastifyRequest, preHandlerAsyncHookHandler } from 'fastify'
import type { Duration } from '../../lib/duration.js'
import type { TotpAlgorithm } from '../../lib/mfa/totp.js'
import type { PasskeyCredential, PasskeyInfo } from '../../lib/mfa/passkey.js'
import type { PasskeyAuthResult, PasskeyCreationOptions, PasskeyRequestOptions } from './passkeys.js'

/** A user's second factors, as the application stores them (in its own user database). */
export interface MfaRecord {
  totp?: {
    secret: string
    algorithm?: TotpAlgorithm | undefined
    digits?: number | undefined
    period?: number | undefined
    enrolledAt: number
  } | null | undefined
  /** argon2id hashes of recovery codes; a used one is null. */
  recoveryCodes?: Array<string | null> | undefined
  /** The user's passkeys (with the `passkeys` option). */
  passkeys?: PasskeyCredential[] | undefined
  /** The random WebAuthn user handle of this user's passkeys (base64url): what passwordless sign-in finds the user by. */
  passkeyUserHandle?: string | undefined
}

/** How the plugin reads and writes a user's MFA record. `save` should replace the record atomically. */
export interface MfaUserAdapter {
  load: (userId: string) => Promise<MfaRecord | null>
  save: (userId: string, record: MfaRecord) => Promise<void>
  /**
   * The user whose MfaRecord has this `passkeyUserHandle`, or null. Needed for passwordless passkey
   * sign-in only (index the handle in your user table).
   */
  findUserByPasskey?: ((userHandle: string) => Promise<string | null>) | undefined
}
export interface BeginOptions {
  userId: string
  /** Session data to carry into the active session. */
  data?: Record<string, unknown> | undefined
}

export interface BeginResult {
  /**
   * `totp`: ask for a code (or a passkey, when the user has one too: see `methods`). `passkey`: the
   * user has passkeys only. `active`: signed in (no second factor enrolled, or a remembered device).
   */
  next: 'totp' | 'passkey' | 'active'
  /** The second factors the pending session accepts (with the `passkeys` option; absent when `next` is `active`). */
  methods?: Array<'totp' | 'passkey'> | undefined
  enrolled: boolean
  remembered: boolean
}

export interface VerifyResult {
  method: 'totp' | 'recovery'
  /** Unused recovery codes left, after a recovery-code login. */
  recoveryCodesLeft?: number | undefined
}

export interface Enrolment {
  secret: string
  uri: string
  /** The otpauth URI as a QR code, an SVG document. */
  qrSvg: string
}

export interface XemsMfa {
  /**
   * Checks a password (argon2id). Pass the login name the client tried as `userId` even when no such
   * user exists, with `hash` null: the check takes the same time and fails, and the guess is throttled
   * per name either way, so neither time nor a 429 tells which accounts exist. The guess is counted
   * before it is evaluated: past the limit it answers 429 FST_XEMS_MFA_LOCKED without evaluating.
   * A name over 256 characters, or a password that is empty or over 1024 characters, is refused with
   * 400 FST_XEMS_MFA_BAD_INPUT before any store work. Pass the request to log through its logger.
   */
  verifyPassword: (userId: string | null, password: string, hash: string | null | undefined, request?: FastifyRequest) => Promise<boolean>
  /**
   * Throws 429 FST_XEMS_MFA_LOCKED (with Retry-After) when the user is known to be throttled or locked.
   * Advisory, for answering early: the decision is made, atomically, by each guess itself.
   */
  assertNotLocked: (userId: string, reply?: FastifyReply) => Promise<void>
  /** Lifts a user's throttling and lock (e.g. after an out-of-band check such as an email link). */
  unlock: (userId: string) => Promise<void>
  /** After the password step: opens the pending session (or, without a second factor or on a remembered device, the active one). */
  begin: (request: FastifyRequest, reply: FastifyReply, options: BeginOptions) => Promise<BeginResult>
  /** Verifies a TOTP or recovery code against the request's pending session and, on success, moves it to the active sandbox. */
  verify: (
    request: FastifyRequest, reply: FastifyReply, code: unknown, options?: { remember?: boolean | undefined }
  ) => Promise<VerifyResult>
  /**
   * Starts (or restarts) TOTP enrolment for the signed-in user; nothing is stored for the user until
   * confirmEnrolment. When the user already has a factor, both steps need a second factor verified
   * within `freshFor` (401 FST_XEMS_MFA_REQUIRED otherwise).
   */
  startEnrolment: (request: FastifyRequest, options?: { label?: string | undefined }) => Promise<Enrolment>
  /**
   * Confirms enrolment with a first valid code; stores it, returns the recovery codes (show them once),
   * ends the user's other sessions. It does not make the session's second factor fresh.
   */
  confirmEnrolment: (request: FastifyRequest, code: unknown) => Promise<{ recoveryCodes: string[] }>
  /** Re-verifies a code for the signed-in user (step-up); refreshes the session's mfaVerifiedAt. */
  stepUp: (request: FastifyRequest, reply: FastifyReply, code: unknown) => Promise<VerifyResult>
  /**
   * Removes the user's second factors; ends the user's other sessions and remembered devices. Needs a
   * second factor verified within `freshFor` (401 FST_XEMS_MFA_REQUIRED otherwise); check the password in the route.
   */
  disable: (request: FastifyRequest) => Promise<void>
  /** New recovery codes (the old ones die). Needs a second factor verified within `freshFor`. */
  regenerateRecoveryCodes: (request: FastifyRequest) => Promise<string[]>
  /** A preHandler: 401 FST_XEMS_MFA_REQUIRED unless the active session verified a second factor within `maxAge`. */
  requireFreshMfa: (maxAge: Duration) => preHandlerAsyncHookHandler
  /** Ends every session and remembered device of a user. */
  revokeUser: (userId: string, options?: { except?: string | undefined }) => Promise<number>
  /**
   * Passkey registration for the signed-in user: the options for `navigator.credentials.create`
   * (@simplewebauthn/browser `startRegistration`). When the user already has a factor, both steps
   * need a second factor verified within `freshFor`, as TOTP enrolment does.
   */
  startPasskeyRegistration: (
    request: FastifyRequest, reply: FastifyReply, options?: { userName?: string | undefined }
  ) => Promise<PasskeyCreationOptions>
  /** Verifies the browser's answer and stores the passkey under `name`; ends the user's other sessions, as any change of factor. */
  finishPasskeyRegistration: (
    request: FastifyRequest, reply: FastifyReply, response: unknown, options?: { name?: string | undefined }
  ) => Promise<PasskeyInfo>
  /**
   * Options for `navigator.credentials.get`. The ceremony follows the session: a pending session (after
   * the password) gets a second factor, an active one a step-up, none a passwordless sign-in.
   */
  startPasskeyAuthentication: (request: FastifyRequest, reply: FastifyReply) => Promise<PasskeyRequestOptions>
  /** Verifies an assertion for the ceremony this session started, and signs in or refreshes mfaVerifiedAt. */
  finishPasskeyAuthentication: (
    request: FastifyRequest, reply: FastifyReply, response: unknown, options?: { remember?: boolean | undefined }
  ) => Promise<PasskeyAuthResult>
  /** The signed-in user's passkeys, without their keys. */
  listPasskeys: (request: FastifyRequest) => Promise<PasskeyInfo[]>
  /** Removes one passkey; needs a second factor verified within `freshFor`, also for the last factor. */
  removePasskey: (request: FastifyRequest, id: string) => Promise<void>
}

declare module '../session/index.js' {
  interface XemsSessionData {
    /** When this session last verified a second factor (ms since the epoch). Set by xemsMfa. */
    mfaVerifiedAt?: number | undefined
  }
}

declare module 'fastify' {
  interface FastifyInstance {
    xemsMfa: XemsMfa
  }
}
