import { decodeBinding } from '../binding/binding.js'
import { BINDING_KEY } from '../store/contract.js'
import { checkSandbox } from './checks.js'
import { decodeData } from './data.js'
import type { XemsEngine } from './engine.js'
import type { ResolvedSession, ResolveSessionOptions } from './engine-types.js'
import { checkGrace } from './options.js'
import { publicIdOf } from './token.js'

/**
 * Resolves a token for a caller outside the request cycle (a WebSocket upgrade, a job): the session's
 * data and the token the caller must hold from now on (rotated when `rotate` is asked and the token is
 * current), or null. A session bound to a key is null unless `allowBound`: nothing here checks the key.
 */
export async function resolveSession (
  engine: XemsEngine, token: unknown, options: ResolveSessionOptions
): Promise<ResolvedSession | null> {
  const sandbox = checkSandbox(options.sandbox ?? engine.defaultSandbox, 'sandbox')
  const grace = options.gracePeriod === undefined ? engine.gracePeriod : checkGrace(options.gracePeriod, 'gracePeriod')
  const opened = await engine.open(token, sandbox, grace)
  if (opened.status !== 'live' && opened.status !== 'grace') return null
  const { session } = opened
  const binding = decodeBinding(session.data[BINDING_KEY])
  // Fail closed: the token alone is not a bound session (nothing here can check the key).
  if (binding !== null && options.allowBound !== true) return null
  let current = opened.token
  let expiresAt = Math.min(session.lastSeenAt + session.idleTtl, session.absoluteExpiresAt)
  if (options.rotate === true && opened.status === 'live') {
    const admitted = { id: session.id, sandbox, presented: opened.presented, migrations: session.migrations }
    const committed = await engine.commit(admitted, null, true)
    if (committed.status !== 'ok') return null
    current = committed.token
    expiresAt = committed.expiresAt
  }
  if (current === null) return null
  const resolved: ResolvedSession = {
    id: publicIdOf(session.id),
    sandbox: session.sandbox,
    data: decodeData(session.data),
    createdAt: session.createdAt,
    lastSeenAt: session.lastSeenAt,
    expiresAt,
    token: current,
    binding
  }
  if (session.userId !== undefined) resolved.userId = session.userId
  return resolved
}
