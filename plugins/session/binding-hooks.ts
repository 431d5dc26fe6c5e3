import type { FastifyReply, FastifyRequest } from 'fastify'
import type { SessionBinding } from '../../lib/binding/binding.js'
import type { XemsEngine } from '../../lib/session/engine.js'

/**
 * How xemsSession hands its sign-in and sign-out moments to the binding plugins it registers (DPoP,
 * DBSC). Internal: created by plugins/session/index.ts, passed to plugins/session/dpop.ts and plugins/session/dbsc.ts.
 */
export interface BindingHooks {
  /** Each returns the binding a session opened by `reply.xLink` on this request starts with, or null. */
  link: Array<(request: FastifyRequest) => SessionBinding | null>
  /** Run by `reply.xUnlink` (clear a bound cookie). */
  unlink: Array<(reply: FastifyReply) => void>
}

/** What xemsSession passes to a binding plugin besides its own options. */
export interface BindingContext {
  engine: XemsEngine
  hooks: BindingHooks
  /** The token header of header clients, or null when that transport is off. */
  header: string | null
  /** The session cookie's settings, or null when that transport is off. */
  cookie: { name: string, path: string, domain?: string | undefined, secure: boolean, sameSite: 'lax' | 'strict' | 'none' } | null
}
