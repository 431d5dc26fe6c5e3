import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { parsePositiveDuration, type Duration } from '../../lib/duration.js'
import { DPOP_ALGORITHMS, DpopNonces, dpopError, verifyDpopProof, type DpopAlgorithm } from '../../lib/binding/dpop.js'
import { badOption, isXemsError } from '../../lib/errors.js'
import type { BindingContext } from './binding-hooks.js'

/** The `dpop` option of xemsSession: sessions of header clients bound to a key pair (RFC 9449). */
export interface DpopOptions {
  /** Signature algorithms accepted in proofs (default all of ES256, ES384, ES512, RS256, PS256, EdDSA). */
  algorithms?: DpopAlgorithm[] | undefined
  /** How far a proof's `iat` may be from the server's clock, either way (default `1m`, at most `5m`). */
  iatWindow?: Duration | undefined
  /**
   * Require a server nonce in every proof (RFC 9449 §9): `true`, or `{ secret, window }`. A request without
   * the current nonce gets 401 `use_dpop_nonce` with the nonce in `DPoP-Nonce`; every DPoP response
   * carries the current one. Several instances must share `secret` (32+ bytes; default: random per process).
   * Default false.
   */
  nonce?: boolean | { secret?: string | Buffer | undefined, window?: Duration | undefined } | undefined
  /**
   * The origin clients address, e.g. `https://api.example.com`, for checking `htu` behind a proxy that
   * rewrites Host (default: the request's protocol and Host, as Fastify sees them with `trustProxy`).
   */
  origin?: string | undefined
  /** Refuse header-client sign-ins (`reply.xLink`) without a DPoP proof (default false: they get an unbound session). */
  required?: boolean | undefined
}

export interface VerifiedDpop {
  /** The RFC 7638 thumbprint of the key that signed this request's proof. */
  jkt: string
}

declare module 'fastify' {
  interface FastifyRequest {
    /** The request's verified DPoP proof (null without one); set only when xemsSession's `dpop` option is on. */
    dpop: VerifiedDpop | null
  }
}

const JTI_SANDBOX = 'xems:dpop-jti'

interface DpopSettings {
  algorithms: DpopAlgorithm[]
  iatWindow: number
  nonce: { window: number, secret: Buffer | undefined } | null
  origin: string | null
  required: boolean
}

export function checkDpopOptions (options: DpopOptions | true): DpopSettings {
  const o: DpopOptions = options === true ? {} : options
  if (o === null || typeof o !== 'object') {
    throw badOption('dpop', 'must be true or { algorithms?, iatWindow?, nonce?, origin?, required? }')
  }
  const algorithms = o.algorithms ?? [...DPOP_ALGORITHMS]
  if (!Array.isArray(algorithms) || algorithms.length === 0 ||
    !algorithms.every((alg) => (DPOP_ALGORITHMS as readonly string[]).includes(alg))) {
    throw badOption('dpop.algorithms', `must be a non-empty list of ${DPOP_ALGORITHMS.join(', ')}`)
  }
  const iatWindow = parsePositiveDuration(o.iatWindow ?? '1m', 'dpop.iatWindow')
  if (iatWindow > 300_000) throw badOption('dpop.iatWindow', 'must be at most 5 minutes: a proof is for one request now, not later')
  let nonce: DpopSettings['nonce'] = null
  if (o.nonce !== undefined && o.nonce !== false) {
    if (o.nonce !== true && (o.nonce === null || typeof o.nonce !== 'object')) {
      throw badOption('dpop.nonce', 'must be true, false or { secret?, window? }')
    }
    const n = o.nonce === true ? {} : o.nonce
    const window = parsePositiveDuration(n.window ?? '5m', 'dpop.nonce.window')
    let secret: Buffer | undefined
    if (n.secret !== undefined) {
      secret = typeof n.secret === 'string' ? Buffer.from(n.secret, 'utf8') : Buffer.isBuffer(n.secret) ? n.secret : undefined
      if (secret === undefined || secret.length < 32) {
        throw badOption('dpop.nonce.secret', 'must be a string or Buffer of at least 32 bytes')
      }
    }
    nonce = { window, secret }
  }
  let origin: string | null = null
  if (o.origin !== undefined) {
    let url: URL | null = null
    try { url = new URL(o.origin) } catch {}
    if (url === null || (url.protocol !== 'https:' && url.protocol !== 'http:') || url.origin !== o.origin.replace(/\/$/, '')) throw badOption('dpop.origin', 'must be an origin such as https://api.example.com')
    origin = url.origin
  }
  if (o.required !== undefined && typeof o.required !== 'boolean') throw badOption('dpop.required', 'must be true or false')
  return { algorithms, iatWindow, nonce, origin, required: o.required ?? false }
}

interface DpopPluginOptions {
  dpop: DpopOptions | true
  context: BindingContext
}

async function xemsDpopPlugin (fastify: FastifyInstance, { dpop, context }: DpopPluginOptions): Promise<void> {
  const settings = checkDpopOptions(dpop)
  const { engine, header, hooks } = context
  if (header === null) throw badOption('dpop', 'needs the header transport (option "header"): DPoP is for header clients')
  const nonces = settings.nonce === null ? null : new DpopNonces(settings.nonce.secret, settings.nonce.window, engine.now)
  const jtis = engine.from(JTI_SANDBOX)
  const algs = settings.algorithms.join(' ')

  fastify.decorateRequest('dpop', null)

  function challenge (reply: FastifyReply, err: unknown): void {
    if (!isXemsError(err)) return
    if (err.code === 'FST_XEMS_DPOP_MISSING') {
      reply.header('www-authenticate', `DPoP algs="${algs}"`)
    } else if (err.code === 'FST_XEMS_DPOP_NONCE') {
      reply.header('www-authenticate', `DPoP error="use_dpop_nonce", error_description="${err.message}", algs="${algs}"`)
    } else if (err.code.startsWith('FST_XEMS_DPOP_')) {
      reply.header('www-authenticate', `DPoP error="invalid_dpop_proof", algs="${algs}"`)
    }
  }

  // After xemsSession's onRequest (registered after it): the session is resolved, not yet served.
  fastify.addHook('onRequest', async (request: FastifyRequest, reply) => {
    const proof = request.headers.dpop
    const binding = request.session?.binding
    const jkt = binding?.type === 'dpop' ? binding.jkt : undefined
    if (proof === undefined && jkt === undefined) return
    if (nonces !== null) reply.header('dpop-nonce', nonces.current())
    try {
      if (proof === undefined) throw dpopError('FST_XEMS_DPOP_MISSING')
      const presented = request.headers[header]
      const verified = await verifyDpopProof({
        // Two DPoP headers arrive joined or as an array: either way not one proof (§4.3 check 1).
        proof: Array.isArray(proof) || proof.includes(',') ? null : proof,
        method: request.method,
        url: (settings.origin ?? `${request.protocol}://${request.host}`) + request.url,
        accessToken: typeof presented === 'string' && presented !== '' ? presented : undefined,
        jkt,
        now: engine.now(),
        iatWindow: settings.iatWindow,
        algorithms: settings.algorithms,
        nonce: nonces === null ? undefined : (nonce) => nonces.accepts(nonce),
        claim: async (key, ttl) => await jtis.add(key, 1, ttl)
      })
      request.dpop = { jkt: verified.jkt }
    } catch (err) {
      // Not served as its session: the token alone (or with a bad proof) is worth nothing.
      request.session = null
      challenge(reply, err)
      throw err
    }
  })

  hooks.link.push((request) => {
    const headerClient = request.headers[header] !== undefined
    if (!headerClient) return null
    if (request.dpop === null) {
      if (settings.required) throw dpopError('FST_XEMS_DPOP_MISSING')
      return null
    }
    return { type: 'dpop', jkt: request.dpop.jkt, boundAt: engine.now() }
  })
}

/** Binds header clients' sessions to their DPoP key; registered by xemsSession when its `dpop` option is set. */
export const xemsDpop = fp(xemsDpopPlugin, { name: 'xems-dpop', fastify: '5.x' })
