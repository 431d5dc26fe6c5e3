/**
 * The contract every session store fulfils. Operations are at session level so that each one is a
 * single atomic step (one Lua script on Redis, one synchronous section in memory). Stores never see a
 * token: only token keys (SHA-256 of a token) and grace boxes that only the old token's holder can open.
 *
 * Times are milliseconds since the epoch, passed in by the engine (one clock for the whole request).
 * Session data travels as a map from top-level key to its JSON text, so that a commit can apply the
 * keys a request changed (a patch) without reading the whole object back.
 */

/**
 * How many rotated tokens of a session are remembered to recognise their replay (a theft signal).
 * Older ones are forgotten: replayed, they are simply unknown ("no session"), never accepted.
 */
export const ROTATED_TOKENS_KEPT = 16

/** Top-level key → JSON text of its value. */
export type EncodedData = Record<string, string>
/** Top-level key → new JSON text, or null to delete the key. */
export type DataPatch = Record<string, string | null>

export interface StoredSession {
  sid: string
  sandbox: string
  userId?: string
  data: EncodedData
  createdAt: number
  lastSeenAt: number
  /** Idle lifetime in ms, refreshed by use. */
  idleTtl: number
  /** Absolute deadline (createdAt + maxAge), never extended. */
  absoluteExpiresAt: number
}

export interface SessionInfo {
  sid: string
  sandbox: string
  userId?: string
  createdAt: number
  lastSeenAt: number
  /** When the session ends if unused: min(lastSeenAt + idleTtl, absoluteExpiresAt). */
  expiresAt: number
}

export interface CreateInput {
  sid: string
  sandbox: string
  tokenKey: string
  data: EncodedData
  userId?: string
  now: number
  idleTtl: number
  absoluteExpiresAt: number
}

export interface ResolveInput {
  tokenKey: string
  /** Only a session of this sandbox resolves; undefined: any sandbox. */
  sandbox?: string
  now: number
  /** A rotated token replayed after its grace: revoke the whole session in the same step. */
  revokeOnReuse: boolean
}

export type ResolveResult =
  | { status: 'none' }
  /** The token is the session's current one. The session's lastSeenAt is now `now`. */
  | { status: 'live', session: StoredSession }
  /**
   * The token was rotated less than its grace period ago. `chain` holds the grace boxes from the
   * presented token to the current one: the first opens with the presented token and yields the next.
   */
  | { status: 'grace', session: StoredSession, chain: string[] }
  /** A rotated token after its grace: a theft signal. */
  | { status: 'reused', sid: string, sandbox: string, userId?: string, revoked: boolean }

export interface RotateInput {
  newKey: string
  /** The new token sealed for the holder of the presented token (see sealForTokenHolder). */
  box: string
  /** Until when the presented token still resolves; `now` or earlier for none. */
  graceUntil: number
}

export interface CommitInput {
  sid: string
  /** The token key the request presented. */
  tokenKey: string
  patch: DataPatch | null
  /** Rotate, if the presented token is still the session's current one. */
  rotate: RotateInput | null
  now: number
}

export type CommitResult =
  | { status: 'gone' }
  /** rotated: the presented key was current and is now rotated. Otherwise `chain` leads from it to the current token. */
  | { status: 'ok', rotated: true, expiresAt: number }
  | { status: 'ok', rotated: false, chain: string[] | null, expiresAt: number }

export interface MigrateInput {
  sid: string
  from: string
  to: string
  /** The token key of the migrated session; every earlier token of it dies. */
  newKey: string
  /** Replaces all data when given. */
  data: EncodedData | null
  idleTtl: number
  userId?: string
  now: number
}

export interface CounterResult {
  count: number
  resetAt: number
}

export interface SessionStore {
  create: (input: CreateInput) => Promise<void>
  resolve: (input: ResolveInput) => Promise<ResolveResult>
  commit: (input: CommitInput) => Promise<CommitResult>
  /** Moves a session of sandbox `from` to sandbox `to`. False when no such live session is there. */
  migrate: (input: MigrateInput) => Promise<boolean>
  /** Ends a session and every token of it. False when there was none. */
  destroy: (sid: string) => Promise<boolean>
  /** Ends every session of a user (but `exceptSid`); returns how many ended. */
  revokeUser: (userId: string, now: number, exceptSid?: string) => Promise<number>
  listUser: (userId: string, now: number) => Promise<SessionInfo[]>
  kvGet: (sandbox: string, key: string, now: number) => Promise<string | null>
  kvSet: (sandbox: string, key: string, value: string, ttl: number, now: number) => Promise<void>
  kvDel: (sandbox: string, key: string) => Promise<boolean>
  /** Sets the value only if the key holds none (atomic); true when it was set. */
  kvAdd: (sandbox: string, key: string, value: string, ttl: number, now: number) => Promise<boolean>
  /** Reads and deletes in one step: of parallel takers, exactly one gets the value. */
  kvTake: (sandbox: string, key: string, now: number) => Promise<string | null>
  /** Counts a hit in a fixed window that starts with the first hit. */
  increment: (key: string, window: number, now: number) => Promise<CounterResult>
  resetCounter: (key: string) => Promise<void>
  close: () => Promise<void>
  /**
   * Optional: resolves when the store can serve (a vault loaded, a secret checked) and rejects with the
   * start-up error otherwise. xemsSession awaits it at register, so a bad vault or secret fails there.
   */
  ready?: () => Promise<void>
}
