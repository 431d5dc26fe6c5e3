/**
 * Compile-time checks of the public types (run by `npm run typecheck`, which .ci/run calls), plus a
 * runtime check that the typed data round-trips. Declaration merging types request.session.data.
 */
import Fastify from 'fastify'
import t from 'tap'
import { xemsSession, type XemsSession } from '../index.js'

declare module '../index.js' {
  interface XemsSessionData {
    user?: { id: string, name: string }
    cart?: string[]
  }
}

t.test('request.session.data is typed through declaration merging', async (t) => {
  const app = Fastify()
  await app.register(xemsSession, { cookie: { secure: false } })
  t.teardown(async () => { await app.close() })
  app.post('/login', async (_request, reply) => {
    await reply.xLink({ user: { id: 'u1', name: 'Ada' }, cart: [] }, { userId: 'u1' })
    return {}
  })
  app.post('/cart', { preHandler: app.xems.requireSession() }, async (request) => {
    const session: XemsSession<import('../index.js').XemsSessionData> = request.session!
    const cart: string[] | undefined = session.data.cart
    // @ts-expect-error cart holds strings only
    const wrong: number[] | undefined = session.data.cart
    void wrong
    session.data.cart = [...(cart ?? []), 'book']
    const name: string | undefined = session.data.user?.name
    return { name, cart: session.data.cart }
  })
  const login = await app.inject({ method: 'POST', url: '/login' })
  const token = login.cookies[0]!.value
  const cart = await app.inject({ method: 'POST', url: '/cart', cookies: { xems: token } })
  t.same(cart.json(), { name: 'Ada', cart: ['book'] })
})
