/**
 * Fields packed into one string, as a MemoryStore record keeps its current token key and its data
 * (record.ts). A session's data, key → JSON text, is its fields two by two after the token key (the head):
 * `<head><length>user<length>{"id":…}`. One string instead of an object with a property per key and a
 * string per value: a string header (16 B) and an object (24 B + 8 B per key) less per session, which is
 * most of what a million small sessions cost.
 *
 * A field is its length then its text, so any text fits (NUL, digits, separators included). A length
 * under 0xF0 is one character of that code; a larger one is the character 0xF0 + k then k characters of
 * 8 bits each, most significant first (k ≤ 4). Every character of the framing is under 0x100, so a packed
 * string is one byte per character unless the data itself has wider characters. The head is a field, or,
 * for a token key of 22 characters of canonical base64url (every key the engine makes: 16 bytes of a
 * SHA-256), 0xFF then those 16 bytes as 16 characters: 6 characters less.
 *
 * Every packed string is built by `Array.prototype.join` of two or more non-empty parts (a join of one
 * non-empty part answers that part itself): a flat string of its own, never a tree of the fragments it was
 * built from, and never a slice that keeps a larger string alive.
 */

const RAW_KEY = 0xFF
/** The prefix of the library's own data keys (contract.ts DEVICE_KEY, BINDING_KEY). */
const RESERVED_PREFIX = '$xems:'
const RAW_KEY_BYTES = 16
const LONG = 0xF0

/** A length as the framing writes it. */
function lengthText (n: number): string {
  if (n < LONG) return String.fromCharCode(n)
  const bytes: number[] = []
  for (let rest = n; rest > 0; rest = Math.floor(rest / 256)) bytes.unshift(rest % 256)
  return String.fromCharCode(LONG + bytes.length, ...bytes)
}

/** Where the field starting at `at` begins its text, and how long it is. */
function fieldAt (packed: string, at: number): { start: number, length: number } {
  const c = packed.charCodeAt(at)
  if (c < LONG) return { start: at + 1, length: c }
  const k = c - LONG
  if (k < 1 || k > 4) throw new Error('a malformed packed field') // never: only this module builds them
  let length = 0
  for (let i = 1; i <= k; i++) length = length * 256 + packed.charCodeAt(at + i)
  return { start: at + 1 + k, length }
}

/** The text of the field starting at `at`. */
function fieldText (packed: string, at: number): string {
  const { start, length } = fieldAt(packed, at)
  return copyOf(packed, start, start + length)
}

/** Where the field after the one starting at `at` starts. */
function nextField (packed: string, at: number): number {
  const { start, length } = fieldAt(packed, at)
  return start + length
}

/** Does the field starting at `at` hold exactly `text`? (No string is made.) */
function fieldIs (packed: string, at: number, text: string): boolean {
  const { start, length } = fieldAt(packed, at)
  return length === text.length && packed.startsWith(text, start)
}

/** The 16 bytes of `key` as 16 characters, when it is 22 characters of canonical base64url; else null. */
function rawKey (key: string): string | null {
  if (key.length !== 22) return null
  // 22 characters → 16 bytes, without a Buffer (this runs on every rotation); a character outside
  // base64url, or low bits in the last one that no byte keeps (not the canonical text of its bytes), and
  // the key is kept as text.
  const codes: number[] = []
  let acc = 0
  let bits = 0
  for (let i = 0; i < 22; i++) {
    const c = key.charCodeAt(i)
    const sextet = c < 128 ? SEXTET[c]! : -1
    if (sextet < 0) return null
    acc = ((acc << 6) | sextet) & 0xFFFF
    bits += 6
    if (bits >= 8) {
      bits -= 8
      codes.push((acc >> bits) & 255)
    }
  }
  if ((acc & ((1 << bits) - 1)) !== 0) return null
  return String.fromCharCode(...codes)
}

/** Where the data starts, after the head. */
export function headEnd (packed: string): number {
  return packed.charCodeAt(0) === RAW_KEY ? 1 + RAW_KEY_BYTES : nextField(packed, 0)
}

const BASE64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'
/** Character code → its 6 bits in base64url, or −1. */
const SEXTET = new Int8Array(128).fill(-1)
for (let i = 0; i < 64; i++) SEXTET[BASE64URL.charCodeAt(i)] = i

/** The token key the head holds, as a string of its own. */
export function headKey (packed: string): string {
  if (packed.charCodeAt(0) !== RAW_KEY) return fieldText(packed, 0)
  // 16 bytes → 22 characters of base64url, without a Buffer (this runs on every request).
  const codes: number[] = []
  let acc = 0
  let bits = 0
  for (let i = 1; i <= RAW_KEY_BYTES; i++) {
    acc = ((acc << 8) | packed.charCodeAt(i)) & 0xFFFF
    bits += 8
    while (bits >= 6) {
      bits -= 6
      codes.push(BASE64URL.charCodeAt((acc >> bits) & 63))
    }
  }
  codes.push(BASE64URL.charCodeAt((acc << (6 - bits)) & 63))
  return String.fromCharCode(...codes)
}

/** Does the head hold exactly `key`? (No string is made.) */
export function headIs (packed: string, key: string): boolean {
  if (packed.charCodeAt(0) !== RAW_KEY) return fieldIs(packed, 0, key)
  if (key.length !== 22) return false
  let acc = 0
  let bits = 0
  let at = 1
  for (let i = 0; i < 22; i++) {
    const c = key.charCodeAt(i)
    const sextet = c < 128 ? SEXTET[c]! : -1
    if (sextet < 0) return false
    acc = ((acc << 6) | sextet) & 0xFFFF
    bits += 6
    if (bits >= 8) {
      bits -= 8
      if (((acc >> bits) & 255) !== packed.charCodeAt(at++)) return false
    }
  }
  // The bits of the last character that no byte keeps are zero in the canonical key, the only one kept as bytes.
  return (acc & ((1 << bits) - 1)) === 0
}

function pushHead (parts: string[], key: string): void {
  const raw = rawKey(key)
  if (raw === null) pushField(parts, key)
  else parts.push(String.fromCharCode(RAW_KEY), raw)
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
  parts.push(lengthText(text.length), text)
}

/** The token key `head` then the data, packed. */
export function packed (head: string, data: Record<string, string>): string {
  const parts: string[] = []
  pushHead(parts, head)
  for (const key of Object.keys(data)) {
    pushField(parts, key)
    pushField(parts, data[key]!)
  }
  return parts.join('')
}

/**
 * The data packed from `at` to the end, as a new object (a key named `__proto__` is an own key like any
 * other), for one request. Values may be slices of `packed` (V8 makes a slice of 13 characters or more a
 * view that keeps the whole string alive): a request holds them only while it runs. The library's own
 * records (keys starting `$xems:`) are strings of their own: the device cache of lib/device.ts keeps its
 * text beyond the request.
 */
export function unpackData (packed: string, at: number): Record<string, string> {
  const data: Record<string, string> = {}
  for (let i = at; i < packed.length;) {
    const key = fieldAt(packed, i)
    const value = fieldAt(packed, key.start + key.length)
    const name = copyOf(packed, key.start, key.start + key.length)
    const end = value.start + value.length
    setOwn(data, name, name.startsWith(RESERVED_PREFIX) ? copyOf(packed, value.start, end) : packed.slice(value.start, end))
    i = end
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
 * `packed` with its first `at` characters (the head) replaced by the token key `head` (undefined: kept as
 * they are) and its data patched: a key set to a string is replaced in place or appended, a key set to
 * null is deleted.
 */
export function repacked (packed: string, at: number, head: string | undefined, patch: Record<string, string | null> | null): string {
  const parts: string[] = []
  if (head === undefined) {
    // In two parts: a join of one non-empty part answers that part itself (here a slice of the old string).
    const middle = at >>> 1
    parts.push(packed.slice(0, middle), packed.slice(middle, at))
  } else {
    pushHead(parts, head)
  }
  // A new head, the data as it was (a rotation): the rest in one slice, which the join copies.
  if (patch === null) {
    if (at < packed.length) parts.push(packed.slice(at))
    return parts.join('')
  }
  const changes = Object.keys(patch)
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
