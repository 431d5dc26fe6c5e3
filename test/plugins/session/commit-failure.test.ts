import t from 'tap'
import { MemoryStore, type SessionStore } from '../../../index.js'
import { buildApp, setCookieToken } from '../../helpers.js'

t.test('a store that fails while saving answers 503 and leaves the cookie alone', async (t) => {
  const inner = new MemoryStore()
  let failCommit = false
  const store: SessionStore = new Proxy(inner, {
    get (target, property, receiver) {
      const value = Reflect.get(target, property, receiver)
      if (property === 'commit') {
        return async (...args: unknown[]) => {
          if (failCommit) throw new Error('READONLY You can\'t write against a read only replica.')
          return await value.apply(target, args)
        }
      }
      return typeof value === 'function' ? value.bind(target) : value
    }
  })
  const { app } = await buildApp({ store })
  t.teardown(async () => { await app.close(); await inner.close() })
  const token = setCookieToken(await app.inject({ method: 'POST', url: '/login' }))!
  failCommit = true
  const failed = await app.inject({ method: 'POST', url: '/me', cookies: { xems: token }, payload: { key: 'k', value: 1 } })
  t.equal(failed.statusCode, 503)
  t.equal(failed.json().code, 'FST_XEMS_STORE_UNAVAILABLE')
  t.equal(failed.headers['set-cookie'], undefined, 'no new token was issued, the old one stays valid')
  failCommit = false
  const after = await app.inject({ url: '/me', cookies: { xems: token } })
  t.equal(after.statusCode, 200, 'the token still works once the store is back')
  t.same(after.json().data, { user: 'ada' }, 'the failed write was not half-applied')
})
