/**
 * Opt-in "remember this device": an HttpOnly device cookie whose random token names a record in the
 * devices sandbox; it skips the TOTP step for its user until it expires or the user is revoked.
 */
import type { FastifyReply, FastifyRequest } from 'fastify'
import { generateToken, isWellFormedToken, tokenKey } from '../../lib/crypto/random-token.js'
import { MAX_AGE_CAP_MS } from '../../lib/session/engine.js'
import { readRawCookie } from '../session/raw-cookie.js'
import type { MfaContext } from './context.js'

export interface RememberedDevices {
  /** Whether the request brings a device cookie remembered for this user and not revoked since. */
  rememberedFor: (request: FastifyRequest, userId: string) => Promise<boolean>
  /** Remembers the client's device for the user (sets the device cookie); nothing without the option. */
  rememberDevice: (reply: FastifyReply, userId: string) => Promise<void>
  /** Every device of the user remembered before now stops counting. */
  forgetDevices: (userId: string) => Promise<void>
}

export function createRememberedDevices (ctx: MfaContext): RememberedDevices {
  const { engine, devices } = ctx
  const remember = ctx.settings.remember

  async function rememberedFor (request: FastifyRequest, userId: string): Promise<boolean> {
    if (remember === null) return false
    // Raw, as for the session cookie: no percent-decoding, and two different values count as none.
    const raw = readRawCookie(request.headers.cookie, remember.cookieName)
    const token = raw.status === 'one' ? raw.value : undefined
    if (!isWellFormedToken(token)) return false
    const device = await devices.get<{ userId: string, createdAt: number }>(tokenKey(token))
    if (device === null || device.userId !== userId) return false
    const revokedAt = await devices.get<number>(`revoked:${userId}`)
    return revokedAt === null || device.createdAt > revokedAt
  }

  async function rememberDevice (reply: FastifyReply, userId: string): Promise<void> {
    if (remember === null) return
    const token = generateToken()
    await devices.set(tokenKey(token), { userId, createdAt: engine.now() }, remember.ttl)
    reply.setCookie(
      remember.cookieName, token,
      { httpOnly: true, secure: remember.secure, sameSite: 'strict', path: '/', maxAge: Math.floor(remember.ttl / 1000) }
    )
  }

  async function forgetDevices (userId: string): Promise<void> {
    // Every device remembered before now stops counting: no list to keep, nothing to race with.
    await devices.set(`revoked:${userId}`, engine.now(), MAX_AGE_CAP_MS)
  }

  return { rememberedFor, rememberDevice, forgetDevices }
}
