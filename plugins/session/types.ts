/**
 * The types xemsSession adds to Fastify (declaration merging: `app.xems`, `request.session`,
 * `reply.xLink` / `reply.xUnlink`) and the shape of session data an app can narrow.
 */
import type { SignInMethod } from '../../lib/device.js'
import type { Duration } from '../../lib/duration.js'
import type { XemsSession } from '../../lib/session/handle.js'
import type { XemsDecorator } from './api.js'
import type { ClearSiteDataType } from './options.js'

/**
 * The shape of session data, for `request.session.data`: any key (of type `unknown`) unless the app narrows
 * it. Type keys by declaration merging (other keys stay allowed):
 *
 * ```ts
 * declare module 'fastify-xems' {
 *   interface XemsSessionData { userId: string, cart?: string[] }
 * }
 * ```
 *
 * or allow only the app's keys through {@link XemsTypes}.
 */
export interface XemsSessionData {
  [key: string]: unknown
}

/**
 * Augment with `sessionData: YourShape` to type `request.session.data` (and `reply.xLink`) as exactly that
 * shape, with no index signature: a misspelt key is then a compile error.
 *
 * ```ts
 * declare module 'fastify-xems' {
 *   interface XemsTypes { sessionData: { userId: string, cart?: string[] } }
 * }
 * ```
 */
export interface XemsTypes {}

/** The type of session data: `XemsTypes['sessionData']` when the app set it, else {@link XemsSessionData}. */
export type XemsData = XemsTypes extends { sessionData: infer Data extends object } ? Data : XemsSessionData

export interface LinkOptions {
  sandbox?: string | undefined
  userId?: string | undefined
  ttl?: Duration | undefined
  /** How the user signed in, kept in the session's device record. */
  signIn?: SignInMethod | undefined
}

export interface UnlinkOptions {
  /** Overrides the `clearSiteData` option for this response. */
  clearSiteData?: ClearSiteDataType[] | false | undefined
}

declare module 'fastify' {
  interface FastifyInstance {
    /** The session API (plugins/session/api.ts): the documented members only, not the engine. */
    xems: XemsDecorator
  }
  interface FastifyRequest {
    /** The request's session, or null. */
    session: XemsSession<XemsData> | null
  }
  interface FastifyReply {
    /**
     * Opens a session (ending the request's current one) and sends its token with this response.
     * Returns the token.
     */
    xLink: (data?: Partial<XemsData>, sandboxOrOptions?: string | LinkOptions) => Promise<string>
    /** Ends the request's session everywhere and clears the cookie; the answer is never cached. */
    xUnlink: (options?: UnlinkOptions) => Promise<void>
  }
}
