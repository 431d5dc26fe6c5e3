/**
 * The state the parts of xemsMfa share, built once per registration and handed to each part
 * (lockout, factors, remembered devices, the flow): no module holds state of its own.
 */
import type { FastifyInstance } from 'fastify'
import type { SandboxValues } from '../../lib/session/engine.js'
import type { XemsEngine } from '../../lib/session/engine.js'
import type { MfaSettings } from './options.js'

/** Internal keys live in their own sandbox, apart from application data. */
const MFA_SANDBOX = 'xems-mfa'
const DEVICE_SANDBOX = 'xems-devices'
/** Pending-session key: the passkey that served as the first factor (it cannot be the second too). */
export const PASSKEY_FIRST_FACTOR = 'xemsPasskeyFirstFactor'

export interface MfaContext {
  /** The instance the plugin decorates (its logger serves calls made without a request). */
  fastify: FastifyInstance
  engine: XemsEngine
  settings: MfaSettings
  /** Lockout markers, claimed TOTP steps and recovery codes, pending enrolments. */
  mfaState: SandboxValues
  /** Remembered devices and their per-user revocation time. */
  devices: SandboxValues
}

export function createContext (fastify: FastifyInstance, engine: XemsEngine, settings: MfaSettings): MfaContext {
  return { fastify, engine, settings, mfaState: engine.from(MFA_SANDBOX), devices: engine.from(DEVICE_SANDBOX) }
}
