/**
 * Review s24: the placeholder of dropped retired tokens (rotation.ts DROPPED_KEY, main at 162b2bd,
 * S23-6 fix) attacked as a thief and as an unlucky user would. Each test states a promise of
 * docs/security.md and FAILED on the code it was written against; the placeholder was replaced by a larger
 * bound that fails closed (rotation.ts MAX_RETIRED_TOKENS), and both stay as regression tests. Each runs on MemoryStore and, when
 * Redis is reachable, on RedisStore; the two behave alike in every case (the Lua follows rotation.ts).
 *   S24-1  a thief who regenerates about twice per unseenWindow (not 18) keeps the placeholder alive; the
 *          victim who comes back meanwhile gets "no session", signs in again, and the theft is never
 *          signalled: the thief keeps the session
 *   S24-2  no thief migration at all: an honest app's two regenerates with a busy page between them
 *          (the S23-6 pattern) make a placeholder, and for the next unseenWindow a thief who copied a
 *          request token is not signalled when the victim comes back
 */
import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import t, { type Test } from 'tap'
import { MAX_PAST_TOKENS } from '../../lib/store/contract.js'
import { buildApp, login, type Clock } from '../helpers.js'
import { after, get, reuseLogged, reviewStores, type StoreFactory } from './review-helpers.js'

const GRACE = 10_000
const WINDOW = 600_000

interface Ctx {
  app: FastifyInstance
  clock: Clock
  logs: string[]
}

const stores = await reviewStores(t)

async function build (t: Test, factory: StoreFactory): Promise<Ctx> {
  const { store, close } = factory()
  const { app, clock, logs } = await buildApp({ store })
  t.teardown(async () => { await app.close(); await close() })
  return { app, clock, logs }
}

const codeOf = (response: LightMyRequestResponse): string => response.json<{ code?: string }>().code ?? ''

/** A client that uses the session: each request with the token it holds, keeping what the answer sets. */
class Client {
  constructor (readonly ctx: Ctx, public token: string) {}

  async request (url = '/me'): Promise<LightMyRequestResponse> {
    const response = await get(this.ctx.app, url, this.token)
    this.token = after(response, this.token)
    return response
  }

  /** MAX_PAST_TOKENS requests 100 ms apart (a page that polls): each rotates the token. */
  async burst (t: Test): Promise<void> {
    for (let i = 0; i < MAX_PAST_TOKENS; i++) {
      this.ctx.clock.advance(100)
      t.equal((await this.request()).statusCode, 200)
    }
  }

  async regenerate (t: Test): Promise<void> {
    this.ctx.clock.advance(100)
    const response = await this.ctx.app.inject({ method: 'POST', url: '/regenerate', cookies: { xems: this.token } })
    t.equal(response.statusCode, 200, 'regenerated')
    this.token = after(response, this.token)
  }
}

for (const [name, factory] of stores) {
  t.test(`S24-1 ${name}: a thief who regenerates about twice per unseenWindow keeps a copied session; the victim who comes back is never a theft signal`, async (t) => {
    // docs/security.md › What a migration costs: "a thief who holds the session *and* can make it migrate
    // at least 18 times per unseenWindow, without pause ... defers the theft signal of the victim's
    // dropped token for as long as it keeps that up. The victim is still shut out, and the signal comes
    // the first time the victim's token is presented after the thief stops."
    // Two things do not hold. (1) A migration retires every rotated token still within its deadline
    // too: 8 ordinary requests within the grace period before a regenerate make it retire 9 tokens, so
    // 2 regenerates per unseenWindow (spaced less than unseenWindow / 2) keep more than
    // MAX_RETIRED_TOKENS retired and the placeholder alive for ever; an app that rate-limits its
    // regenerate route below 18 per window, as the doc advises, does not stop it. (2) "No session" is
    // what the victim sees when it comes back: it signs in again, its browser's cookie is replaced, and
    // its old token is never presented again, so the thief need not keep it up: no signal ever comes,
    // and the thief's session is never revoked (the jar thief is meant to have it "until the victim
    // comes back", section What the unseen window costs).
    const ctx = await build(t, factory)
    const { app, clock, logs } = ctx
    const victimToken = after(await get(app, '/me', await login(app)), '')
    // The thief copies the victim's cookie jar (the newest token) a minute later.
    clock.advance(60_000)
    const thief = new Client(ctx, victimToken)
    const started = clock.now
    let regenerates = 0
    // Every 0.45 WINDOW (4.5 min): 8 ordinary requests, then one regenerate. About 2 per window, not 18.
    while (clock.now - started < 2.5 * WINDOW) {
      await thief.burst(t)
      await thief.regenerate(t)
      regenerates++
      clock.advance(0.45 * WINDOW)
    }
    t.comment(`${regenerates} regenerates in ${(clock.now - started) / 60_000} min (${(regenerates * WINDOW / (clock.now - started)).toFixed(1)} per unseenWindow)`)
    // The victim comes back, half an hour after its token was replaced (well past its deadline).
    const back = await get(app, '/me', victimToken)
    t.comment(`the victim comes back: ${back.statusCode} ${codeOf(back)}`)
    t.equal(codeOf(back), 'FST_XEMS_TOKEN_REUSED', 'the victim\'s token, past its deadline, is the theft signal (the thief regenerated far fewer than 18 times per window)')
    // What the victim does with "no session": it signs in again; the old token is gone from its browser.
    const fresh = await login(app)
    t.equal((await get(app, '/me', fresh)).statusCode, 200)
    // The thief stops regenerating and just uses the session, for two more hours.
    for (let i = 0; i < 8; i++) {
      clock.advance(15 * 60_000)
      await thief.request()
    }
    const last = await thief.request()
    t.comment(`the thief, two hours after the victim came back: ${last.statusCode}`)
    t.not(last.statusCode, 200, 'once the victim came back, the thief\'s token no longer opens the session')
    t.ok(reuseLogged(logs), 'the theft was signalled at some point')
  })

  t.test(`S24-2 ${name}: after an honest app's two regenerates, a thief who copied a request token is not signalled when the victim comes back`, async (t) => {
    // docs/security.md › What the unseen window costs: a thief who copies a request's token "can use it
    // while the victim has not made another request ... When the victim comes back, its token is an
    // earlier one: the theft is signalled and the session ends." What a migration costs frames the
    // placeholder's trade-off as the cost of a thief that can migrate 18 times per window. But the
    // placeholder also comes from ordinary use: two regenerates with a page polling between them (the
    // pattern of S23-6, "an app that polls, then regenerates") drop a retired token, and while the
    // placeholder lasts (unseenWindow from the first regenerate) EVERY token the record does not hold
    // answers "no session", also a rotated token pruned after its grace period — the victim's, here.
    // The thief needs no migration at all, and the session is not revoked.
    const ctx = await build(t, factory)
    const { app, clock, logs } = ctx
    const victim = new Client(ctx, await login(app))
    await victim.burst(t)
    await victim.regenerate(t) // e.g. a step-up
    await victim.burst(t)
    await victim.regenerate(t) // e.g. another step-up, seconds later
    const requestToken = victim.token
    t.equal((await victim.request()).statusCode, 200, 'the victim\'s last request')
    const held = victim.token // what the victim's browser holds, never presented yet
    // A minute later the thief replays the request token copied from a log of Cookie headers.
    clock.advance(60_000)
    const thief = new Client(ctx, requestToken)
    const stolen = await thief.request()
    t.equal(stolen.statusCode, 200, 'documented cost: within the unseen window the copy opens the session')
    t.equal(thief.token, held, '…and the thief is handed the current token')
    for (let i = 0; i < 3; i++) {
      clock.advance(GRACE + 5_000)
      t.equal((await thief.request()).statusCode, 200)
    }
    // The victim comes back 5 minutes after its last request: its token is an earlier one.
    clock.advance(4 * 60_000)
    const back = await get(app, '/me', held)
    t.comment(`the victim comes back: ${back.statusCode} ${codeOf(back)}`)
    t.equal(codeOf(back), 'FST_XEMS_TOKEN_REUSED', 'the victim\'s earlier token is the theft signal')
    t.ok(reuseLogged(logs), 'the theft is signalled')
    // The victim signs in again; the thief carries on.
    await login(app)
    clock.advance(30 * 60_000)
    const later = await thief.request()
    t.not(later.statusCode, 200, 'and the session ended: the thief\'s token no longer opens it')
  })
}
