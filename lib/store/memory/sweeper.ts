/**
 * Incremental expiry for in-memory maps: each step walks on from where the last one stopped and
 * stops after a small time budget, so a map of millions of entries never blocks the event loop for
 * more than about `budgetMs`. Entries that expire are also dropped lazily when read.
 */
export interface SweepTarget<V> {
  /** A Map, or anything whose entries() iterator survives deletions as a Map's does. */
  map: { entries: () => Iterator<[string, V]> }
  isExpired: (value: V, now: number) => boolean
  remove: (key: string, value: V) => void
}

export class IncrementalSweeper {
  readonly #targets: Array<SweepTarget<any>>
  readonly #budgetMs: number
  readonly #clock: () => number
  #cursor: Iterator<[string, any]> | null = null
  #targetIndex = 0

  /** `clock`: milliseconds of a monotonic clock (default performance.now; a test gives its own). */
  constructor (targets: Array<SweepTarget<any>>, budgetMs = 2, clock: () => number = () => performance.now()) {
    this.#targets = targets
    this.#budgetMs = budgetMs
    this.#clock = clock
  }

  /** Runs one bounded step; returns how many entries it removed. */
  step (now: number): number {
    const started = this.#clock()
    let removed = 0
    let visited = 0
    for (let targetsTried = 0; targetsTried < this.#targets.length;) {
      const target = this.#targets[this.#targetIndex]!
      this.#cursor ??= target.map.entries()
      const next = this.#cursor.next()
      if (next.done === true) {
        this.#cursor = null
        this.#targetIndex = (this.#targetIndex + 1) % this.#targets.length
        targetsTried++
        continue
      }
      const [key, value] = next.value
      if (target.isExpired(value, now)) {
        target.remove(key, value)
        removed++
      }
      if ((++visited & 255) === 0 && this.#clock() - started >= this.#budgetMs) break
    }
    return removed
  }
}
