import type { Duration } from '../duration.js'
import { checkKey, checkSandbox, encodeStored } from './checks.js'
import type { XemsEngine } from './engine.js'
import { checkTtl } from './options.js'
import { callStore } from './store-call.js'

/** Values in one sandbox: `app.xems.from('users-registry').set(key, value, ttl?)`. */
export interface SandboxValues {
  readonly sandbox: string
  set: (key: string, value: unknown, ttl?: Duration) => Promise<void>
  get: <T = unknown>(key: string) => Promise<T | null>
  del: (key: string) => Promise<boolean>
  /** Sets only when the key holds nothing; true when it was set (atomic: one winner among parallel callers). */
  add: (key: string, value: unknown, ttl?: Duration) => Promise<boolean>
  /** Reads and deletes in one atomic step: of parallel callers exactly one gets the value. */
  take: <T = unknown>(key: string) => Promise<T | null>
}

/** The values of `sandbox` on the engine's store, with the sandbox's ttl as their default lifetime. */
export function sandboxValues (engine: XemsEngine, sandbox: string): SandboxValues {
  checkSandbox(sandbox, 'sandbox')
  const lifetime = (ttl: Duration | undefined): number => ttl === undefined ? engine.ttlOf(sandbox) : checkTtl(ttl, 'ttl', engine.maxAge)
  return {
    sandbox,
    set: async (key, value, ttl) => {
      const text = encodeStored(value, checkKey(key))
      await callStore(async () => await engine.store.kvSet(sandbox, key, text, lifetime(ttl), engine.now()))
    },
    get: async <T>(key: string) => {
      const text = await callStore(async () => await engine.store.kvGet(sandbox, checkKey(key), engine.now()))
      return text === null ? null : JSON.parse(text) as T
    },
    del: async (key) => await callStore(async () => await engine.store.kvDel(sandbox, checkKey(key))),
    add: async (key, value, ttl) => {
      const text = encodeStored(value, checkKey(key))
      return await callStore(async () => await engine.store.kvAdd(sandbox, key, text, lifetime(ttl), engine.now()))
    },
    take: async <T>(key: string) => {
      const text = await callStore(async () => await engine.store.kvTake(sandbox, checkKey(key), engine.now()))
      return text === null ? null : JSON.parse(text) as T
    }
  }
}
