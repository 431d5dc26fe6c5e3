import type { FastifyRequest, preHandlerAsyncHookHandler } from 'fastify'
import { checkSandbox } from '../../lib/session/engine.js'
import { xemsError } from '../../lib/errors.js'

/**
 * `requireSession(sandbox?)`: a preHandler that lets a request through only when it has a session in
 * `sandbox`. Anything else, including a pending (half-authenticated) session on an active route, gets
 * 401 with code FST_XEMS_NO_SESSION.
 */
export function createSessionGuard (defaultSandbox: string): (sandbox?: string) => preHandlerAsyncHookHandler {
  return function requireSession (sandbox?: string): preHandlerAsyncHookHandler {
    const wanted = checkSandbox(sandbox ?? defaultSandbox, 'sandbox')
    return async function xemsSessionGuard (request: FastifyRequest): Promise<void> {
      const session = request.session
      if (session === null || session.destroyed || session.sandbox !== wanted) {
        throw xemsError('FST_XEMS_NO_SESSION')
      }
    }
  }
}
