/** The session cookie as xemsSession writes it: its settled settings and its Set-Cookie text. */

export interface CookieSettings {
  name: string
  path: string
  domain?: string | undefined
  secure: boolean
  sameSite: 'lax' | 'strict' | 'none'
  persistent: boolean
  /** The Set-Cookie attributes after the value, built once (setCookieHeader). */
  tail?: string
}

/**
 * The Set-Cookie value carrying a token, attributes in the order and spelling of the cookie module that
 * @fastify/cookie uses (`name=value; Max-Age=…; Domain=…; Path=…; HttpOnly; Secure; SameSite=…`). A
 * token is base64url and `.`, which cookie encoding leaves as they are.
 */
export function setCookieHeader (cookie: CookieSettings, token: string, maxAge: number | null): string {
  cookie.tail ??= `${cookie.domain === undefined ? '' : `; Domain=${cookie.domain}`}; Path=${cookie.path}; HttpOnly` +
    `${cookie.secure ? '; Secure' : ''}; SameSite=${SAME_SITE[cookie.sameSite]}`
  return maxAge === null ? `${cookie.name}=${token}${cookie.tail}` : `${cookie.name}=${token}; Max-Age=${maxAge}${cookie.tail}`
}

const SAME_SITE = { lax: 'Lax', strict: 'Strict', none: 'None' } as const

export function cookieAttributes (cookie: CookieSettings): {
  path: string
  domain?: string
  secure: boolean
  sameSite: 'lax' | 'strict' | 'none'
  httpOnly: true
} {
  return {
    path: cookie.path,
    secure: cookie.secure,
    sameSite: cookie.sameSite,
    httpOnly: true,
    ...(cookie.domain === undefined ? {} : { domain: cookie.domain })
  }
}
