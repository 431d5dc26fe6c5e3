/**
 * What RedisStore sends and reads besides the sealed values: names that hide what they name, the
 * fixed-width token arguments of the scripts, and the decoding of Redis replies.
 */
import { hash } from 'node:crypto'
import { DEVICE_KEY } from '../contract.js'
import { BOX_LENGTH, KEY_LENGTH } from './scripts/index.js'

/** A reply of a script or command as ioredis returns it (the Buffer variants). */
export type Reply = Buffer | string | number | null | Reply[]

/** A name that does not show what it names: SHA-256 of a label and the value, base64url. */
export function digest (label: string, value: string): string {
  // One one-shot hash of the joined text: the same digest as updating with label, NUL and value in turn.
  const text = label + '\u0000' + value
  return hash('sha256', text, 'base64url')
}

/** The hash field of the device data key (see DEVICE_KEY). */
export const DEVICE_FIELD = `d:${digest('data', DEVICE_KEY)}`

/** An opened data field: 4-byte key length, key, JSON text; null unless it names `field`. */
export function dataPairOf (plain: Buffer, field: string): [string, string] | null {
  if (plain.length < 4) return null
  const end = 4 + plain.readUInt32BE(0)
  if (end > plain.length) return null
  const key = plain.subarray(4, end).toString('utf8')
  if (digest('data', key) !== field) return null
  return [key, plain.subarray(end).toString('utf8')]
}

export function text (reply: Reply | undefined): string {
  if (Buffer.isBuffer(reply)) return reply.toString('utf8')
  if (typeof reply === 'number' || typeof reply === 'string') return String(reply)
  throw new TypeError('RedisStore: unexpected reply from Redis')
}

export function num (reply: Reply | undefined): number {
  return typeof reply === 'number' ? reply : Number(text(reply))
}

export function list (reply: Reply | undefined): Reply[] {
  if (!Array.isArray(reply)) throw new TypeError('RedisStore: unexpected reply from Redis')
  return reply
}

export function buffer (reply: Reply | undefined): Buffer | null {
  return Buffer.isBuffer(reply) ? reply : null
}

const KEY_SHAPE = new RegExp(`^[A-Za-z0-9_-]{${KEY_LENGTH}}$`)
const BOX_SHAPE = new RegExp(`^[A-Za-z0-9_-]{${BOX_LENGTH}}$`)

/**
 * A token key as the scripts store it: fixed width, so the rotation state is sliced, not parsed. The
 * engine's keys (secretKeyOf: 16 bytes, base64url) pass as they are; any other string is mapped to a
 * 16-byte digest, which changes nothing, since keys are only ever compared for equality.
 */
export function keyArg (key: string): string {
  return KEY_SHAPE.test(key) ? key : digest('token-key', key).slice(0, KEY_LENGTH)
}

/** A grace box as successorOf makes it; the scripts store boxes at a fixed width. */
export function boxArg (box: string): string {
  if (!BOX_SHAPE.test(box)) {
    throw new TypeError(`RedisStore: a grace box must be what successorOf returns (${BOX_LENGTH} base64url characters)`)
  }
  return box
}

/** An integer field read as a Buffer, or NaN. */
export function intOf (reply: Buffer | undefined): number {
  return reply === undefined ? Number.NaN : Number(reply.toString('latin1'))
}
