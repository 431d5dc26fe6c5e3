/** The scripts of RedisStore, each with the typed builder of its arguments (see define.ts, common.ts). */
import { admit, admitDone, admitUndo, fence } from './admit.js'
import { canary } from './canary.js'
import { commit } from './commit.js'
import { create } from './create.js'
import { destroy } from './destroy.js'
import { increment } from './increment.js'
import { kvAdd, kvGet, kvSet, kvTake } from './kv.js'
import { migrate } from './migrate.js'
import { resolve } from './resolve.js'
import { reseal } from './reseal.js'
import { revokeOne } from './revoke-one.js'
import { indexAdd, indexRead } from './user-index.js'

export { BOX_LENGTH, ENTRY_WIDTH, KEY_LENGTH, RECLAIM_MARKS_MS } from './common.js'
export type { Arg, ScriptArgs } from './define.js'

/** The scripts, by operation. */
export const SCRIPT = {
  create,
  resolve,
  commit,
  migrate,
  destroy,
  revokeOne,
  indexAdd,
  indexRead,
  admit,
  admitDone,
  admitUndo,
  fence,
  reseal,
  kvGet,
  kvSet,
  kvAdd,
  kvTake,
  increment,
  canary
} as const

export type ScriptName = keyof typeof SCRIPT

/** The Lua source of each script, by operation. */
export const SCRIPTS = Object.fromEntries(
  Object.entries(SCRIPT).map(([name, script]) => [name, script.lua])
) as { readonly [N in ScriptName]: string }
