/**
 * How the sibling plugins (xemsMfa, the key bindings) reach the session engine that a registered
 * xemsSession holds behind `app.xems`: engineOf(fastify). Applications use `app.xems`, never this.
 */
import type { FastifyInstance } from 'fastify'
import type { XemsEngine } from '../../lib/session/engine.js'
import { xemsError } from '../../lib/errors.js'
import { XemsApi } from './api.js'

/** The engine of the xemsSession registered on `fastify` (or a parent); FST_XEMS_MISSING_SESSION_PLUGIN when none is. */
export function engineOf (fastify: FastifyInstance): XemsEngine {
  const api: unknown = fastify.hasDecorator('xems') ? fastify.xems : undefined
  if (!(api instanceof XemsApi)) throw xemsError('FST_XEMS_MISSING_SESSION_PLUGIN')
  return XemsApi.engineOf(api)
}
