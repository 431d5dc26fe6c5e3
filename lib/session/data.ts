import { xemsError } from '../errors.js'
import { BINDING_KEY, DEVICE_KEY, type DataPatch, type EncodedData } from '../store/contract.js'

/**
 * Session data as the application sees it (an object of JSON values) and as stores keep it
 * (top-level key → JSON text). Keeping the stored text of each key lets a request's changes be found
 * by comparing texts and committed as a patch of the keys it changed.
 */
export function encodeData (data: unknown, option = 'data'): EncodedData {
  if (data === null || typeof data !== 'object' || Array.isArray(data)) {
    throw xemsError('FST_XEMS_BAD_VALUE', [`session ${option}`, 'it must be a plain object'])
  }
  const encoded: EncodedData = Object.create(null)
  for (const [key, value] of Object.entries(data)) {
    const text = encodeValue(value, `${option}.${key}`)
    if (text !== undefined) encoded[key] = text
  }
  return encoded
}

/** The JSON text of a value, or undefined for values JSON drops (undefined, functions). */
export function encodeValue (value: unknown, where: string): string | undefined {
  try {
    return JSON.stringify(value)
  } catch (err) {
    throw xemsError('FST_XEMS_BAD_VALUE', [where, 'it is not JSON-serialisable'], { cause: err })
  }
}

/**
 * Rebuilds the application's object from stored data, leaving out the library's reserved keys (device
 * record, key binding). `__proto__` is defined as an own data property: just a key.
 */
export function decodeData (encoded: EncodedData): Record<string, unknown> {
  const data: Record<string, unknown> = {}
  for (const key of Object.keys(encoded)) {
    if (isReservedKey(key)) continue
    const value: unknown = JSON.parse(encoded[key]!)
    if (key === '__proto__') Object.defineProperty(data, key, { value, enumerable: true, writable: true, configurable: true })
    else data[key] = value
  }
  return data
}

/**
 * The keys whose JSON text differs from what was loaded; null when nothing changed. `original` may hold
 * the reserved keys (they are not the application's: never patched away here); a reserved key the
 * application put in `data` is always in the patch, so that assertNoReservedKey refuses it.
 */
export function diffData (original: EncodedData, data: Record<string, unknown>): DataPatch | null {
  const patch: DataPatch = Object.create(null)
  let changed = false
  for (const key of Object.keys(data)) {
    const text = encodeValue(data[key], `data.${key}`)
    if (isReservedKey(key) || (text === undefined
      ? Object.hasOwn(
        original, key
      )
      : !Object.hasOwn(original, key) || original[key] !== text)) {
      patch[key] = text ?? null
      changed = true
    }
  }
  for (const key of Object.keys(original)) {
    if (!isReservedKey(key) && !Object.hasOwn(data, key)) {
      patch[key] = null
      changed = true
    }
  }
  return changed ? patch : null
}

/** The data keys reserved for the library's own records; applications cannot set them. */
export const RESERVED_KEYS: readonly string[] = [DEVICE_KEY, BINDING_KEY]

function isReservedKey (key: string): boolean {
  return key === DEVICE_KEY || key === BINDING_KEY
}

/** Refuses data in which the application set one of the library's reserved keys (device, binding). */
export function assertNoReservedKey (data: unknown): void {
  if (data === null || typeof data !== 'object') return
  const reserved = RESERVED_KEYS.find((key) => Object.hasOwn(data, key))
  if (reserved !== undefined) {
    throw xemsError('FST_XEMS_BAD_VALUE', [`session data key "${reserved}"`, 'it is reserved for the library\'s own records'])
  }
}
