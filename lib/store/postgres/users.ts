import type { LimitResult, UserLimit } from '../contract.js'
import type { Query } from './connection.js'
import { digest } from './sealing.js'
import { ADVISORY_LOCK, type PostgresStatements } from './sql.js'

/**
 * maxSessionsPerUser, inside a transaction that then writes the session: the user's advisory lock
 * (sign-ins of one user serialise on it until COMMIT; READ COMMITTED, so the count after it sees every
 * earlier holder's rows), the count of the user's other live rows, and the decision: refuse, or delete
 * the least recently created (ties by id) to leave room for one. `lockKey` is the store's (see format.ts).
 */
export async function admitUser (
  query: Query, sql: PostgresStatements, lockKey: string, userId: string, id: string, limit: UserLimit, now: number
): Promise<LimitResult> {
  const user = digest('user', userId)
  await query(ADVISORY_LOCK, [`${lockKey}/user/${user}`])
  const { rows } = await query<{ id: string }>(sql.userSessions, [user, now, id])
  if (rows.length < limit.max) return { status: 'admitted', ended: [] }
  if (limit.onLimit === 'refuse') return { status: 'refused' }
  const oldest = rows.slice(0, rows.length - limit.max + 1).map((row) => row.id)
  const { rows: gone } = await query<{ id: string }>(sql.deleteSessions, [oldest])
  return { status: 'admitted', ended: gone.map((row) => row.id) }
}
