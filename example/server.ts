/**
 * The example app: sessions on the embedded store, rotated on every request.
 *   npm start            → http://localhost:3000
 * PORT changes the port. Uses only the package's public exports.
 */
import Fastify, { type FastifyInstance } from 'fastify'
import { xemsSession } from 'fastify-xems'
import { PAGE } from './page.js'

declare module 'fastify-xems' {
  interface XemsSessionData {
    name?: string
    visits?: number
  }
}

export async function buildExample (): Promise<FastifyInstance> {
  const app = Fastify({ logger: { level: process.env.LOG_LEVEL ?? 'info' } })
  await app.register(xemsSession, {
    sandbox: 'auth-active',
    ttl: '1h',
    maxAge: '5d',
    // Plain http://localhost: browsers drop Secure cookies on http, so the example turns it off
    // explicitly. Behind HTTPS keep the default (secure: true).
    cookie: { name: 'xems', secure: false, sameSite: 'lax' },
    createLimit: { max: 20, window: '1m' }
  })

  app.get('/', async (_request, reply) => await reply.type('text/html; charset=utf-8').send(PAGE))

  app.post<{ Body: { name?: unknown } }>('/api/login', async (request, reply) => {
    const name = typeof request.body?.name === 'string' ? request.body.name.trim().slice(0, 64) : ''
    if (name === '') return await reply.code(400).send({ error: 'a name is required' })
    await reply.xLink({ name, visits: 0 }, { userId: name.toLowerCase() })
    return { name }
  })

  app.get('/api/me', { preHandler: app.xems.requireSession() }, async (request) => {
    const session = request.session!
    session.data.visits = (session.data.visits ?? 0) + 1
    return {
      name: session.data.name,
      visits: session.data.visits,
      sessionId: session.id,
      expiresAt: new Date(session.expiresAt).toISOString()
    }
  })

  app.post('/api/logout', async (_request, reply) => {
    await reply.xUnlink()
    return { ok: true }
  })

  return app
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const app = await buildExample()
  const port = Number(process.env.PORT ?? 3000)
  await app.listen({ port, host: '127.0.0.1' })
  console.log(`fastify-xems example: open http://localhost:${port}/ in a browser`)
}
