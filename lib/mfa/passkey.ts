/**
 * Passkey (WebAuthn) helpers around @simplewebauthn/server: the stored credential shape, the
 * relying-party options, and the checks whose failures get their own answer (origin, ceremony type,
 * challenge, counter). All CBOR, COSE and attestation work is the library's; the only thing read here
 * is clientDataJSON, which is JSON.
 */
import {
  generateAuthenticationOptions,
  generateRegistrationOptions,
  verifyAuthenticationResponse,
  verifyRegistrationResponse,
  type AuthenticationResponseJSON,
  type PublicKeyCredentialCreationOptionsJSON,
  type PublicKeyCredentialRequestOptionsJSON,
  type RegistrationResponseJSON
} from '@simplewebauthn/server'
import type { Duration } from '../duration.js'
import { badOption, xemsError, type XemsError } from '../errors.js'

/** One registered passkey, as it lives in the user's MfaRecord. Binary fields are base64url. */
export interface PasskeyCredential {
  /** The credential id (base64url), as the authenticator gave it. */
  id: string
  /** The COSE public key (base64url). */
  publicKey: string
  /** The signature counter last seen; 0 for authenticators that do not count (most synced passkeys). */
  counter: number
  transports?: string[] | undefined
  /** Backed up (synced) to a cloud account: a multi-device passkey. */
  backedUp: boolean
  /** The authenticator model (a UUID; all zeros when the authenticator does not say). */
  aaguid: string
  /** The name the user gave it ("Laptop"), at most 64 characters. */
  name: string
  createdAt: number
  lastUsedAt: number | null
}

/** What a user sees in a list of passkeys: everything but the key itself. */
export type PasskeyInfo = Omit<PasskeyCredential, 'publicKey' | 'counter'>

export interface PasskeyOptions {
  /** The relying-party id: the site's registrable domain or a parent of it (`example.com`; `localhost` in development). */
  rpId: string
  /** Shown by the browser when a passkey is created ("Example"). */
  rpName: string
  /** Every origin the ceremonies may run on, exactly (`https://example.com`); each must be on `rpId`. */
  origins: string[]
  /** How long a started ceremony waits for its answer (default `2m`, at most 10 minutes). */
  challengeTtl?: Duration | undefined
  /** Passkeys a user may register (default 10, at most 50). */
  maxPerUser?: number | undefined
}

export interface RelyingParty { rpId: string, rpName: string, origins: string[] }

/** Checks the `passkeys` option at register; every problem names the option to change. */
export function checkRelyingParty (options: PasskeyOptions): RelyingParty {
  if (options === null || typeof options !== 'object') throw badOption('passkeys', 'must be { rpId, rpName, origins }')
  const { rpId, rpName, origins } = options
  if (typeof rpId !== 'string' || !/^(localhost|([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63})$/.test(rpId)) {
    throw badOption('passkeys.rpId', 'must be a lower-case domain name (example.com) or localhost, without scheme or port')
  }
  if (typeof rpName !== 'string' || rpName.length === 0 || rpName.length > 100) {
    throw badOption('passkeys.rpName', 'must be a name of 1 to 100 characters')
  }
  if (!Array.isArray(origins) || origins.length === 0) throw badOption('passkeys.origins', 'must list at least one origin, e.g. [\'https://example.com\']')
  for (const origin of origins) {
    let url: URL
    try { url = new URL(origin) } catch { throw badOption('passkeys.origins', `has ${JSON.stringify(origin)}, which is not an origin`) }
    if (url.origin !== origin) {
      throw badOption(
        'passkeys.origins',
        `has ${JSON.stringify(origin)}: write it as an origin, ${JSON.stringify(url.origin)} (no path, no trailing slash)`
      )
    }
    const host = url.hostname
    if (host !== rpId && !host.endsWith(`.${rpId}`)) {
      throw badOption('passkeys.origins', `has ${origin}, which is not on passkeys.rpId ${rpId}`)
    }
    if (url.protocol !== 'https:' && !(url.protocol === 'http:' && host === 'localhost')) {
      throw badOption('passkeys.origins', `has ${origin}: browsers run WebAuthn on https only (http only on localhost)`)
    }
  }
  return { rpId, rpName, origins: [...origins] }
}

export type CeremonyType = 'webauthn.create' | 'webauthn.get'

/** What clientDataJSON says, read before the library verifies it, to answer each failure precisely. */
export interface ClientData { type: string, challenge: string, origin: string }

const fail = (): XemsError => xemsError('FST_XEMS_PASSKEY_MALFORMED')

const B64URL = /^[A-Za-z0-9_-]{1,8192}$/

/** The client data of a registration or authentication response, or 400 FST_XEMS_PASSKEY_MALFORMED. */
export function readClientData (response: unknown): ClientData {
  const encoded = (response as { response?: { clientDataJSON?: unknown } } | null)?.response?.clientDataJSON
  if (typeof encoded !== 'string' || !B64URL.test(encoded)) throw fail()
  let parsed: unknown
  try { parsed = JSON.parse(Buffer.from(encoded, 'base64url').toString('utf8')) } catch { throw fail() }
  const { type, challenge, origin } = (parsed ?? {}) as Record<string, unknown>
  if (typeof type !== 'string' || typeof challenge !== 'string' || typeof origin !== 'string') throw fail()
  return { type, challenge, origin }
}

/** The credential id a response names (base64url), or 400. */
export function responseCredentialId (response: unknown): string {
  const id = (response as { id?: unknown } | null)?.id
  if (typeof id !== 'string' || !B64URL.test(id) || id.length > 1366) throw fail()
  return id
}

/** The user handle of an authentication response (base64url), or null when the authenticator gave none. */
export function responseUserHandle (response: unknown): string | null {
  const handle = (response as { response?: { userHandle?: unknown } } | null)?.response?.userHandle
  if (handle === undefined || handle === null) return null
  if (typeof handle !== 'string' || !B64URL.test(handle) || handle.length > 86) throw fail()
  return handle
}

/**
 * A signature counter that did not move forward: the credential may have been cloned. Authenticators
 * that keep no counter report 0 every time, and that is allowed (WebAuthn §6.1.1).
 */
export function isCounterRollback (stored: number, presented: number): boolean {
  return (stored > 0 || presented > 0) && presented <= stored
}

export function publicInfo (credential: PasskeyCredential): PasskeyInfo {
  const { publicKey: _key, counter: _counter, ...info } = credential
  return info
}

export async function registrationOptions (rp: RelyingParty, user: {
  handle: string
  name: string
  displayName: string
}, existing: PasskeyCredential[], timeout: number): Promise<PublicKeyCredentialCreationOptionsJSON> {
  return await generateRegistrationOptions({
    rpName: rp.rpName,
    rpID: rp.rpId,
    userID: Buffer.from(user.handle, 'base64url'),
    userName: user.name,
    userDisplayName: user.displayName,
    timeout,
    attestationType: 'none',
    excludeCredentials: existing.map((c) => ({ id: c.id, ...(c.transports === undefined ? {} : { transports: c.transports }) })),
    authenticatorSelection: { residentKey: 'preferred', userVerification: 'preferred' }
  })
}

export async function authenticationOptions (
  rp: RelyingParty, allow: PasskeyCredential[] | null, timeout: number
): Promise<PublicKeyCredentialRequestOptionsJSON> {
  return await generateAuthenticationOptions({
    rpID: rp.rpId,
    timeout,
    userVerification: 'preferred',
    ...(allow === null
      ? {}
      : {
          allowCredentials: allow.map((c) => ({
            id: c.id, ...(c.transports === undefined ? {} : { transports: c.transports as never })
          }))
        })
  })
}

const invalid = (): XemsError => xemsError('FST_XEMS_PASSKEY_INVALID')

/** Verifies a registration response (attestation `none` or any the library accepts, without trust path checks). */
export async function verifyRegistration (
  rp: RelyingParty, response: unknown, challenge: string, now: number, name: string
): Promise<{ credential: PasskeyCredential, userVerified: boolean }> {
  let result
  try {
    result = await verifyRegistrationResponse({
      response: response as RegistrationResponseJSON,
      expectedChallenge: challenge,
      expectedOrigin: rp.origins,
      expectedRPID: rp.rpId,
      requireUserVerification: false
    })
  } catch {
    throw invalid()
  }
  if (!result.verified) throw invalid()
  const info = result.registrationInfo
  const transports = (response as RegistrationResponseJSON).response.transports
  return {
    userVerified: info.userVerified,
    credential: {
      id: info.credential.id,
      publicKey: Buffer.from(info.credential.publicKey).toString('base64url'),
      counter: info.credential.counter,
      ...(Array.isArray(transports) && transports.every((t) => typeof t === 'string') ? { transports: transports.slice(0, 8) } : {}),
      backedUp: info.credentialBackedUp,
      aaguid: info.aaguid,
      name,
      createdAt: now,
      lastUsedAt: null
    }
  }
}

/**
 * Verifies an assertion's signature, origin, RP id and challenge. The library is given counter 0 so
 * that it never refuses on the counter: the caller compares `newCounter` itself, after the signature
 * proved the response genuine, and reports a rollback as such.
 */
export async function verifyAssertion (
  rp: RelyingParty, response: unknown, challenge: string, credential: PasskeyCredential
): Promise<{ newCounter: number, userVerified: boolean, backedUp: boolean }> {
  let result
  try {
    result = await verifyAuthenticationResponse({
      response: response as AuthenticationResponseJSON,
      expectedChallenge: challenge,
      expectedOrigin: rp.origins,
      expectedRPID: rp.rpId,
      credential: { id: credential.id, publicKey: Buffer.from(credential.publicKey, 'base64url'), counter: 0 },
      requireUserVerification: false
    })
  } catch {
    throw invalid()
  }
  if (!result.verified) throw invalid()
  const info = result.authenticationInfo
  return { newCounter: info.newCounter, userVerified: info.userVerified, backedUp: info.credentialBackedUp }
}
