import Bowser from 'bowser'
import { xemsError } from './errors.js'
import { DEVICE_KEY } from './store/contract.js'

/**
 * What a session records about the device that holds it, for "Your devices" lists and theft signals.
 * Kept inside the session's data under a reserved key (DEVICE_KEY), so every store seals it with the
 * rest of the data and it lives and dies with the session. Bounded: the raw user agent is cut to
 * MAX_USER_AGENT_BYTES, the parsed names to 64 characters, so one record is at most about 900 bytes.
 *
 * The user agent is parsed with bowser (MIT, maintained, no native code): at creation, and again only
 * when a later request of the session comes with another user agent. ua-parser-js was the other
 * candidate; its current major (v2) is AGPL-3.0, which an MIT library cannot pull into its users' apps.
 */
export { DEVICE_KEY }
export const MAX_USER_AGENT_BYTES = 512
const MAX_NAME_LENGTH = 64
/** The longest IP text (an IPv6 address with a zone id is at most about 60 characters). */
const MAX_IP_LENGTH = 64

/** How the user signed in to this session. */
export type SignInMethod = 'password' | 'totp' | 'recovery-code' | 'remembered-device' | 'passkey' | 'other'
const SIGN_IN_METHODS: readonly string[] = ['password', 'totp', 'recovery-code', 'remembered-device', 'passkey', 'other']

export type DeviceType = 'desktop' | 'mobile' | 'tablet' | 'tv' | 'bot' | 'unknown'

export interface DeviceInfo {
  /** The raw User-Agent header, cut to 512 bytes ('' when none was sent). */
  userAgent: string
  /** Parsed from the user agent: 'Chrome', 'Firefox', … ('' when unknown). */
  browser: string
  browserVersion: string
  os: string
  type: DeviceType
  /** The client's IP as Fastify sees it (honours `trustProxy`); absent when IP recording is off. */
  ip?: string
  /** How the user signed in, once known. */
  signIn?: SignInMethod
}

/** The device of a request: parsed user agent, IP unless `recordIp` is false. */
export function deviceOf (userAgent: unknown, ip: unknown, recordIp: boolean, signIn?: SignInMethod): DeviceInfo {
  const ua = cutUtf8(typeof userAgent === 'string' ? userAgent : '', MAX_USER_AGENT_BYTES)
  const device: DeviceInfo = { userAgent: ua, ...parseUserAgent(ua) }
  if (recordIp && typeof ip === 'string' && ip.length > 0) device.ip = ip.slice(0, MAX_IP_LENGTH)
  if (signIn !== undefined) device.signIn = signIn
  return device
}

/**
 * The device after a request of the session, or null when nothing changed (the common case: two string
 * comparisons). A new user agent is parsed again; a new IP replaces the old one.
 */
export function deviceAfterUse (device: DeviceInfo, userAgent: unknown, ip: unknown, recordIp: boolean): DeviceInfo | null {
  const ua = typeof userAgent === 'string' ? userAgent : ''
  const sameUa = device.userAgent === ua || (ua.length > MAX_USER_AGENT_BYTES && device.userAgent === cutUtf8(ua, MAX_USER_AGENT_BYTES))
  const newIp = recordIp && typeof ip === 'string' && ip.length > 0 ? ip.slice(0, MAX_IP_LENGTH) : undefined
  if (sameUa && device.ip === newIp) return null
  const next = sameUa ? { ...device } : { ...device, ...deviceOf(ua, undefined, false) }
  if (newIp === undefined) delete next.ip
  else next.ip = newIp
  return next
}

export function parseUserAgent (ua: string): Pick<DeviceInfo, 'browser' | 'browserVersion' | 'os' | 'type'> {
  if (ua === '') return { browser: '', browserVersion: '', os: '', type: 'unknown' }
  let parsed: Bowser.Parser.ParsedResult
  try {
    parsed = Bowser.parse(ua)
  } catch {
    return { browser: '', browserVersion: '', os: '', type: 'unknown' }
  }
  const platform = parsed.platform?.type
  const known = platform === 'desktop' || platform === 'mobile' || platform === 'tablet' || platform === 'tv' || platform === 'bot'
  const type: DeviceType = known ? platform : 'unknown'
  return {
    browser: name(parsed.browser?.name),
    browserVersion: name(parsed.browser?.version),
    os: name([parsed.os?.name, parsed.os?.versionName ?? parsed.os?.version].filter(Boolean).join(' ')),
    type
  }
}

/** The stored JSON text of a device. */
export function encodeDevice (device: DeviceInfo): string {
  return JSON.stringify(device)
}

/** Device records decoded lately, by their text: most requests of a session present the same record. */
const SHARED_DEVICES = new Map<string, Readonly<DeviceInfo>>()
/** At most this many records are kept (about 0.4 MB): a cache, so a miss only costs the decode. */
const SHARED_DEVICES_MAX = 1024

/**
 * decodeDevice, for a reader that never changes the record in place (it replaces it): the same text
 * gives the same frozen object, decoded once while it stays among the last SHARED_DEVICES_MAX texts.
 */
export function decodeSharedDevice (text: string | undefined): Readonly<DeviceInfo> | null {
  if (text === undefined) return null
  const known = SHARED_DEVICES.get(text)
  if (known !== undefined) return known
  const device = decodeDevice(text)
  if (device === null) return null
  Object.freeze(device)
  if (SHARED_DEVICES.size >= SHARED_DEVICES_MAX) SHARED_DEVICES.delete(SHARED_DEVICES.keys().next().value!)
  SHARED_DEVICES.set(text, device)
  return device
}

/** A stored device, checked field by field; null when absent or not one. */
export function decodeDevice (text: string | undefined): DeviceInfo | null {
  if (text === undefined) return null
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch {
    return null
  }
  if (value === null || typeof value !== 'object') return null
  const v = value as Record<string, unknown>
  const str = (x: unknown): string => typeof x === 'string' ? x : ''
  const device: DeviceInfo = {
    userAgent: str(v.userAgent),
    browser: str(v.browser),
    browserVersion: str(v.browserVersion),
    os: str(v.os),
    type: (['desktop', 'mobile', 'tablet', 'tv', 'bot'].includes(str(v.type)) ? v.type : 'unknown') as DeviceType
  }
  if (typeof v.ip === 'string') device.ip = v.ip
  if (typeof v.signIn === 'string' && SIGN_IN_METHODS.includes(v.signIn)) device.signIn = v.signIn as SignInMethod
  return device
}

export function checkSignIn (value: unknown): SignInMethod | undefined {
  if (value === undefined) return undefined
  if (typeof value !== 'string' || !SIGN_IN_METHODS.includes(value)) {
    throw xemsError('FST_XEMS_BAD_VALUE', ['signIn', `it must be one of ${SIGN_IN_METHODS.join(', ')}`])
  }
  return value as SignInMethod
}

function name (value: string | undefined): string {
  return typeof value === 'string' ? value.slice(0, MAX_NAME_LENGTH) : ''
}

/** The longest prefix of `text` that is at most `max` bytes of UTF-8, cut at a character boundary. */
function cutUtf8 (text: string, max: number): string {
  if (text.length * 3 <= max) return text
  const bytes = Buffer.from(text, 'utf8')
  if (bytes.length <= max) return text
  let end = max
  while (end > 0 && (bytes[end]! & 0xc0) === 0x80) end--
  return bytes.subarray(0, end).toString('utf8')
}
