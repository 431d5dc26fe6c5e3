/**
 * Issue 11: a commit whose outcome is unknown — it timed out, the store stalled, the connection was lost
 * after the command was sent — may still have been applied. The 503 says nothing was acknowledged; the
 * client keeps its token, and that token must keep working whether or not the rotation happened.
 */
import t from 'tap'
import { MemoryStore, type SessionStore } from '../../index.js'
import { send, serve } from './http.js'

/** A MemoryStore whose commits, while `stalled`, are applied and then reported as failed (a timeout after the fact). */
function maybeApplied (): { store: SessionStore, inner: MemoryStore, set: (stalled: boolean) => void } {
  const inner = new MemoryStore()
  let stalled = false
  const store = new Proxy(inner, {
    get (target, property, receiver) {
      const value = Reflect.get(target, property, receiver)
      if (property === 'commit') {
        return async (...args: unknown[]) => {
          const result = await value.apply(target, args)
          if (stalled) throw new Error('Command timed out')
          return result
        }
      }
      return typeof value === 'function' ? value.bind(target) : value
    }
  })
  return { store, inner, set: (value) => { stalled = value } }
}

t.test('40 users whose commits ran but timed out: 503 each, then every one of them goes on signed in', async (t) => {
  const { store, inner, set } = maybeApplied()
  const served = await serve({ store })
  t.teardown(async () => { await served.close(); await inner.close() })
  const users = await Promise.all(Array.from({ length: 40 }, async (_, i) => {
    const token = (await send(served, 'POST', '/login', undefined, { data: { user: `u${i}` } })).token!
    const acknowledged = await send(served, 'POST', '/me', token, { key: 'saved', value: i })
    t.equal(acknowledged.status, 200)
    return { i, token: acknowledged.token! }
  }))
  set(true)
  const during = await Promise.all(users.map(async (user) => await send(served, 'POST', '/me', user.token, { key: 'maybe', value: user.i })))
  t.same([...new Set(during.map((answer) => answer.status))], [503], 'every request in the stall answered 503')
  t.ok(during.every((answer) => answer.token === undefined), 'no token was sent: the client keeps the one it has')
  t.ok(during.every((answer) => answer.body.code === 'FST_XEMS_STORE_UNAVAILABLE'))
  set(false)
  served.clock.advance(30_000)
  let loggedOut = 0
  for (const user of users) {
    const after = await send(served, 'GET', '/me', user.token)
    if (after.status !== 200) {
      loggedOut++
      continue
    }
    t.equal(after.body.data.saved, user.i, 'the write acknowledged before the stall is there')
    t.equal(after.body.data.maybe, user.i, 'the write whose outcome was unknown did happen here (it may, or may not: never half)')
    t.not(after.token, undefined, 'the client is handed the token the unseen rotation made')
    t.equal((await send(served, 'GET', '/me', after.token)).status, 200)
  }
  t.equal(loggedOut, 0, '0 of 40 users logged out')
  t.notOk(served.logs.some((line) => line.includes('token-reuse')), 'no theft signal')
})
