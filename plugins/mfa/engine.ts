/**
 * The one way the MFA plugin reaches the session engine (the sibling xemsSession plugin's), so that
 * where the engine comes from is decided in one place.
 */
import type { FastifyInstance } from 'fastify'
import type { XemsDecorator } from '../session/index.js'

export function engineOf (fastify: FastifyInstance): XemsDecorator {
  return fastify.xems
}
