/**
 * Type tests of the public API as a consumer sees it (the emitted .d.ts files through the package's
 * exports), run by `npm run test:types` (tsd). They fail when a public type loosens or breaks.
 */
import Fastify, { type FastifyReply, type FastifyRequest, type preHandlerAsyncHookHandler } from 'fastify'
import { expectAssignable, expectError, expectNotAssignable, expectType } from 'tsd'
import {
  MemoryStore,
  xems,
  xemsSession,
  XemsError,
  type XemsDecorator,
  type Duration,
  type SessionBinding,
  type UnreadableBinding,
  type VerifiedDpop,
  type XemsSession,
  type XemsSessionData,
  type XemsSessionOptions,
  type MaxSessionsPerUser,
  type XemsErrorCode,
  type LimitResult,
  type UserLimit
} from 'fastify-xems'
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

// app.xems is the documented session API (docs/sessions.md, "Engine API"), typed XemsDecorator, and no more.
expectType<XemsDecorator>(app.xems)
expectType<XemsDecorator>(xems.forApp(app))
expectType<preHandlerAsyncHookHandler>(app.xems.requireSession('otp-pending'))
expectType<Promise<void>>(app.xems.from('users-registry').set('ada', { name: 'Ada' }, '1h'))
expectType<Promise<{ name: string } | null>>(app.xems.from('users-registry').get<{ name: string }>('ada'))
expectType<Promise<boolean>>(app.xems.from('users-registry').del('ada'))
expectType<Promise<boolean>>(app.xems.from('users-registry').add('ada', 1))
expectType<Promise<unknown>>(app.xems.from('users-registry').take('ada'))
expectType<Promise<string>>(app.xems.createSession('otp-pending', { user: 'ada' }, { ttl: '10m', userId: 'u1' }))
declare const resolved: Awaited<ReturnType<XemsDecorator['resolveSession']>>
expectType<Promise<typeof resolved>>(app.xems.resolveSession('token', { sandbox: 'otp-pending', rotate: true, gracePeriod: '1s' }))
expectType<string | undefined>(resolved?.userId)
expectType<Promise<string | null>>(app.xems.migrate('token', { from: 'otp-pending', to: 'auth-active', data: {}, userId: 'u1' }))
expectType<Promise<boolean>>(app.xems.destroySession('token'))
expectType<Promise<number>>(app.xems.revokeUser('u1', { except: 'public-id' }))
expectType<Promise<boolean>>(app.xems.revokeSession('u1', 'public-id'))
app.get('/devices', async (request) => {
  const sessions = await app.xems.listUserSessions('u1', { current: request })
  expectType<boolean>(sessions[0]!.current)
  return sessions
})
expectType<Promise<{ count: number, resetAt: number }>>(app.xems.hit('my-limit', 60_000))
expectType<Promise<void>>(app.xems.resetCounter('my-limit'))
expectType<XemsDecorator>(app.xems.on('created', (event) => { expectType<string>(event.id) }))
expectType<XemsDecorator>(app.xems.once('security', (event) => { expectAssignable<string>(event.type) }))
expectType<XemsDecorator>(app.xems.off('revoked', (event) => { expectType<number>(event.count) }))
expectError(app.xems.on('no-such-event', () => {}))
expectType<string>(app.xems.defaultSandbox)
expectType<number>(app.xems.maxAge)
expectType<number>(app.xems.gracePeriod)
expectType<number>(app.xems.unseenWindow)
expectType<'revoke' | 'reject'>(app.xems.onReuse)
expectError(app.xems.gracePeriod = 0)
// The engine stays private: its store and its request-path methods are not on app.xems.
expectError(app.xems.store)
expectError(app.xems.open)
expectError(app.xems.commit)
expectError(app.xems.issue)
expectError(app.xems.migrateById)
expectError(app.xems.destroyById)
expectError(app.xems.security)
expectError(app.xems.close)
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
