/**
 * What a user gets when xemsMfa is registered without xemsSession where it can see it: Fastify's own
 * dependency error (xemsMfa declares `dependencies: ['xems-session']`), at register, before anything
 * of xemsMfa runs; and that a parent's xemsSession is enough.
 */
import Fastify, { type FastifyInstance } from 'fastify'
import t from 'tap'
import { xemsSession } from '../../../index.js'
import { xemsMfa, type XemsMfaOptions } from '../../../plugins/mfa/index.js'

const options: XemsMfaOptions = { issuer: 'X', users: { load: async () => null, save: async () => {} } }
const missing = {
  code: 'FST_ERR_PLUGIN_DEPENDENCY_NOT_REGISTERED',
  message: "The dependency 'xems-session' of plugin 'xems-mfa' is not registered"
}

t.test('without xemsSession: Fastify refuses xemsMfa at register and names the missing plugin', async (t) => {
  const app = Fastify()
  t.teardown(async () => { await app.close() })
  await t.rejects(async () => { await app.register(xemsMfa, options); await app.ready() }, missing)
  t.notOk(app.hasDecorator('xemsMfa'))
})

t.test('xemsSession registered after xemsMfa is too late', async (t) => {
  const app = Fastify()
  t.teardown(async () => { await app.close() })
  app.register(xemsMfa, options)
  app.register(xemsSession)
  await t.rejects(async () => { await app.ready() }, missing)
})

t.test('xemsSession in a sibling context does not count: it must be on the instance or a parent', async (t) => {
  const app = Fastify()
  t.teardown(async () => { await app.close() })
  app.register(async (sibling) => { await sibling.register(xemsSession) })
  app.register(async (child) => { await child.register(xemsMfa, options) })
  await t.rejects(async () => { await app.ready() }, missing)
})

t.test('xemsSession on a parent is enough: xemsMfa decorates its own context', async (t) => {
  const app = Fastify()
  t.teardown(async () => { await app.close() })
  await app.register(xemsSession)
  let child: FastifyInstance | undefined
  await app.register(async (routes) => {
    await routes.register(xemsMfa, options)
    child = routes
  })
  await app.ready()
  t.equal(typeof child!.xemsMfa.begin, 'function')
  t.notOk(app.hasDecorator('xemsMfa'), 'not on the parent')
})
