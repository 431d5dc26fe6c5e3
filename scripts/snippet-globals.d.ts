// What the text around a docs snippet has already defined, for the snippets that are excerpts (the
// example app in docs/getting-started.md, one route in docs/sessions.md). Each name here is what that page
// says it is; a snippet that defines or imports a name itself uses its own. Nothing else is global.
import type { FastifyInstance, RouteHandlerMethod, preHandlerAsyncHookHandler } from 'fastify'
import type { SandboxValues } from 'fastify-xems'
import type { MfaRecord, XemsMfa } from 'fastify-xems/mfa'

declare global {
  /** A Fastify app with `xemsSession` registered. */
  var app: FastifyInstance
  /** The child context of the example's routes, with `xemsMfa` registered. */
  var routes: FastifyInstance
  /** `routes.xemsMfa`. */
  var mfa: XemsMfa
  /** `app.xems.from('users-registry')` (docs/getting-started.md § 2). */
  var registry: SandboxValues
  /** `app.xems.requireSession()`. */
  var signedIn: preHandlerAsyncHookHandler
  /** Any route handler. */
  var handler: RouteHandlerMethod
  /** The example's `secureCookies` setting. */
  var secure: boolean
  /** What the registration form sent. */
  var email: string
  var password: string
  var createdAt: number
  var hashPassword: typeof import('fastify-xems/mfa').hashPassword
  var xemsSession: typeof import('fastify-xems').xemsSession
  var xemsMfa: typeof import('fastify-xems/mfa').xemsMfa
  /** The example's user record (example/server.ts). */
  interface UserRecord { email: string, passwordHash: string, mfa: MfaRecord, createdAt: number }
}
export {}
