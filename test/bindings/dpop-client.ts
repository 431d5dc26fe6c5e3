/**
 * A DPoP client for tests and for reading (RFC 9449 §4): a key pair of its own, a fresh proof per request
 * (`typ: dpop+jwt`, the public key in the header, `jti`, `htm`, `htu`, `iat`, and `ath` when it presents a
 * token), the server's nonce once one was announced, and the rotating session token in `x-xems-token`.
 * docs/sessions.md shows the same steps for a CLI.
 */
import { randomUUID, createHash } from 'node:crypto'
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK } from 'jose'

export interface ProofOptions {
  /** The session token the request presents (adds `ath`). */
  token?: string | undefined
  nonce?: string | undefined
  /** Seconds since the epoch (default now). */
  iat?: number | undefined
  jti?: string | undefined
}

export class DpopClient {
  readonly alg: string
  readonly #privateKey: CryptoKey
  readonly publicJwk: JWK

  private constructor (alg: string, privateKey: CryptoKey, publicJwk: JWK) {
    this.alg = alg
    this.#privateKey = privateKey
    this.publicJwk = publicJwk
  }

  static async create (alg = 'ES256'): Promise<DpopClient> {
    const { privateKey, publicKey } = await generateKeyPair(alg)
    return new DpopClient(alg, privateKey, await exportJWK(publicKey))
  }

  /** A proof for one request: `method` and the absolute `url` (query and fragment are not signed). */
  async proof (method: string, url: string, options: ProofOptions = {}): Promise<string> {
    const u = new URL(url)
    const claims: Record<string, unknown> = { htm: method, htu: `${u.origin}${u.pathname}` }
    if (options.token !== undefined) claims.ath = createHash('sha256').update(options.token, 'ascii').digest('base64url')
    if (options.nonce !== undefined) claims.nonce = options.nonce
    return await new SignJWT(claims)
      .setProtectedHeader({ alg: this.alg, typ: 'dpop+jwt', jwk: this.publicJwk })
      .setJti(options.jti ?? randomUUID())
      .setIssuedAt(options.iat ?? Math.floor(Date.now() / 1000))
      .sign(this.#privateKey)
  }
}
