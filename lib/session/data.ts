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

/** Rebuilds the application's object; keys are defined as own data properties, so `__proto__` is just a key. */
export function decodeData (encoded: EncodedData): Record<string, unknown> {
  const data: Record<string, unknown> = {}
  for (const key of Object.keys(encoded)) {
    Object.defineProperty(data, key, { value: JSON.parse(encoded[key]!), enumerable: true, writable: true, configurable: true })
  }
  return data
}

/** The keys whose JSON text differs from what was loaded; null when nothing changed. */
export function diffData (original: EncodedData, data: Record<string, unknown>): DataPatch | null {
  const patch: DataPatch = Object.create(null)
  let changed = false
  for (const key of Object.keys(data)) {
    const text = encodeValue(data[key], `data.${key}`)
    if (text === undefined ? Object.hasOwn(original, key) : !Object.hasOwn(original, key) || original[key] !== text) {
      patch[key] = text ?? null
      changed = true
    }
  }
  for (const key of Object.keys(original)) {
    if (!Object.hasOwn(data, key)) {
      patch[key] = null
      changed = true
    }
  }
  return changed ? patch : null
}

/** The data keys reserved for the library's own records; applications cannot set them. */
export const RESERVED_KEYS: readonly string[] = [DEVICE_KEY, BINDING_KEY]

/**
 * The stored data split into the application's part, the device record's JSON text (DEVICE_KEY) and the
 * key binding's JSON text (BINDING_KEY).
 */
export function splitDevice (encoded: EncodedData): { app: EncodedData, device: string | undefined, binding: string | undefined } {
  if (!Object.hasOwn(encoded, DEVICE_KEY) && !Object.hasOwn(encoded, BINDING_KEY)) return { app: encoded, device: undefined, binding: undefined }
  const app: EncodedData = Object.create(null)
  for (const key of Object.keys(encoded)) if (!RESERVED_KEYS.includes(key)) app[key] = encoded[key]!
  return { app, device: encoded[DEVICE_KEY], binding: encoded[BINDING_KEY] }
}

/** Refuses data in which the application set one of the library's reserved keys (device, binding). */
export function assertNoReservedKey (data: unknown): void {
  if (data === null || typeof data !== 'object') return
  const reserved = RESERVED_KEYS.find((key) => Object.hasOwn(data, key))
  if (reserved !== undefined) {
    throw xemsError('FST_XEMS_BAD_VALUE', [`session data key "${reserved}"`, 'it is reserved for the library\'s own records'])
  }
}
