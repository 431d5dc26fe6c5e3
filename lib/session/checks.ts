import { xemsError } from '../errors.js'
import type { EncodedData } from '../store/contract.js'
import { assertNoReservedKey, encodeData, encodeValue } from './data.js'

const SANDBOX_NAME = /^[A-Za-z0-9_:-]{1,64}$/
const MAX_KEY_LENGTH = 512

export function checkSandbox (name: unknown, option: string): string {
  if (typeof name !== 'string' || !SANDBOX_NAME.test(name)) {
    throw xemsError('FST_XEMS_BAD_SANDBOX', [option])
  }
  return name
}

export function checkKey (key: unknown): string {
  if (typeof key !== 'string' || key.length === 0 || key.length > MAX_KEY_LENGTH) {
    throw xemsError('FST_XEMS_BAD_VALUE', ['a key', `it must be a string of 1 to ${MAX_KEY_LENGTH} characters`])
  }
  return key
}

export function checkUserId (userId: unknown): string | undefined {
  if (userId === undefined) return undefined
  if (typeof userId !== 'string' || userId.length === 0 || userId.length > MAX_KEY_LENGTH) {
    throw xemsError('FST_XEMS_BAD_VALUE', ['a userId', `it must be a string of 1 to ${MAX_KEY_LENGTH} characters`])
  }
  return userId
}

/** The application's data, encoded; the reserved device key is not the application's to set. */
export function encodeAppData (data: Record<string, unknown>): EncodedData {
  assertNoReservedKey(data)
  return encodeData(data)
}

/** A value of a sandbox, as the store keeps it (JSON text). */
export function encodeStored (value: unknown, key: string): string {
  const text = encodeValue(value, `value of "${key}"`)
  if (text === undefined) throw xemsError('FST_XEMS_BAD_VALUE', [`value of "${key}"`, 'it is undefined or a function'])
  return text
}
