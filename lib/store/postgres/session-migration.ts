import type { EncodedData, LimitResult, MigrateInput } from '../contract.js'
import { mayMigrate, retireAll } from '../rotation.js'
import type { PostgresCalls } from './calls.js'
import { writeBack } from './rows.js'
import type { PostgresSealing } from './sealing.js'
import type { PostgresStatements } from './sql.js'
import { admitUser } from './users.js'

/** What the session migration works with: the store's calls, statements and sealing, its sessions table and lock key. */
export interface MigrationParts {
  calls: PostgresCalls
  sql: PostgresStatements
  sealing: PostgresSealing
  /** The sessions table's qualified name. */
  sessions: string
  /** The store's advisory lock key (see lockKeyOf in format.ts). */
  lockKey: string
}

/** One transaction: lock the row, check sandbox and token, retire every token, move. */
export async function migrateSession (parts: MigrationParts, input: MigrateInput): Promise<boolean | LimitResult> {
  const { calls, sql, sealing } = parts
  return await calls.transaction(async (query, defer) => {
    const loaded = await calls.lock(query, defer, input.id, input.now)
    if (loaded === null) return false
    const { row, state } = loaded
    if (row.sandbox !== input.from || !mayMigrate(state, input.tokenKey)) return false
    let admitted: LimitResult | true = true
    if (input.userId !== undefined && input.userLimit !== undefined) {
      // The row is locked: a session that already names the user is counted already.
      admitted = loaded.userId === input.userId
        ? { status: 'admitted', ended: [] }
        : await admitUser(query, sql, parts.lockKey, input.userId, input.id, input.userLimit, input.now)
      if (admitted.status === 'refused') return admitted
    }
    let data: EncodedData | null = input.data === null ? null : Object.assign(Object.create(null) as EncodedData, input.data)
    if (data === null && sealing.isStale(row.data)) data = sealing.openData(input.id, row.data)?.data ?? null
    retireAll(state, input.newKey, input.now, input.retiredUntil)
    row.sandbox = input.to
    loaded.idleTtl = input.idleTtl
    if (input.userId !== undefined) loaded.userId = input.userId
    loaded.stale = true
    writeBack(defer, parts.sessions, sealing, loaded, input.now, { rotation: true, data })
    return admitted
  })
}
