/**
 * `app.xems`: the documented session API (docs/sessions.md, "Engine API: app.xems"), a facade over the
 * engine. The engine itself (its store, open, commit, issue, migrateById …) stays private: sibling
 * plugins reach it through engineOf (engine-access.ts), never through `app.xems`.
 */
import type { preHandlerAsyncHookHandler } from 'fastify'
import type {
  CreateSessionOptions,
  ListUserSessionsOptions,
  MigrateOptions,
  ResolvedSession,
  ResolveSessionOptions,
  ReuseAction,
  SandboxValues,
  UserSessionInfo,
  XemsEngine,
  XemsEvents
} from '../../lib/session/engine.js'
import { createSessionGuard } from './guard.js'

/** A listener of one engine event. */
export type XemsListener<E extends keyof XemsEvents> = (...args: XemsEvents[E]) => void

/** What `app.xems` (and `xems.forApp(app)`) offers: the documented members, and nothing of the engine. */
export interface XemsDecorator {
  /** The default sandbox (option `defaultSandbox`). */
  readonly defaultSandbox: string
  /** The absolute lifetime cap, in ms (option `maxAge`). */
  readonly maxAge: number
  /** The grace of a rotated token once its successor was used, in ms (option `gracePeriod`). */
  readonly gracePeriod: number
  /** How long a rotated token works while its successor is unseen, in ms (option `unseenWindow`). */
  readonly unseenWindow: number
  /** What a replayed earlier token does (option `onReuse`). */
  readonly onReuse: ReuseAction
  /** A preHandler that answers 401 unless the request has a session in `sandbox` (default: the default sandbox). */
  requireSession: (sandbox?: string) => preHandlerAsyncHookHandler
  /** A sandbox's key-value store: set, get, del, add, take. */
  from: (sandbox: string) => SandboxValues
  /** A new session's token. */
  createSession: (sandbox: string, data?: Record<string, unknown>, options?: CreateSessionOptions) => Promise<string>
  /** The session of a token, or null. */
  resolveSession: (token: unknown, options?: ResolveSessionOptions) => Promise<ResolvedSession | null>
  /** Moves a session to another sandbox: the new token, or null (the old token is dead at once). */
  migrate: (token: unknown, options: MigrateOptions) => Promise<string | null>
  /** Whether a session ended. */
  destroySession: (token: unknown) => Promise<boolean>
  /** How many sessions of the user ended (`except`: the public id of one to keep). */
  revokeUser: (userId: string, options?: { except?: string | undefined }) => Promise<number>
  /** Whether the user's session of that public id ended. */
  revokeSession: (userId: string, publicId: string) => Promise<boolean>
  /** The user's live sessions, the most recently used first. */
  listUserSessions: (userId: string, options?: ListUserSessionsOptions) => Promise<UserSessionInfo[]>
  /** A fixed-window counter in the store. */
  hit: (key: string, window: number) => Promise<{ count: number, resetAt: number }>
  resetCounter: (key: string) => Promise<void>
  /** Listens to an engine event (created, rotated, migrated, destroyed, reuse, revoked, security). */
  on: <E extends keyof XemsEvents>(event: E, listener: XemsListener<E>) => this
  once: <E extends keyof XemsEvents>(event: E, listener: XemsListener<E>) => this
  off: <E extends keyof XemsEvents>(event: E, listener: XemsListener<E>) => this
}

type Listener = (...args: unknown[]) => void

/** The facade: every member delegates to the engine it holds privately. */
export class XemsApi implements XemsDecorator {
  readonly #engine: XemsEngine
  readonly requireSession: (sandbox?: string) => preHandlerAsyncHookHandler

  constructor (engine: XemsEngine) {
    this.#engine = engine
    this.requireSession = createSessionGuard(engine.defaultSandbox)
  }

  /** The engine behind this facade (for engineOf only). */
  static engineOf (api: XemsApi): XemsEngine {
    return api.#engine
  }

  get defaultSandbox (): string { return this.#engine.defaultSandbox }
  get maxAge (): number { return this.#engine.maxAge }
  get gracePeriod (): number { return this.#engine.gracePeriod }
  get unseenWindow (): number { return this.#engine.unseenWindow }
  get onReuse (): ReuseAction { return this.#engine.onReuse }

  from (sandbox: string): SandboxValues {
    return this.#engine.from(sandbox)
  }

  async createSession (sandbox: string, data?: Record<string, unknown>, options?: CreateSessionOptions): Promise<string> {
    return await this.#engine.createSession(sandbox, data, options)
  }

  async resolveSession (token: unknown, options?: ResolveSessionOptions): Promise<ResolvedSession | null> {
    return await this.#engine.resolveSession(token, options)
  }

  async migrate (token: unknown, options: MigrateOptions): Promise<string | null> {
    return await this.#engine.migrate(token, options)
  }

  async destroySession (token: unknown): Promise<boolean> {
    return await this.#engine.destroySession(token)
  }

  async revokeUser (userId: string, options?: { except?: string | undefined }): Promise<number> {
    return await this.#engine.revokeUser(userId, options)
  }

  async revokeSession (userId: string, publicId: string): Promise<boolean> {
    return await this.#engine.revokeSession(userId, publicId)
  }

  async listUserSessions (userId: string, options?: ListUserSessionsOptions): Promise<UserSessionInfo[]> {
    return await this.#engine.listUserSessions(userId, options)
  }

  async hit (key: string, window: number): Promise<{ count: number, resetAt: number }> {
    return await this.#engine.hit(key, window)
  }

  async resetCounter (key: string): Promise<void> {
    await this.#engine.resetCounter(key)
  }

  on<E extends keyof XemsEvents>(event: E, listener: XemsListener<E>): this {
    (this.#engine as unknown as { on: (event: string, listener: Listener) => void }).on(event, listener as Listener)
    return this
  }

  once<E extends keyof XemsEvents>(event: E, listener: XemsListener<E>): this {
    (this.#engine as unknown as { once: (event: string, listener: Listener) => void }).once(event, listener as Listener)
    return this
  }

  off<E extends keyof XemsEvents>(event: E, listener: XemsListener<E>): this {
    (this.#engine as unknown as { off: (event: string, listener: Listener) => void }).off(event, listener as Listener)
    return this
  }
}
