import type { CounterResult } from '../contract.js'
import type { ChangeTracker } from './changes.js'
import { flat } from './data.js'
import { ownKey, type Counter, type TimedValue } from './record.js'
import { ShardedMap } from './sharded-map.js'

/**
 * The timed values (kvGet … kvTake, per sandbox) and the counters (increment, resetCounter) of a
 * MemoryStore. The store owns one and calls it within its operations: each method is one synchronous
 * step, and notes what it changed in the store's change tracker (null without persistence).
 */
export class MemoryValues {
  /** `${sandbox}\0${key}` → value and expiry. */
  readonly values = new ShardedMap<TimedValue>()
  readonly counters = new ShardedMap<Counter>()
  readonly #changes: ChangeTracker | null

  constructor (changes: ChangeTracker | null) {
    this.#changes = changes
  }

  get (sandbox: string, key: string, now: number): string | null {
    return this.#liveValue(valueKey(sandbox, key), now)?.value ?? null
  }

  set (sandbox: string, key: string, value: string, ttl: number, now: number): void {
    const k = valueKey(sandbox, key)
    this.values.set(ownKey(k), { value: flat(value), expiresAt: now + ttl })
    this.#valueChanged(k)
  }

  delete (sandbox: string, key: string): boolean {
    const k = valueKey(sandbox, key)
    const deleted = this.values.delete(k)
    if (deleted) this.#valueChanged(k)
    return deleted
  }

  /** Sets the value unless a live one is there; true if it did. */
  add (sandbox: string, key: string, value: string, ttl: number, now: number): boolean {
    const k = valueKey(sandbox, key)
    if (this.#liveValue(k, now) !== null) return false
    this.values.set(ownKey(k), { value: flat(value), expiresAt: now + ttl })
    this.#valueChanged(k)
    return true
  }

  /** Deletes the value and answers it (null if there was no live one). */
  take (sandbox: string, key: string, now: number): string | null {
    const k = valueKey(sandbox, key)
    const entry = this.#liveValue(k, now)
    if (entry === null) return null
    this.values.delete(k)
    this.#valueChanged(k)
    return entry.value
  }

  increment (key: string, window: number, now: number): CounterResult {
    let counter = this.counters.get(key)
    if (counter === undefined || counter.resetAt <= now) {
      counter = { count: 0, resetAt: now + window }
      // A key of its own: a key built in pieces would keep its pieces alive (~300 B more per key on Node 24).
      this.counters.set(ownKey(key), counter)
    }
    counter.count++
    this.#counterChanged(key)
    return { count: counter.count, resetAt: counter.resetAt }
  }

  resetCounter (key: string): void {
    if (this.counters.delete(key)) this.#counterChanged(key)
  }

  #liveValue (key: string, now: number): TimedValue | null {
    const entry = this.values.get(key)
    if (entry === undefined) return null
    if (entry.expiresAt <= now) {
      this.values.delete(key)
      this.#valueChanged(key)
      return null
    }
    return entry
  }

  #valueChanged (key: string): void {
    if (this.#changes !== null) this.#changes.value(key)
  }

  #counterChanged (key: string): void {
    if (this.#changes !== null) this.#changes.counter(key)
  }
}

function valueKey (sandbox: string, key: string): string {
  return `${sandbox}\u0000${key}`
}
