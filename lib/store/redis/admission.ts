/**
 * maxSessionsPerUser on Redis: the admit script decides in the user's slot; the records it counts or
 * ends live in slots of their own, so they are checked and ended from here.
 */
import type { LimitResult, UserLimit } from '../contract.js'
import { intOf, list, num, type Reply, text } from './codec.js'
import type { RedisParts } from './commands.js'
import { ADMISSION_FENCE_MS, SESSION_LIFETIME_BOUND_MS } from './layout.js'
import { SCRIPT } from './scripts/index.js'

/**
 * An admission: the result, the records the caller ends (endAdmitted) once it has written its own, and
 * what undoAdmitted needs when its record is not written after all (a migration that does not happen).
 */
export interface Admission {
  result: LimitResult
  toEnd: string[]
  /** The ids this admission marked, each with the score it had in the limit set: id, score, ... */
  marked: string[]
  /** Whether this admission added the record to the limit set. */
  added: boolean
}

/**
 * `fresh`: the record does not name the user yet (a migration read it), so it is counted anew even if
 * an earlier try left it in the limit set.
 * A refusal is checked once: the counted records are read (in their own slots), those that are ended,
 * expired, or missing longer than ADMISSION_FENCE_MS (then fenced) are dead for good, and the script
 * decides again without them.
 */
export async function admit (
  parts: RedisParts, uk: string, id: string, score: number, now: number, limit: UserLimit, fresh = false
): Promise<Admission> {
  const { keys, scripts } = parts
  const input = { u: keys.user(uk), l: keys.limit(uk), id, score, now, max: limit.max, onLimit: limit.onLimit, fresh, dead: [] }
  let reply = list(await scripts.run(SCRIPT.admit, input))
  if (num(reply[0]) === 2) {
    const dead = await deadAmong(parts, reply.slice(1), now)
    if (dead.length > 0) reply = list(await scripts.run(SCRIPT.admit, { ...input, dead }))
  }
  if (num(reply[0]) === 2) return { result: { status: 'refused' }, toEnd: [], marked: [], added: false }
  const reclaimed = reply.slice(3, 3 + num(reply[2])).map(text)
  const marked = reply.slice(3 + reclaimed.length).map(text)
  const toEnd = [...reclaimed, ...marked.filter((_, i) => i % 2 === 0)]
  return { result: { status: 'admitted', ended: [] }, toEnd, marked, added: num(reply[1]) === 1 }
}

/** Of the counted [id, admittedAt, ...] of a refusal, the ids whose records can never be live again. */
async function deadAmong ({ client, scripts, keys }: RedisParts, counted: Reply[], now: number): Promise<string[]> {
  const entries: Array<{ id: string, admittedAt: number }> = []
  for (let i = 0; i + 1 < counted.length; i += 2) entries.push({ id: text(counted[i]), admittedAt: num(counted[i + 1]) })
  const dead = await Promise.all(entries.map(async ({ id, admittedAt }) => {
    const key = keys.session(id)
    const [sb, ls, it, ax, x] = await client.hmgetBuffer(key, 'sb', 'ls', 'it', 'ax', 'x')
    if (x !== null && x !== undefined) return true
    if (sb === null || sb === undefined) {
      if (now - admittedAt < ADMISSION_FENCE_MS) return false
      return num(await scripts.run(SCRIPT.fence, { key, now, fenceUntil: now + SESSION_LIFETIME_BOUND_MS })) === 1
    }
    const deadline = Math.min(intOf(ls ?? undefined) + intOf(it ?? undefined), intOf(ax ?? undefined))
    return deadline <= now
  }))
  return entries.filter((_, i) => dead[i]).map((entry) => entry.id)
}

/**
 * Ends the records the admit script marked (one revokeOne each, in their slots: their tokens then
 * answer "none"), then drops them from the index and the limit set. Returns those that were live.
 * Marked ones a crash left unended are handed out again by the user's next admission.
 */
export async function endAdmitted ({ scripts, keys }: RedisParts, uk: string, ids: string[], now: number): Promise<string[]> {
  if (ids.length === 0) return []
  const outcomes = await Promise.all(ids.map(async (id) =>
    num(await scripts.run(SCRIPT.revokeOne, { key: keys.session(id), userKey: uk, now, score: now + SESSION_LIFETIME_BOUND_MS }))))
  await scripts.run(SCRIPT.admitDone, { u: keys.user(uk), l: keys.limit(uk), ids })
  return ids.filter((_, i) => outcomes[i] === 2)
}

/**
 * Undoes an admission whose record was not written (a migration that did not happen): the sessions it
 * marked are unmarked, none is ended, and the record leaves the limit set if the admission added it.
 * Old marks it handed out again stay marked, for the user's next admission.
 */
export async function undoAdmitted (
  { scripts, keys }: RedisParts, uk: string, id: string, admission: Admission, now: number
): Promise<void> {
  if (!admission.added && admission.marked.length === 0) return
  await scripts.run(SCRIPT.admitUndo, { l: keys.limit(uk), id, now, added: admission.added, marked: admission.marked })
}
