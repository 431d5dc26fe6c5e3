/**
 * The lockout: every guess (password, code, enrolment, step-up, passkey) of a user is counted before
 * it is evaluated, with one atomic increment per counter (engine.hit), and evaluated only when the
 * count it got is within the limit: of any number of parallel guesses, on one process or many on one
 * Redis, at most maxFailures per window reach argon2 or TOTP. The counters are the lock: nothing is
 * written after the guess, so nothing can fail to be written.
 */
import { createHmac, randomBytes } from 'node:crypto'
import type { FastifyBaseLogger, FastifyReply } from 'fastify'
import { XemsError, xemsError } from '../../lib/errors.js'
import { MAX_AGE_CAP_MS } from '../../lib/session/engine.js'
import type { MfaContext } from './context.js'

/** A guess the lockout counted and let through (internal, shared with the passkey ceremonies). */
export interface Admitted { inWindow: number, consecutive: number | null, resetAt: number }

export interface Lockout {
  /**
   * Counts one guess for `userId` and answers whether it may be evaluated (429 when not). `known`:
   * the name is an account; only accounts get the 5-day consecutive counter, so a client spraying
   * names leaves nothing that outlives `lockout.window`.
   */
  admit: (userId: string, known: boolean, log: FastifyBaseLogger, reply?: FastifyReply) => Promise<Admitted>
  /** After an evaluated guess failed: the log line, and the advisory marker once the budget is spent. */
  failed: (userId: string, known: boolean, factor: string, admitted: Admitted, log: FastifyBaseLogger) => Promise<void>
  /** 429 when the advisory marker says the user is throttled or locked. */
  assertNotLocked: (userId: string, reply?: FastifyReply) => Promise<void>
  /** A successful sign-in (or unlock): both counters and the marker go. */
  recordSuccess: (userId: string) => Promise<void>
}

export function createLockout (ctx: MfaContext): Lockout {
  const { engine, mfaState } = ctx
  const { maxFailures, lockWindow, maxConsecutive } = ctx.settings
  // Names that are no account are logged as a keyed digest: a password typed into the name field
  // never reaches the logs, and the key (new for every process) keeps the digest from being reversed.
  const nameKey = randomBytes(32)

  const windowKey = (userId: string): string => `xems-mfa:window:${userId}`
  const consecutiveKey = (userId: string): string => `xems-mfa:consecutive:${userId}`
  const lockKey = (userId: string): string => `locked:${userId}`

  function lockedError (resetAt: number): XemsError {
    const retryAfter = Math.max(1, Math.ceil((resetAt - engine.now()) / 1000))
    return xemsError('FST_XEMS_MFA_LOCKED', [], { retryAfter })
  }

  async function admit (userId: string, known: boolean, log: FastifyBaseLogger, reply?: FastifyReply): Promise<Admitted> {
    const inWindow = await engine.hit(windowKey(userId), lockWindow)
    if (inWindow.count > maxFailures) {
      if (inWindow.count === maxFailures + 1) {
        log.warn({ xems: 'user-locked', ...who(userId, known), until: inWindow.resetAt, reason: 'window' }, 'xems: user throttled')
        if (known) lockoutEvent(userId, inWindow.resetAt)
        await mark(userId, known, inWindow.resetAt, log)
      }
      throw refuse(lockedError(inWindow.resetAt), reply)
    }
    if (!known) return { inWindow: inWindow.count, consecutive: null, resetAt: inWindow.resetAt }
    const consecutive = await engine.hit(consecutiveKey(userId), MAX_AGE_CAP_MS)
    if (consecutive.count > maxConsecutive) {
      if (consecutive.count === maxConsecutive + 1) {
        log.warn(
          { xems: 'user-locked', ...who(userId, known), until: consecutive.resetAt, reason: 'consecutive' },
          'xems: user locked after too many consecutive failures'
        )
        lockoutEvent(userId, consecutive.resetAt)
      }
      // Once per window at most: the marker may be shorter-lived (maxAge) than the lock itself.
      if (consecutive.count === maxConsecutive + 1 || inWindow.count === 1) await mark(userId, known, consecutive.resetAt, log)
      throw refuse(lockedError(consecutive.resetAt), reply)
    }
    return { inWindow: inWindow.count, consecutive: consecutive.count, resetAt: inWindow.resetAt }
  }

  /** The lockout security event, once per lock (the guess that crossed the limit), for accounts only. */
  function lockoutEvent (userId: string, until: number): void {
    engine.security({ type: 'lockout', at: engine.now(), userId, retryAfter: Math.max(1, Math.ceil((until - engine.now()) / 1000)) })
  }

  function refuse (err: XemsError, reply?: FastifyReply): XemsError {
    reply?.header('retry-after', String(err.retryAfter))
    return err
  }

  async function failed (userId: string, known: boolean, factor: string, admitted: Admitted, log: FastifyBaseLogger): Promise<void> {
    log.warn({ xems: 'auth-failure', factor, ...who(userId, known), failures: admitted.inWindow }, 'xems: authentication failure')
    if (admitted.consecutive !== null && admitted.consecutive >= maxConsecutive) {
      await mark(userId, known, engine.now() + MAX_AGE_CAP_MS, log)
    } else if (admitted.inWindow >= maxFailures) {
      await mark(userId, known, admitted.resetAt, log)
    }
  }

  /** The advisory marker that assertNotLocked reads; written only when a budget runs out, never fails the request. */
  async function mark (userId: string, known: boolean, until: number, log: FastifyBaseLogger): Promise<void> {
    try {
      // The lifetime is computed now, after the store calls, and capped: it can never exceed maxAge.
      const ttl = Math.min(engine.maxAge, Math.max(1, until - engine.now()))
      await mfaState.set(lockKey(userId), engine.now() + ttl, ttl)
    } catch (err) {
      // Only the early answer of assertNotLocked depends on it; the counters already hold the lock.
      log.warn(
        { xems: 'lock-marker-failed', ...who(userId, known), err: { code: (err as { code?: unknown }).code } },
        'xems: the lock marker could not be written'
      )
    }
  }

  function who (userId: string, known: boolean): { userId: string } | { userHash: string } {
    return known ? { userId } : { userHash: createHmac('sha256', nameKey).update(userId).digest('base64url').slice(0, 16) }
  }

  async function assertNotLocked (userId: string, reply?: FastifyReply): Promise<void> {
    const until = await mfaState.get<number>(lockKey(userId))
    if (until === null || until <= engine.now()) return
    throw refuse(lockedError(until), reply)
  }

  async function recordSuccess (userId: string): Promise<void> {
    await engine.resetCounter(windowKey(userId))
    await engine.resetCounter(consecutiveKey(userId))
    await mfaState.del(lockKey(userId))
  }

  return { admit, failed, assertNotLocked, recordSuccess }
}
