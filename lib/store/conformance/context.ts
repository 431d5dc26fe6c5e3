/**
 * What the cases of the store conformance suite share: the store under test, each case's context (a
 * fresh store and helpers that build its inputs), the constants and assertions. The cases themselves are
 * in cases-*.ts, one file per topic; index.ts registers them all.
 */
import assert from 'node:assert/strict'
import { successorOf } from '../../crypto/cipher.js'
import { generateLocator, recordIdOf, secretKeyOf, sessionTokenOf } from '../../session/token.js'
import { generateToken } from '../../crypto/random-token.js'
import { type CommitInput, type LimitResult, type SessionStore, type UserLimit } from '../contract.js'

export interface StoreUnderTest {
  store: SessionStore
  /** Called after the case, passed or failed: close the store, drop what it wrote. */
  cleanup: () => Promise<void>
}

/** A store factory: one fresh store per case. */
export type StoreFactory = () => Promise<StoreUnderTest>

export interface StoreConformanceOptions {
  /** Registers one case: node:test's `test`, tap's `t.test`, mocha's `it`, ... */
  test: (name: string, fn: () => Promise<void>) => unknown
}

/** What each case is given: its store and helpers that call it as the engine does. */
/** What a case may give a migration; the rest the context fills in. */
export interface MigrateOptions {
  from: string
  to: string
  newKey?: string
  data?: Record<string, string> | null
  userId?: string
  now?: number
  retiredUntil?: number
  userLimit?: UserLimit
}

/** A session for a case: sandbox, lifetimes (ms), user, data (top-level key → JSON text), creation time. */
export interface CreateOptions {
  sandbox?: string
  idleTtl?: number
  absolute?: number
  userId?: string
  data?: Record<string, string>
  now?: number
}

export interface CaseContext {
  store: SessionStore
  create: (options?: CreateOptions) => Promise<{ id: string, key: string }>
  resolve: (
    id: string, key: string, now?: number, options?: { sandbox?: string, revoke?: boolean, grace?: number }
  ) => ReturnType<SessionStore['resolve']>
  commit: (input: Omit<CommitInput, 'rotate'> & {
    rotate?: string | null
    window?: number
    box?: string
  }) => ReturnType<SessionStore['commit']>
  rotateFrom: (id: string, key: string, now: number, box?: string) => Promise<string>
  migrate: (id: string, key: string, options: MigrateOptions) => Promise<boolean | LimitResult>
}

export const newKey = (): string => secretKeyOf(sessionTokenOf(generateLocator(), generateToken()))
/** A grace box as the engine makes them (the store treats it as opaque text). */
export const newBox = (): string => successorOf(generateToken()).box
export const HOUR = 3_600_000
export const DAY = 24 * HOUR
export const GRACE = 2000
export const WINDOW = 600_000
export const equal = (actual: unknown, expected: unknown, message?: string): void => { assert.strictEqual(actual, expected, message) }
export const same = (actual: unknown, expected: unknown, message?: string): void => { assert.deepStrictEqual(actual, expected, message) }

export function contextOf (store: SessionStore, t0: number): CaseContext {
  async function create (options: CreateOptions = {}): Promise<{ id: string, key: string }> {
    const id = recordIdOf(generateLocator())
    const key = newKey()
    const now = options.now ?? t0
    await store.create({
      id,
      sandbox: options.sandbox ?? 'auth-active',
      tokenKey: key,
      data: options.data ?? { user: '"ada"', n: '1' },
      now,
      idleTtl: options.idleTtl ?? HOUR,
      absoluteExpiresAt: now + (options.absolute ?? 5 * DAY),
      ...(options.userId === undefined ? {} : { userId: options.userId })
    })
    return { id, key }
  }
  const resolve = async (id: string, key: string, now = t0, options: { sandbox?: string, revoke?: boolean, grace?: number } = {}) =>
    await store.resolve({
      id,
      tokenKey: key,
      now,
      gracePeriod: options.grace ?? GRACE,
      revokeOnReuse: options.revoke ?? true,
      ...(options.sandbox === undefined ? {} : { sandbox: options.sandbox })
    })
  const commit: CaseContext['commit'] = async (input) =>
    await store.commit({
      id: input.id,
      tokenKey: input.tokenKey,
      patch: input.patch,
      now: input.now,
      ...(input.migrations === undefined ? {} : { migrations: input.migrations }),
      rotate: input.rotate === undefined || input.rotate === null
        ? null
        : {
            newKey: input.rotate, box: input.box ?? newBox(), unseenWindow: input.window ?? WINDOW
          }
    })
  /** Rotates from `key` (presenting it first, as a request does) and returns the new key. */
  async function rotateFrom (id: string, key: string, now: number, box = newBox()): Promise<string> {
    equal((await resolve(id, key, now)).status, 'live', 'the rotating token is current')
    const next = newKey()
    const result = await commit({ id, tokenKey: key, patch: null, rotate: next, box, now })
    if (result.status !== 'ok' || !result.rotated) {
      throw new Error(`rotation from a current token did not happen: ${JSON.stringify(result)}`)
    }
    return next
  }
  const migrate: CaseContext['migrate'] = async (id, key, options) =>
    await store.migrate({
      id,
      tokenKey: key,
      from: options.from,
      to: options.to,
      newKey: options.newKey ?? newKey(),
      retiredUntil: options.retiredUntil ?? (options.now ?? t0) + WINDOW,
      data: options.data ?? null,
      idleTtl: HOUR,
      now: options.now ?? t0,
      ...(options.userId === undefined ? {} : { userId: options.userId }),
      ...(options.userLimit === undefined ? {} : { userLimit: options.userLimit })
    })
  return { store, create, resolve, commit, rotateFrom, migrate }
}

/** Registers one case: `body` runs with a fresh store from the factory, cleaned up after. */
export type CaseTest = (name: string, body: (context: CaseContext) => Promise<void>) => void
