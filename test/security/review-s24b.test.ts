/**
 * Review s24b: "what a commit may write" (main at 475a7f9: rotation.ts commitChain, its Lua transcription in
 * redis/scripts/commit.ts, engine.ts retiredAfter = admittedAt − 5 s + unseenWindow) attacked as a fixation
 * attacker and as an unlucky user would. Each test states a promise of docs/sessions.md › "A request that
 * loses to a concurrent migration writes nothing" (docs/security.md › Session fixation, docs/stores.md commit
 * row) and FAILED on the code it was written against. Fixed by judging a token the session no longer holds
 * by the session's migration count (contract.ts CommitInput.migrations), not by deadlines from two clocks;
 * kept as regression tests (S24b-5, destroy, see its test). Each runs on MemoryStore and, when Redis is reachable, on
 * RedisStore; the two behave alike in every case but S24b-4 (RedisStore passes it). A randomized differential
 * run of resolve / commit (± rotate, retiredAfter undefined or around now + unseenWindow) / migrate / clock
 * moves on both stores side by side (12 000 steps, not kept here) found no other divergence: the Lua follows
 * commitChain in every branch, and its reply {2, deadline, false} is read as chain null.
 *
 * The judgement of a token the session no longer holds compares deadlines written with two clocks: the
 * migration's (its `now` + its engine's unseenWindow) and the admission's (its `now` − 5 s + its engine's
 * unseenWindow). Whenever the migration's deadline comes out earlier than the admission's bound although the
 * migration came after the admission, and a later rotation prunes the planted token (a retired entry goes at
 * its own deadline), the attacker's in-flight request writes into the migrated session:
 *   S24b-1  two instances whose clocks differ by more than the 5 s margin (the attacker is admitted by the
 *           one that runs ahead; docs/sessions.md says a skew "never" lets such a request write)
 *   S24b-2  one instance whose clock steps back by more than 5 s while the attacker's request is in flight
 *           (an NTP step correction)
 *   S24b-3  two instances with different unseenWindow (a rolling deploy that raises it): no skew at all
 *   S24b-4  retiredAfter NaN (engine.commit called from JavaScript without admittedAt: undefined − 5 s +
 *           unseenWindow) fails OPEN in commitChain (`now >= NaN` and `until > NaN` are both false) and closed
 *           in the Lua (`now < NaN` is false): MemoryStore writes, RedisStore refuses (a divergence)
 *   S24b-5  no clock at all: a planted token's in-flight request that calls xUnlink() (or xLink(), which ends
 *           the request's session first) after the victim signed in ends the victim's signed-in session:
 *           destroyById judges no token, so "a request that loses to a concurrent migration writes nothing"
 *           does not hold for its one write that needs no commit
 *   S24b-6  the same comparison against an honest user: a slow write admitted well after the user's own
 *           sign-in, whose token a busy page prunes while it runs, is refused (401, the upload lost) when the
 *           sign-in ran on an instance with a later clock or a longer unseenWindow
 * In S24b-1…3 and 5 the attacker's request is admitted BEFORE the victim signs in (regenerate) and kept in
 * flight (any route whose request they can hold open after onRequest resolved the session: a slow body).
 */
import type { FastifyInstance } from 'fastify'
import t, { type Test } from 'tap'
import { type SessionStore, type XemsSessionOptions } from '../../index.js'
import { parseSessionToken, recordIdOf, secretKeyOf } from '../../lib/session/token.js'
import { buildApp, login, setCookieToken, type Clock } from '../helpers.js'
import { gate as heldGate } from '../each-store.js'
import { after, get, reviewStores, type StoreFactory } from './review-helpers.js'

const WINDOW = 600_000 // the default unseenWindow

const stores = await reviewStores(t)

interface Instance {
  app: FastifyInstance
  clock: Clock
  /** POST /slow-write waits in its handler (after the session was resolved at onRequest) until `release()`. */
  gate: { entered: Promise<void>, release: () => void }
}

async function instance (t: Test, store: SessionStore, options: XemsSessionOptions = {}): Promise<Instance> {
  const { app, clock } = await buildApp({ store, ...options })
  const { gate, wait } = heldGate()
  // A handler that takes long: for an attacker, any route whose request they can keep in flight (a slow
  // upload after onRequest resolved the session, a long poll) and that writes session data.
  app.post<{ Body: { key: string, value: unknown } }>('/slow-write', async (request) => {
    await wait()
    if (request.session !== null) request.session.data[request.body.key] = request.body.value
    return { ok: true }
  })
  app.post('/slow-logout', async (request, reply) => {
    await wait()
    await reply.xUnlink()
    return { ok: true }
  })
  app.post('/slow-link', async (request, reply) => {
    await wait()
    await reply.xLink({ cart: ['mallory'] })
    return { ok: true }
  })
  t.teardown(async () => { await app.close() })
  return { app, clock, gate }
}

async function shared (t: Test, factory: StoreFactory): Promise<SessionStore> {
  const { store, close } = factory()
  t.teardown(close)
  return store
}

/**
 * The attacker's slow write, sent with the planted token on `on`, waiting in its handler; `signIn` then runs
 * (the victim's regenerate and later requests) and returns the victim's current token; then the write ends.
 */
async function fixation (
  t: Test, on: Instance, planted: string, signIn: () => Promise<string>
): Promise<void> {
  const slow = on.app.inject({ method: 'POST', url: '/slow-write', cookies: { xems: planted }, payload: { key: 'role', value: 'attacker' } })
  await on.gate.entered
  const victim = await signIn()
  on.gate.release()
  const late = await slow
  t.comment(`the attacker's write, admitted before the sign-in, ends ${late.statusCode}`)
  t.equal(setCookieToken(late), undefined, 'the attacker learns no token')
  t.not(late.statusCode, 200, 'a request that lost to a concurrent migration is not acknowledged')
  const me = await get(on.app, '/me', victim)
  t.equal(me.statusCode, 200)
  t.equal(me.json<{ data: Record<string, unknown> }>().data.role, undefined,
    'the attacker\'s data is not in the victim\'s signed-in session (docs/sessions.md: it "never writes into the migrated session")')
}

for (const [name, factory] of stores) {
  t.test(`S24b-1 ${name}: a clock skew of 10 s between two instances lets a planted token's in-flight write into the session its victim signed in to`, async (t) => {
    // docs/sessions.md: "a migration up to 5 s before the admission counts as later, so that a clock skew
    // between instances never lets a request that lost to a migration write". With a skew d > 5 s, a
    // migration on the slow instance within d − 5 s after the admission on the fast one writes a deadline
    // (M + unseenWindow) under the bound (admission − 5 s + unseenWindow): once a rotation prunes the planted
    // token (at its deadline, seen by the fast instance d early), commitChain no longer sees the migration.
    const store = await shared(t, factory)
    const slowHost = await instance(t, store)
    const fastHost = await instance(t, store)
    fastHost.clock.now = slowHost.clock.now + 10_000 // within what NTP-less hosts drift in a few days
    const advance = (ms: number): void => { slowHost.clock.advance(ms); fastHost.clock.advance(ms) }
    const planted = await login(slowHost.app) // the attacker's session, its token planted on the victim
    await fixation(t, fastHost, planted, async () => {
      advance(1000)
      const signedIn = await slowHost.app.inject({ method: 'POST', url: '/regenerate', cookies: { xems: planted } })
      t.equal(signedIn.statusCode, 200, 'the victim signs in (regenerate) on the slow instance')
      const w = setCookieToken(signedIn)!
      advance(WINDOW - 8000) // the victim reads for a while; the next request lands on the fast instance
      const next = await get(fastHost.app, '/me', w)
      t.equal(next.statusCode, 200)
      return after(next, w)
    })
  })

  t.test(`S24b-2 ${name}: the engine's clock stepping back 60 s while a planted token's write is in flight lets it write into the migrated session`, async (t) => {
    // One instance. An NTP step correction (or a VM resumed with a fast clock corrected) between the
    // attacker's admission and the victim's sign-in: the migration's deadline comes out 60 s before the
    // admission's bound, and the planted token goes at that deadline.
    const store = await shared(t, factory)
    const host = await instance(t, store)
    const planted = await login(host.app)
    await fixation(t, host, planted, async () => {
      host.clock.advance(-60_000) // the step back
      const signedIn = await host.app.inject({ method: 'POST', url: '/regenerate', cookies: { xems: planted } })
      t.equal(signedIn.statusCode, 200, 'the victim signs in (regenerate)')
      const w = setCookieToken(signedIn)!
      host.clock.advance(WINDOW + 1000) // past the planted token's retired deadline, within the admission's bound
      const next = await get(host.app, '/me', w)
      t.equal(next.statusCode, 200)
      return after(next, w)
    })
  })

  t.test(`S24b-3 ${name}: instances with different unseenWindow (a rolling deploy raising it) let a planted token's write into the migrated session, no skew`, async (t) => {
    // retiredAfter adds the admitting engine's unseenWindow; the migration's deadline adds the migrating
    // engine's. Old instances (10 m) and new ones (30 m) on one store during a deploy: a migration on an old
    // instance after the admission on a new one is invisible to the commit 10 m later.
    const store = await shared(t, factory)
    const old = await instance(t, store)
    const upgraded = await instance(t, store, { unseenWindow: '30m' })
    upgraded.clock.now = old.clock.now
    const advance = (ms: number): void => { old.clock.advance(ms); upgraded.clock.advance(ms) }
    const planted = await login(old.app)
    await fixation(t, upgraded, planted, async () => {
      advance(1000)
      const signedIn = await old.app.inject({ method: 'POST', url: '/regenerate', cookies: { xems: planted } })
      t.equal(signedIn.statusCode, 200, 'the victim signs in (regenerate) on an old instance')
      const w = setCookieToken(signedIn)!
      advance(WINDOW + 1000)
      const next = await get(old.app, '/me', w)
      t.equal(next.statusCode, 200)
      return after(next, w)
    })
  })
}

for (const [name, factory] of stores) {
  t.test(`S24b-4 ${name}: a commit whose migration count is NaN is judged like one without it: a token the migrated session no longer holds writes nothing`, async (t) => {
    // contract.ts CommitInput.migrations: "Without it, a token the session no longer holds never writes";
    // a JavaScript caller may hand anything (the test was first written against retiredAfter, NaN there).
    const store = await shared(t, factory)
    const host = await instance(t, store)
    const planted = await login(host.app)
    const signedIn = await host.app.inject({ method: 'POST', url: '/regenerate', cookies: { xems: planted } })
    t.equal(signedIn.statusCode, 200, 'the victim signs in (regenerate)')
    const w = setCookieToken(signedIn)!
    host.clock.advance(WINDOW + 1000)
    const next = await get(host.app, '/me', w) // a rotation: the planted token goes at its retired deadline
    t.equal(next.statusCode, 200)
    const id = recordIdOf(parseSessionToken(planted)!.locator)
    const committed = await store.commit({
      id, tokenKey: secretKeyOf(planted), patch: { role: JSON.stringify('attacker') }, rotate: null, now: host.clock.now, migrations: Number.NaN
    })
    t.equal(committed.status, 'retired', 'a planted token the migrated session dropped writes nothing, whatever the count says')
    const without = await store.commit({ id, tokenKey: secretKeyOf(planted), patch: null, rotate: null, now: host.clock.now })
    t.equal(without.status, 'retired', 'as without a count')
  })
}

for (const [name, factory] of stores) {
  t.test(`S24b-5 ${name}: a planted token's request in flight across the victim's sign-in cannot end the signed-in session (xUnlink, xLink)`, async (t) => {
    // The attacker keeps a logout (or their own sign-in) in flight with the planted token; the victim signs
    // in (regenerate: the planted token is retired at once); the attacker's request then ends "its" session,
    // which is now the victim's signed-in one. No clock moves.
    for (const url of ['/slow-logout', '/slow-link'] as const) {
      const store = await shared(t, factory)
      const host = await instance(t, store)
      const planted = await login(host.app)
      const slow = host.app.inject({ method: 'POST', url, cookies: { xems: planted } })
      await host.gate.entered
      const signedIn = await host.app.inject({ method: 'POST', url: '/regenerate', cookies: { xems: planted } })
      t.equal(signedIn.statusCode, 200, `${url}: the victim signs in (regenerate)`)
      const w = setCookieToken(signedIn)!
      host.gate.release()
      const late = await slow
      if (url === '/slow-logout') {
        t.equal(late.statusCode, 401, `${url}: the attacker's logout, admitted before the sign-in, does not claim success`)
        t.equal(late.headers['set-cookie'], undefined, `${url}: nor touches the cookie`)
      } else t.equal(late.statusCode, 200, `${url}: the attacker's sign-in, admitted before the sign-in, opens a session of its own`)
      const me = await get(host.app, '/me', w)
      t.equal(me.statusCode, 200, `${url}: the victim's signed-in session survives a request that lost to its migration`)
    }
  })
}

for (const [name, factory] of stores) {
  t.test(`S24b-6 ${name}: an honest slow write admitted well after the user's own sign-in is saved although its token is pruned while it runs`, async (t) => {
    // docs/sessions.md: a request whose rotated token the session pruned while it ran "saves its changes and
    // sends no token, as long as the session did not migrate since the request was admitted" (a migration
    // up to 5 s before the admission counting as later). Here the sign-in came 8 s (skew) or 10 min
    // (unseenWindow) before the admission.
    const variants = [
      { label: 'sign-in on an instance 10 s ahead, the write admitted 8 s later', skew: 10_000, wait: 8000, windows: [undefined, undefined] },
      { label: 'sign-in on an instance with unseenWindow 30m, the write admitted 10 min later on one with 10m', skew: 0, wait: WINDOW, windows: ['30m', undefined] }
    ] as const
    for (const { label, skew, wait, windows } of variants) {
      const store = await shared(t, factory)
      const signInHost = await instance(t, store, windows[0] === undefined ? {} : { unseenWindow: windows[0] })
      const host = await instance(t, store)
      signInHost.clock.now = host.clock.now + skew
      const advance = (ms: number): void => { signInHost.clock.advance(ms); host.clock.advance(ms) }
      const anonymous = await login(host.app)
      const signedIn = await signInHost.app.inject({ method: 'POST', url: '/regenerate', cookies: { xems: anonymous } })
      t.equal(signedIn.statusCode, 200, `${label}: the user signs in`)
      const w = setCookieToken(signedIn)!
      advance(wait)
      const upload = host.app.inject({ method: 'POST', url: '/slow-write', cookies: { xems: w }, payload: { key: 'draft', value: 'saved' } })
      await host.gate.entered
      // The page polls meanwhile, each answer's token used by the next request: w → w1 → w2, then past the
      // grace period one more rotation prunes w.
      let held = after(await get(host.app, '/me', w), w)
      held = after(await get(host.app, '/me', held), held)
      advance(11_000)
      held = after(await get(host.app, '/me', held), held)
      host.gate.release()
      const late = await upload
      t.comment(`${label}: the upload ends ${late.statusCode}`)
      t.equal(late.statusCode, 200, `${label}: the upload is acknowledged`)
      const me = await get(host.app, '/me', held)
      t.equal(me.statusCode, 200)
      t.equal(me.json<{ data: Record<string, unknown> }>().data.draft, 'saved', `${label}: and saved`)
    }
  })
}
