import { openAsTokenHolder } from '../crypto/cipher.js'
import { sessionTokenOf, type ParsedToken } from './token.js'

/** Opens the grace boxes one after another, from the presented token to the current one. */
export function followChain (presented: ParsedToken, chain: string[]): string | null {
  let current = presented.token
  for (const box of chain) {
    const secret = openAsTokenHolder(current, box)
    if (secret === null) return null
    current = sessionTokenOf(presented.locator, secret)
  }
  return current
}
