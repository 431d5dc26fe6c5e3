/**
 * A Map split into 64 smaller Maps. A JavaScript Map of a million entries stops the event loop for
 * tens of milliseconds each time it grows or shrinks its table (measured in bench/map-rehash.ts);
 * 64 maps of ~16 000 entries each resize in well under a millisecond. Same interface as the Map
 * methods the stores use.
 */
const SHARDS = 64

/** FNV-1a over the whole key: ids, hashes and prefixed keys all spread (a few dozen ns for a token key). */
function shardOf (key: string): number {
  let h = 0x811c9dc5
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 0x01000193)
  return (h ^ (h >>> 16)) & (SHARDS - 1)
}

export class ShardedMap<V> {
  readonly #shards: Array<Map<string, V>> = Array.from({ length: SHARDS }, () => new Map())
  #size = 0

  get size (): number {
    return this.#size
  }

  /** Entries per shard, for monitoring: a skewed spread would bring back long resizes. */
  get shardSizes (): number[] {
    return this.#shards.map((shard) => shard.size)
  }

  get (key: string): V | undefined {
    return this.#shards[shardOf(key)]!.get(key)
  }

  has (key: string): boolean {
    return this.#shards[shardOf(key)]!.has(key)
  }

  set (key: string, value: V): this {
    const shard = this.#shards[shardOf(key)]!
    const before = shard.size
    shard.set(key, value)
    this.#size += shard.size - before
    return this
  }

  delete (key: string): boolean {
    const deleted = this.#shards[shardOf(key)]!.delete(key)
    if (deleted) this.#size--
    return deleted
  }

  * entries (): IterableIterator<[string, V]> {
    for (const shard of this.#shards) yield * shard.entries()
  }

  * keys (): IterableIterator<string> {
    for (const shard of this.#shards) yield * shard.keys()
  }

  * values (): IterableIterator<V> {
    for (const shard of this.#shards) yield * shard.values()
  }

  [Symbol.iterator] (): IterableIterator<[string, V]> {
    return this.entries()
  }
}
