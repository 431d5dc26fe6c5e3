/**
 * The contract every session store fulfils. Operations are at session level so that each one is a
 * single atomic step (one Lua script on Redis, one synchronous section in memory). One record per
 * session: a session is filed under its record id (see lib/session/token.ts), and everything the store
 * knows about its tokens lives in that record, in O(1) space however often it rotates.
 *
 * Stores never see a token or a locator: only record ids, token keys (SHA-256 of a token) and grace
 * boxes that only the holder of the token they were made from can open. The rotation rules themselves
 * are in lib/store/rotation.ts; a store applies them atomically to its record.
 *
 * Times are milliseconds since the epoch, passed in by the engine (one clock for the whole request).
 * Session data travels as a map from top-level key to its JSON text, so that a commit can apply the
 * keys a request changed (a patch) without reading the whole object back.
 */

/**
 * At most this many rotated tokens of a session are still within their window at once. It bounds the
 * record, not the theft signal: when it is full, the session simply does not rotate until one expires,
 * and every earlier token, remembered or not, is the theft signal once its window has passed.
 */
export const MAX_PAST_TOKENS = 8

/**
 * The reserved data key under which a session keeps its device record (lib/device.ts): sealed with the
 * rest of the data, and returned by listUser and by a theft signal. Applications cannot use this key.
 */
export const DEVICE_KEY = '$xems:device'

/**
 * The reserved data key under which a session keeps its key binding (lib/binding/binding.ts: DBSC or DPoP): the
 * public key (or its thumbprint) the session is bound to. Kept by rotation and migration, sealed with the
 * rest of the data. Applications cannot use this key.
 */
export const BINDING_KEY = '$xems:binding'

/** Top-level key → JSON text of its value. */
export type EncodedData = Record<string, string>
/** Top-level key → new JSON text, or null to delete the key. */
export type DataPatch = Record<string, string | null>

export interface StoredSession {
  /** The record id (never the locator; see lib/session/token.ts). */
  id: string
  sandbox: string
  userId?: string | undefined
  data: EncodedData
  createdAt: number
  lastSeenAt: number
  /** Idle lifetime in ms, refreshed by use. */
  idleTtl: number
  /** Absolute deadline (createdAt + maxAge), never extended. */
  absoluteExpiresAt: number
  /**
   * How many migrations the session has had (rotation.ts RotationState.migrations), as resolve read it:
   * a commit passes it back (CommitInput.migrations). A store that does not count them leaves it out.
   */
  migrations?: number | undefined
}

export interface SessionInfo {
  /** The record id. The engine turns it into the public id before anything leaves it. */
  id: string
  sandbox: string
  userId?: string | undefined
  createdAt: number
  lastSeenAt: number
  /** When the session ends if unused: min(lastSeenAt + idleTtl, absoluteExpiresAt). */
  expiresAt: number
  /** The JSON text of the session's data key DEVICE_KEY (lib/device.ts), when it has one. */
  device?: string
}

/**
 * A cap on the live sessions of one user (the engine's `maxSessionsPerUser`), applied by create and
 * migrate when the session gains a user. The count and the decision are one atomic step with the write:
 * of any number of parallel sign-ins of one user, at most `max` of the user's sessions are live after.
 * Every live session of the user counts, in any sandbox; expired and ended ones do not.
 */
export interface UserLimit {
  max: number
  /**
   * `'end-oldest'`: the session is created, and the user's least recently created sessions (ties by
   * record id) end in the same step, as many as needed to leave `max` (their tokens answer "none", never
   * "reused"). `'refuse'`: when the user already has `max`, nothing is written.
   */
  onLimit: 'end-oldest' | 'refuse'
}

/** What a create or migrate with a `userLimit` did: the record ids it ended, or that it refused. */
export type LimitResult =
  | { status: 'admitted', ended: string[] }
  | { status: 'refused' }

export interface CreateInput {
  id: string
  sandbox: string
  tokenKey: string
  data: EncodedData
  userId?: string | undefined
  now: number
  idleTtl: number
  absoluteExpiresAt: number
  /** With `userId`: apply this cap (create then answers a LimitResult). */
  userLimit?: UserLimit | undefined
}

export interface ResolveInput {
  id: string
  /** The key of the presented token. */
  tokenKey: string
  /** Only a session of this sandbox resolves; undefined: any sandbox. */
  sandbox?: string | undefined
  now: number
  /**
   * How long the session's previous token keeps working once this, its successor, has been presented
   * for the first time (set in the same step).
   */
  gracePeriod: number
  /** A theft signal revokes the whole session in the same step. */
  revokeOnReuse: boolean
}

export type ResolveResult =
  /** No such session, or another sandbox. */
  | { status: 'none' }
  /**
   * A token a migration retired, within its deadline: no session for this request, and no theft signal;
   * the session lives on under a token this one cannot lead to. Nothing changed. (A logout with it is
   * answered 401, not "signed out": the client may be about to receive the migration's new token.)
   */
  | { status: 'retired' }
  /** The token is the session's current one. The session's lastSeenAt is now `now`. */
  | { status: 'live', session: StoredSession }
  /**
   * A rotated token within its window. `chain` holds the grace boxes from the presented token to the
   * current one: the first opens with the presented token and yields the next.
   */
  | { status: 'grace', session: StoredSession, chain: string[] }
  /**
   * Any other token of the session: an earlier one replayed after its window, the theft signal.
   * `device`: the JSON text of the session's data key DEVICE_KEY, when it has one (who used it last).
   */
  | { status: 'reused', id: string, sandbox: string, userId?: string | undefined, revoked: boolean, device?: string }

export interface RotateInput {
  newKey: string
  /** What gives the new token back to the holder of the presented token, and to no one else (cipher.ts successorOf). */
  box: string
  /**
   * How long the presented token keeps working while nobody has presented the new one (a lost
   * response, a backlog, a stalled commit). Once the new one is presented, the grace period applies.
   */
  unseenWindow: number
}

export interface CommitInput {
  id: string
  /** The token key the request presented. */
  tokenKey: string
  /** Applied only when the presented token may still write (see CommitResult 'retired'). */
  patch: DataPatch | null
  /** Rotate, if the presented token is still the session's current one. */
  rotate: RotateInput | null
  now: number
  /**
   * The session's migration count when the request was admitted (StoredSession.migrations from its
   * resolve, plus one for each migration the request made itself). A token the session no longer holds
   * may write only if the count is unchanged: no migration happened since (see commitChain in
   * rotation.ts). A counter, not a time: it does not depend on any clock or on unseenWindow. Without it,
   * a token the session no longer holds never writes.
   */
  migrations?: number | undefined
}

/**
 * What a commit did. The store first judges the presented token, in the same atomic step as the write
 * (rotation.ts commitChain): the session's current token, or a rotated one it still keeps (past its
 * deadline too: a request admitted in time that commits late learns the current token), may write; so may
 * a rotated token the session pruned while the request ran, as long as no migration happened since the
 * request was admitted. Any other token writes nothing.
 */
export type CommitResult =
  /** No such live session: nothing written. */
  | { status: 'gone' }
  /**
   * The session lives, but the presented token may not write: retired by a migration (regenerate,
   * pending → active) since the request was admitted, or no longer held by a session that migrated since
   * (or by a commit that gave no migration count). The store wrote NOTHING: no patch,
   * no lastSeenAt, no rotation, no change to the rotation state. (A request that lost to a concurrent
   * migration must not write into the migrated session, which may now be signed in: session fixation.)
   */
  | { status: 'retired' }
  /** The presented key was current and is now rotated. */
  | { status: 'ok', rotated: true, expiresAt: number }
  /**
   * Not rotated. `chain` leads from the presented token to the current one ([] when it is the current
   * one): the grace boxes, the first of which opens with the presented token. Null for a rotated token
   * the session pruned while the request ran: the patch is saved, but no token can be learnt from it.
   */
  | { status: 'ok', rotated: false, chain: string[] | null, expiresAt: number }

/** A request's token, for a store step that only its holder may take (SessionStore.destroy). */
export interface PresentedCheck {
  tokenKey: string
  /** As CommitInput.migrations. */
  migrations?: number | undefined
  /** The request's clock: a session past its deadline by it is no session (false), whatever the token. */
  now?: number | undefined
}

export interface MigrateInput {
  id: string
  /** The token key the request presented: only a current or rotated token of the session may migrate it. */
  tokenKey: string
  from: string
  to: string
  /** The token key of the migrated session. */
  newKey: string
  /** Until when the session's earlier tokens answer "no session" instead of being the theft signal. */
  retiredUntil: number
  /** Replaces all data when given. */
  data: EncodedData | null
  idleTtl: number
  userId?: string | undefined
  now: number
  /**
   * With `userId`: apply this cap if the migration gives the session a user it did not have (a session
   * that already names `userId` is counted already). Migrate then answers false or a LimitResult.
   */
  userLimit?: UserLimit | undefined
}

export interface CounterResult {
  count: number
  resetAt: number
}

export interface SessionStore {
  /** Creates a session; with `input.userLimit` (and a user) it answers a LimitResult, otherwise nothing. */
  create: (input: CreateInput) => Promise<LimitResult | void>
  resolve: (input: ResolveInput) => Promise<ResolveResult>
  commit: (input: CommitInput) => Promise<CommitResult>
  /**
   * Moves a session of sandbox `from` to sandbox `to` with a new token; every earlier token stops
   * working at once. False when there is no such live session, or the presented token no longer may
   * (of concurrent migrations, exactly one succeeds). With `input.userLimit` and a user, a LimitResult
   * instead of true (a refusal moves nothing).
   */
  migrate: (input: MigrateInput) => Promise<boolean | LimitResult>
  /**
   * Ends a session and every token of it. False when there was none. With `presented` (a request's
   * logout), only if that token may still write to the session, judged as a commit judges it
   * (rotation.ts commitChain), in the same atomic step: a request that lost to a concurrent migration
   * never ends the migrated session (`'retired'`, nothing changed).
   */
  destroy: (id: string, presented?: PresentedCheck) => Promise<boolean | 'retired'>
  /**
   * Ends one session, only if it is a live session of `userId` (one atomic step: a session of
   * another user, or none, is left alone and answers false).
   */
  revokeUserSession: (userId: string, id: string, now: number) => Promise<boolean>
  /** Ends every session of a user (but `exceptId`); returns how many ended. */
  revokeUser: (userId: string, now: number, exceptId?: string) => Promise<number>
  /** The live sessions of a user, each with its `device` text when it has one. */
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
  ready?: (() => Promise<void>) | undefined
}
