/** Real HTTP for the rotation scenarios: an app on a loopback port and a client that follows Set-Cookie (or not). */
import type { FastifyInstance } from 'fastify'
import { Agent, request } from 'undici'
import { buildApp, type Clock } from '../helpers.js'
import type { XemsSessionOptions } from '../../index.js'

export interface Served {
  app: FastifyInstance
  clock: Clock
  logs: string[]
  base: string
  agent: Agent
  close: () => Promise<void>
}

/** The test app of test/helpers.ts, plus `extra` routes, listening on 127.0.0.1. */
export async function serve (options: XemsSessionOptions = {}, extra?: (app: FastifyInstance) => void): Promise<Served> {
  const { app, clock, logs } = await buildApp(options)
  extra?.(app)
  await app.listen({ port: 0, host: '127.0.0.1' })
  const address = app.server.address()
  const port = typeof address === 'object' && address !== null ? address.port : 0
  const agent = new Agent({ connections: 4000, pipelining: 1, keepAliveTimeout: 30_000 })
  return {
    app,
    clock,
    logs,
    base: `http://127.0.0.1:${port}`,
    agent,
    close: async () => { await agent.close(); await app.close() }
  }
}

export interface Answer {
  status: number
  /** The session token the response set ('' when it cleared the cookie), or undefined. */
  token: string | undefined
  body: any
}

/** One request carrying `token` as the session cookie. */
export async function send (served: Served, method: 'GET' | 'POST', path: string, token: string | undefined, payload?: unknown): Promise<Answer> {
  const headers: Record<string, string> = {}
  if (token !== undefined) headers.cookie = `xems=${token}`
  if (payload !== undefined) headers['content-type'] = 'application/json'
  const response = await request(served.base + path, {
    method,
    headers,
    dispatcher: served.agent,
    ...(payload === undefined ? {} : { body: JSON.stringify(payload) })
  })
  const text = await response.body.text()
  const setCookie = response.headers['set-cookie']
  const cookies = Array.isArray(setCookie) ? setCookie : setCookie === undefined ? [] : [setCookie]
  const mine = cookies.map((line) => /^xems=([^;]*)/.exec(line)?.[1]).find((value) => value !== undefined)
  return { status: response.statusCode, token: mine, body: text.length > 0 && text.startsWith('{') ? JSON.parse(text) : text }
}

/** A small seeded PRNG (mulberry32), so a failing run can be replayed. */
export function prng (seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6D2B79F5) >>> 0
    let x = a
    x = Math.imul(x ^ (x >>> 15), x | 1)
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61)
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296
  }
}

export async function sleep (ms: number): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, ms))
}
