import { isXemsError, xemsError } from '../errors.js'

/** What a store's failure is thrown as: a 503 FST_XEMS_STORE_UNAVAILABLE; our own errors as they are. */
export function storeFailure (err: unknown): unknown {
  return isXemsError(err) ? err : xemsError('FST_XEMS_STORE_UNAVAILABLE', [], { cause: err })
}

/** Store failures become 503 errors with a stable code; our own errors pass through. */
export async function callStore<T> (operation: () => Promise<T>): Promise<T> {
  try {
    return await operation()
  } catch (err) {
    throw storeFailure(err)
  }
}
