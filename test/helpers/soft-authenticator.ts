/**
 * A software WebAuthn authenticator for tests: ES256 keys from node:crypto, attestation `none`, and
 * a minimal CBOR encoder (just the types an attestation object and a COSE key use). It produces the
 * JSON that @simplewebauthn/browser would send, so the server verifies real signatures.
 */
import { createHash, generateKeyPairSync, randomBytes, sign, type KeyObject } from 'node:crypto'

type Cbor = number | string | Uint8Array | CborMap | { [key: string]: Cbor }
interface CborMap extends Map<number | string, Cbor> {}

function head (major: number, n: number): Buffer {
  if (n < 24) return Buffer.from([(major << 5) | n])
  if (n < 0x100) return Buffer.from([(major << 5) | 24, n])
  if (n < 0x10000) { const b = Buffer.alloc(3); b[0] = (major << 5) | 25; b.writeUInt16BE(n, 1); return b }
  const b = Buffer.alloc(5); b[0] = (major << 5) | 26; b.writeUInt32BE(n, 1); return b
}

export function cbor (value: Cbor): Buffer {
  if (typeof value === 'number') return value >= 0 ? head(0, value) : head(1, -1 - value)
  if (typeof value === 'string') { const s = Buffer.from(value, 'utf8'); return Buffer.concat([head(3, s.length), s]) }
  if (value instanceof Uint8Array) return Buffer.concat([head(2, value.length), value])
  const entries = value instanceof Map ? [...value.entries()] : Object.entries(value)
  return Buffer.concat([head(5, entries.length), ...entries.flatMap(([k, v]) => [cbor(k), cbor(v)])])
}

const b64u = (b: Uint8Array): string => Buffer.from(b).toString('base64url')
const sha256 = (b: Uint8Array | string): Buffer => createHash('sha256').update(b).digest()

export interface SoftCredential {
  id: Buffer
  privateKey: KeyObject
  publicKey: KeyObject
  rpId: string
  userHandle: string
  counter: number
}

export interface SoftAuthenticatorOptions {
  origin: string
  /** Whether the authenticator verifies the user (the UV flag); default true. */
  userVerification?: boolean
  /** Signature counter step per use; 0 = a counter-less authenticator (like most synced passkeys). Default 1. */
  counterStep?: number
}

export class SoftAuthenticator {
  readonly credentials: SoftCredential[] = []
  origin: string
  userVerification: boolean
  counterStep: number

  constructor (options: SoftAuthenticatorOptions) {
    this.origin = options.origin
    this.userVerification = options.userVerification ?? true
    this.counterStep = options.counterStep ?? 1
  }

  #flags (attested: boolean): number {
    return 0x01 | (this.userVerification ? 0x04 : 0) | (attested ? 0x40 : 0)
  }

  /** navigator.credentials.create, as @simplewebauthn/browser's startRegistration returns it. */
  create (options: { challenge: string, rp: { id?: string }, user: { id: string } }, overrides: { origin?: string, type?: string } = {}): Record<string, unknown> {
    const rpId = options.rp.id!
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' })
    const jwk = publicKey.export({ format: 'jwk' })
    const id = randomBytes(16)
    const cose = cbor(new Map<number, Cbor>([[1, 2], [3, -7], [-1, 1], [-2, Buffer.from(jwk.x!, 'base64url')], [-3, Buffer.from(jwk.y!, 'base64url')]]))
    const counter = this.counterStep
    const count = Buffer.alloc(4); count.writeUInt32BE(counter)
    const idLen = Buffer.alloc(2); idLen.writeUInt16BE(id.length)
    const authData = Buffer.concat([sha256(rpId), Buffer.from([this.#flags(true)]), count, Buffer.alloc(16), idLen, id, cose])
    const clientDataJSON = JSON.stringify({ type: overrides.type ?? 'webauthn.create', challenge: options.challenge, origin: overrides.origin ?? this.origin, crossOrigin: false })
    this.credentials.push({ id, privateKey, publicKey, rpId, userHandle: options.user.id, counter })
    return {
      id: b64u(id),
      rawId: b64u(id),
      type: 'public-key',
      response: {
        clientDataJSON: b64u(Buffer.from(clientDataJSON)),
        attestationObject: b64u(cbor({ fmt: 'none', attStmt: {}, authData })),
        transports: ['internal']
      },
      clientExtensionResults: {},
      authenticatorAttachment: 'platform'
    }
  }

  /**
   * navigator.credentials.get: signs with the first allowed credential it holds (or `credential`),
   * as @simplewebauthn/browser's startAuthentication returns it.
   */
  get (
    options: { challenge: string, rpId?: string, allowCredentials?: Array<{ id: string }> },
    overrides: { origin?: string, type?: string, counter?: number, credential?: SoftCredential, userHandle?: string | null } = {}
  ): Record<string, unknown> {
    const allowed = options.allowCredentials?.map((c) => c.id)
    const credential = overrides.credential ?? this.credentials.find((c) => allowed === undefined || allowed.length === 0 || allowed.includes(b64u(c.id)))
    if (credential === undefined) throw new Error('soft authenticator: no credential for this request')
    credential.counter = overrides.counter ?? credential.counter + this.counterStep
    const count = Buffer.alloc(4); count.writeUInt32BE(credential.counter)
    const authData = Buffer.concat([sha256(options.rpId ?? credential.rpId), Buffer.from([this.#flags(false)]), count])
    const clientDataJSON = Buffer.from(
      JSON.stringify({ type: overrides.type ?? 'webauthn.get', challenge: options.challenge, origin: overrides.origin ?? this.origin, crossOrigin: false })
    )
    const signature = sign('sha256', Buffer.concat([authData, sha256(clientDataJSON)]), credential.privateKey)
    const userHandle = overrides.userHandle === undefined ? credential.userHandle : overrides.userHandle
    return {
      id: b64u(credential.id),
      rawId: b64u(credential.id),
      type: 'public-key',
      response: {
        clientDataJSON: b64u(clientDataJSON),
        authenticatorData: b64u(authData),
        signature: b64u(signature),
        ...(userHandle === null ? {} : { userHandle })
      },
      clientExtensionResults: {},
      authenticatorAttachment: 'platform'
    }
  }
}
