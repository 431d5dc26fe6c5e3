/**
 * Fields packed into one string, as a MemoryStore record keeps its current token key and its data
 * (record.ts): each field is `<length>:<text>` (the length in decimal UTF-16 code units), so any text
 * fits, separators, digits and NUL included. A session's data, key → JSON text, is its fields two by two
 * after the token key: `22:<token key>4:user108:{"id":…}`. One string instead of an object with a property
 * per key and a string per value: a string header (16 B) and an object (24 B + 8 B per key) less per
 * session, which is most of what a million small sessions cost.
 *
 * Every packed string is built by `Array.prototype.join` of two or more non-empty parts (a join of one
 * non-empty part answers that part itself): a flat string of its own, never a tree of the fragments it was
 * built from, and never a slice that keeps a larger string alive. The head field always gives two.
 */

/** Where the field starting at `at` begins its text, and how long it is. */
function fieldAt (packed: string, at: number): { start: number, length: number } {
  let length = 0
  let i = at
  for (;;) {
    const c = packed.charCodeAt(i)
    if (c === 58) break // ':'
    if (c < 48 || c > 57) throw new Error('a malformed packed field') // never: only this module builds them
    length = length * 10 + (c - 48)
    i++
  }
  return { start: i + 1, length }
}

/** The text of the field starting at `at`. */
export function fieldText (packed: string, at: number): string {
  const { start, length } = fieldAt(packed, at)
  return copyOf(packed, start, start + length)
}

/** Where the field after the one starting at `at` starts. */
export function nextField (packed: string, at: number): number {
  const { start, length } = fieldAt(packed, at)
  return start + length
}

/** Does the field starting at `at` hold exactly `text`? (No string is made.) */
export function fieldIs (packed: string, at: number, text: string): boolean {
  const { start, length } = fieldAt(packed, at)
  return length === text.length && packed.startsWith(text, start)
}

/**
 * packed.slice(start, end) as a string of its own: V8 makes a slice of 13 characters or more a view that
 * keeps all of `packed` alive; shorter slices are copies, and a join of two of them is a new flat string.
 */
export function copyOf (packed: string, start: number, end: number): string {
  if (end - start < 13) return packed.slice(start, end)
  const middle = (start + end) >>> 1
  return [packed.slice(start, middle), packed.slice(middle, end)].join('')
}

/** `text` as a flat string of its own (a string built in pieces is kept as a tree of them until flattened). */
export function flat (text: string): string {
  return copyOf(text, 0, text.length)
}

/** The parts of one field, for a join. */
function pushField (parts: string[], text: string): void {
  parts.push(String(text.length), ':', text)
}

/** `head` (one field) then the data, packed. */
export function packed (head: string, data: Record<string, string>): string {
  const parts: string[] = []
  pushField(parts, head)
  for (const key of Object.keys(data)) {
    pushField(parts, key)
    pushField(parts, data[key]!)
  }
  return parts.join('')
}

/** The data packed from `at` to the end, as a new object (a key named `__proto__` is an own key like any other). */
export function unpackData (packed: string, at: number): Record<string, string> {
  const data: Record<string, string> = {}
  for (let i = at; i < packed.length;) {
    const key = fieldAt(packed, i)
    const value = fieldAt(packed, key.start + key.length)
    setOwn(data, packed.slice(key.start, key.start + key.length), packed.slice(value.start, value.start + value.length))
    i = value.start + value.length
  }
  return data
}

/** The value of data key `key` packed from `at`, or undefined (the fast path of a read of one key). */
export function dataValue (packed: string, at: number, key: string): string | undefined {
  for (let i = at; i < packed.length;) {
    const isKey = fieldIs(packed, i, key)
    const value = fieldAt(packed, nextField(packed, i))
    if (isKey) return copyOf(packed, value.start, value.start + value.length)
    i = value.start + value.length
  }
  return undefined
}

/**
 * `packed` with its first `at` characters replaced by the field `head` (undefined: kept as they are) and its
 * data patched: a key set to a string is replaced in place or appended, a key set to null is deleted.
 */
export function repacked (packed: string, at: number, head: string | undefined, patch: Record<string, string | null> | null): string {
  const parts: string[] = []
  if (head === undefined) {
    // In two parts: a join of one non-empty part answers that part itself (here a slice of the old string).
    const middle = at >>> 1
    parts.push(packed.slice(0, middle), packed.slice(middle, at))
  } else {
    pushField(parts, head)
  }
  const changes = patch === null ? [] : Object.keys(patch)
  const done = new Set<string>()
  for (let i = at; i < packed.length;) {
    const key = fieldAt(packed, i)
    const value = fieldAt(packed, key.start + key.length)
    const end = value.start + value.length
    const name = changes.length === 0 ? '' : packed.slice(key.start, key.start + key.length)
    if (changes.length !== 0 && Object.hasOwn(patch!, name)) {
      done.add(name)
      const next = patch![name]!
      if (next !== null) {
        pushField(parts, name)
        pushField(parts, next)
      }
    } else {
      parts.push(packed.slice(i, end))
    }
    i = end
  }
  for (const key of changes) {
    const next = patch![key]!
    if (next === null || done.has(key)) continue
    pushField(parts, key)
    pushField(parts, next)
  }
  return parts.join('')
}

/** Sets `key` as an own property: `__proto__` is a key like any other. */
export function setOwn (data: Record<string, string>, key: string, value: string): void {
  if (key === '__proto__') Object.defineProperty(data, key, { value, enumerable: true, writable: true, configurable: true })
  else data[key] = value
}
