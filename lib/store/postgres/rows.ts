import type { EncodedData, SessionInfo, StoredSession } from '../contract.js'
import { DEVICE_KEY } from '../contract.js'
import type { RotationState } from '../rotation.js'
import type { Defer } from './connection.js'
import { digest, type PostgresSealing } from './sealing.js'

/** A bigint column (pg returns int8 as a string) as a number: times in ms are exact below 2^53. */
export function int (value: unknown): number {
  return typeof value === 'number' ? value : Number(value)
}

/** A row of the sessions table as pg returns it (bigint columns as strings, jsonb parsed). */
export interface SessionRow {
  id: string
  sandbox: string
  created_at: string
  last_seen_at: string
  idle_ttl: string
  absolute_expires_at: string
  expires_at: string
  rotation: RotationState
  binding: Buffer
  data: Buffer
}

/** A session row as the store works on it inside a transaction. */
export interface Loaded {
  row: SessionRow
  state: RotationState
  userId: string | undefined
  createdAt: number
  idleTtl: number
  absoluteExpiresAt: number
  /** The binding was sealed under an older secret: rewrite it. */
  stale: boolean
}

/** The row's deadline, from its own columns (whatever expires_at and the sweep say). */
export function deadlineOf (row: SessionRow): number {
  return Math.min(int(row.last_seen_at) + int(row.idle_ttl), int(row.absolute_expires_at))
}

/**
 * A row's rotation state (its token keys: not sealed, as on Redis); null when it is not one. It decides
 * what a presented token is, whether or not the row's binding opens.
 */
export function rotationOf (row: SessionRow): RotationState | null {
  const state = row.rotation
  if (state === null || typeof state.cur !== 'string' || !Array.isArray(state.past)) return null
  if (state.migrations !== undefined && !(Number.isSafeInteger(state.migrations) && state.migrations >= 0)) return null
  return state
}

/** A locked row, decoded; null when its binding does not open or its rotation state is not one. */
export function loadedOf (row: SessionRow, sealing: PostgresSealing): Loaded | null {
  const createdAt = int(row.created_at)
  const idleTtl = int(row.idle_ttl)
  const absoluteExpiresAt = int(row.absolute_expires_at)
  const state = rotationOf(row)
  if (state === null) return null
  const opened = sealing.openBinding(row.id, row.sandbox, idleTtl, createdAt, absoluteExpiresAt, row.binding)
  if (opened === null) return null
  return { row, state, userId: opened.userId, createdAt, idleTtl, absoluteExpiresAt, stale: opened.stale }
}

/**
 * Writes the row back (into `table`, the sessions table): lastSeenAt = now, and what changed. Returns
 * the new deadline.
 */
export function writeBack (
  defer: Defer, table: string, sealing: PostgresSealing, loaded: Loaded, now: number,
  change: { rotation: boolean, data: EncodedData | null }
): number {
  const { row } = loaded
  const expiresAt = Math.min(now + loaded.idleTtl, loaded.absoluteExpiresAt)
  const sets = ['last_seen_at = $2', 'expires_at = $3']
  const values: unknown[] = [row.id, now, expiresAt]
  const set = (column: string, value: unknown): void => { values.push(value); sets.push(`${column} = $${values.length}`) }
  if (change.rotation) set('rotation', JSON.stringify(loaded.state))
  if (loaded.stale) {
    set('sandbox', row.sandbox)
    set('idle_ttl', loaded.idleTtl)
    set('user_digest', loaded.userId === undefined ? null : digest('user', loaded.userId))
    set('binding', sealing.binding(row.id, row.sandbox, loaded.idleTtl, loaded.createdAt, loaded.absoluteExpiresAt, loaded.userId))
  }
  if (change.data !== null) set('data', sealing.sealData(row.id, change.data))
  defer(`UPDATE ${table} SET ${sets.join(', ')} WHERE id = $1`, values)
  return expiresAt
}

/** The session of a loaded row, as seen at `now`. */
export function storedSession (loaded: Loaded, data: EncodedData, now: number): StoredSession {
  const session: StoredSession = {
    id: loaded.row.id,
    sandbox: loaded.row.sandbox,
    data,
    createdAt: loaded.createdAt,
    lastSeenAt: now,
    idleTtl: loaded.idleTtl,
    absoluteExpiresAt: loaded.absoluteExpiresAt,
    migrations: loaded.state.migrations ?? 0
  }
  if (loaded.userId !== undefined) session.userId = loaded.userId
  return session
}

/** A row of listUser as a SessionInfo; null when it is past its deadline or its sealed binding names another user. */
export function sessionInfoOf (row: SessionRow, userId: string, now: number, sealing: PostgresSealing): SessionInfo | null {
  const createdAt = int(row.created_at)
  const lastSeenAt = int(row.last_seen_at)
  const idleTtl = int(row.idle_ttl)
  const absoluteExpiresAt = int(row.absolute_expires_at)
  const expiresAt = Math.min(lastSeenAt + idleTtl, absoluteExpiresAt)
  if (!(expiresAt > now)) return null
  const opened = sealing.openBinding(row.id, row.sandbox, idleTtl, createdAt, absoluteExpiresAt, row.binding)
  if (opened === null || opened.userId !== userId) return null
  const info: SessionInfo = { id: row.id, sandbox: row.sandbox, userId, createdAt, lastSeenAt, expiresAt }
  // The device record is a key of the sealed data: opened only for the list.
  const device = sealing.openData(row.id, row.data)?.data[DEVICE_KEY]
  if (device !== undefined) info.device = device
  return info
}
