/**
 * Type tests of the public API as a consumer sees it (the emitted .d.ts files through the package's
 * exports), run by `npm run test:types` (tsd). They fail when a public type loosens or breaks.
 */
import Fastify, { type FastifyReply, type FastifyRequest } from 'fastify'
import { expectAssignable, expectError, expectNotAssignable, expectType } from 'tsd'
import { MemoryStore, xemsSession, XemsError, type Duration, type SessionBinding, type UnreadableBinding, type VerifiedDpop, type XemsSession, type XemsSessionData, type XemsSessionOptions, type MaxSessionsPerUser, type XemsErrorCode, type LimitResult, type UserLimit } from 'fastify-xems'
import { hashPassword, xemsMfa, type VerifyResult } from 'fastify-xems/mfa'
import { RedisStore } from 'fastify-xems/redis'
import { PostgresStore } from 'fastify-xems/postgres'
import { runStoreConformance, type StoreFactory } from 'fastify-xems/conformance'
import type pg from 'pg'

declare module 'fastify-xems' {
  interface XemsSessionData {
    userId?: string
    cart?: string[]
  }
}

const app = Fastify()
await app.register(xemsSession, { ttl: '1h', maxAge: '5d', cookie: { secure: true }, store: new MemoryStore() })
await app.register(xemsMfa, { issuer: 'Example', users: { load: async () => null, save: async () => {} } })

// Declaration merging types request.session.data.
app.get('/me', { preHandler: app.xems.requireSession() }, async (request: FastifyRequest) => {
  expectType<XemsSession<XemsSessionData> | null>(request.session)
  const session = request.session!
  expectType<string[] | undefined>(session.data.cart)
  expectError(session.data.cart = [1, 2])
  expectType<string | undefined>(session.data.userId)
  return session.data
})

app.post('/login', async (_request, reply: FastifyReply) => {
  expectType<Promise<void>>(reply.xUnlink())
  await reply.xLink({ userId: 'u1' }, { userId: 'u1' })
  return { ok: true }
})

// Options: durations are strings or milliseconds; a wrong type is refused.
expectAssignable<XemsSessionOptions>({ ttl: '15m', maxAge: 86_400_000 })
expectNotAssignable<XemsSessionOptions>({ ttl: true })

// Key bindings (DBSC, DPoP): opt-in options, the session's binding, the request's verified proof.
expectAssignable<XemsSessionOptions>({ deviceBound: true, dpop: true })
expectAssignable<XemsSessionOptions>({ deviceBound: { cookieLifetime: '5m', algorithms: ['ES256'] }, dpop: { iatWindow: '30s', nonce: { window: '5m' }, required: true } })
expectNotAssignable<XemsSessionOptions>({ deviceBound: { algorithms: ['HS256'] } })
expectNotAssignable<XemsSessionOptions>({ dpop: { iatWindow: true } })
app.get('/binding', async (request: FastifyRequest) => {
  expectType<SessionBinding | UnreadableBinding | null | undefined>(request.session?.binding)
  expectType<VerifiedDpop | null>(request.dpop)
  return null
})
expectAssignable<Duration>('10s')
expectNotAssignable<Duration>({ seconds: 10 })

// The decorators exist on the instance.
expectType<typeof app.xems.requireSession>(app.xems.requireSession)
expectType<Promise<string>>(hashPassword('correct horse battery staple'))

// Errors carry a stable code and a status.
declare const err: XemsError
expectType<number>(err.statusCode)
expectAssignable<string>(err.code)

// The Redis entry point exports the store class.
expectType<'function'>(typeof RedisStore as 'function')
declare const verified: VerifyResult
expectAssignable<object>(verified)

// The PostgreSQL entry point: a store on an app's pg Pool, usable as xemsSession's store; migrate() with no
// argument migrates the schema, with a MigrateInput it is the contract's session migration.
declare const pool: pg.Pool
const postgres = new PostgresStore({ pool, secret: 'x'.repeat(64) })
await app.register(xemsSession, { store: postgres })
expectType<Promise<void>>(postgres.migrate())
expectError(new PostgresStore({ secret: 'x'.repeat(64) }))
// The conformance suite takes a factory and any runner's (name, fn).
const factory: StoreFactory = async () => ({ store: new MemoryStore(), cleanup: async () => {} })
runStoreConformance(factory, { test: (name: string, fn: () => Promise<void>) => { void name; void fn } })
expectError(runStoreConformance(factory))

// maxSessionsPerUser: an object { limit, onLimit }; its refusal is a typed error code.
expectAssignable<XemsSessionOptions>({ maxSessionsPerUser: { limit: 3, onLimit: 'end-oldest' } })
expectAssignable<XemsSessionOptions>({ maxSessionsPerUser: { limit: 3, onLimit: 'refuse' } })
expectNotAssignable<XemsSessionOptions>({ maxSessionsPerUser: 3 })
expectNotAssignable<XemsSessionOptions>({ maxSessionsPerUser: { limit: 3, onLimit: 'oldest' } })
expectNotAssignable<XemsSessionOptions>({ maxSessionsPerUser: { limit: 3 } })
expectAssignable<MaxSessionsPerUser>({ limit: 1, onLimit: 'refuse' })
expectAssignable<XemsErrorCode>('FST_XEMS_SESSION_LIMIT')
expectAssignable<LimitResult>({ status: 'admitted', ended: ['r'] })
expectAssignable<UserLimit>({ max: 2, onLimit: 'end-oldest' })
