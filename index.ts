/**
 * fastify-xems: the session plugin, its engine, the embedded MemoryStore, errors and types.
 * Loads no optional dependency: the MFA helpers (argon2, the QR encoder) are in `fastify-xems/mfa`,
 * RedisStore (ioredis) in `fastify-xems/redis`. jose (DPoP, DBSC) is loaded only by apps that turn those options on.
 */
export { xemsSession, xems } from './plugins/session/index.js'
export type {
  XemsSessionData,
  XemsTypes,
  XemsData,
  XemsSessionOptions,
  XemsCookieOptions,
  CreateLimitOptions,
  LinkOptions,
  UnlinkOptions,
  ClearSiteDataType,
  XemsDecorator
} from './plugins/session/index.js'
export type { CsrfOptions } from './plugins/session/csrf.js'
// Types only: the DPoP and DBSC code (and jose) loads when xemsSession's `dpop` / `deviceBound` option is on.
export type { DpopOptions, VerifiedDpop } from './plugins/session/dpop.js'
export type { DeviceBoundOptions } from './plugins/session/dbsc.js'
export type { DpopAlgorithm } from './lib/binding/dpop.js'
export type { DbscAlgorithm } from './lib/binding/dbsc.js'
export type { SessionBinding, DbscBinding, DpopBinding, UnreadableBinding } from './lib/binding/binding.js'
export type { SecurityEvent, SecurityEventType, UseOf } from './lib/security-events.js'
export type { DeviceInfo, DeviceType, SignInMethod } from './lib/device.js'
export { MAX_USER_AGENT_BYTES } from './lib/device.js'
export { XemsEngine, MAX_AGE_CAP_MS, DEFAULT_SANDBOX } from './lib/session/engine.js'
export type {
  EngineOptions,
  ResolvedSession,
  UserSessionInfo,
  ListUserSessionsOptions,
  PresentedToken,
  CreateSessionOptions,
  ResolveSessionOptions,
  MigrateOptions,
  SandboxValues,
  SandboxOptions,
  ReuseAction,
  XemsEvents,
  MaxSessionsPerUser
} from './lib/session/engine.js'
export { XemsSession } from './lib/session/handle.js'
export type { SessionMigrateOptions } from './lib/session/handle.js'
export { MemoryStore } from './lib/store/memory/memory-store.js'
export type { MemoryStoreOptions, PersistenceOptions, VaultSecret, FsyncPolicy, VaultWarning } from './lib/store/memory/memory-store.js'
export type * from './lib/store/contract.js'
export { MAX_PAST_TOKENS } from './lib/store/contract.js'
export { XemsError, isXemsError } from './lib/errors.js'
export type { XemsErrorCode } from './lib/errors.js'
export { parseDuration } from './lib/duration.js'
export type { Duration } from './lib/duration.js'
export { Keyring, parseSecret } from './lib/crypto/cipher.js'
