import t from 'tap'
import { readFileSync } from 'node:fs'
import Fastify from 'fastify'
import { isXemsError, XEMS_ERRORS, XemsError, xemsError, type XemsErrorCode } from '../../lib/errors.js'

const codes = Object.keys(XEMS_ERRORS) as XemsErrorCode[]

/** Rows `| `CODE` | status | message | when |` of docs/errors.md. */
function documentedTable (): Map<string, { status: number, message: string }> {
  const rows = new Map<string, { status: number, message: string }>()
  for (const line of readFileSync(new URL('../../docs/errors.md', import.meta.url), 'utf8').split('\n')) {
    const match = /^\| `(FST_XEMS_\w+)` \| (\d+) \| (.*?) \| [^|]*\|$/.exec(line)
    if (match !== null) rows.set(match[1]!, { status: Number(match[2]), message: match[3]!.replaceAll('\\|', '|') })
  }
  return rows
}

t.test('docs/errors.md lists every code with the status and message the code uses, and nothing else', async (t) => {
  const documented = documentedTable()
  t.same([...documented.keys()].sort(), [...codes].sort(), 'the same codes')
  for (const code of codes) {
    const [status, message] = XEMS_ERRORS[code]
    t.same(documented.get(code), { status, message }, code)
  }
})

t.test('every code has a status of its class and a message of its own', async (t) => {
  const messages = new Set<string>()
  for (const code of codes) {
    const [status, message] = XEMS_ERRORS[code]
    t.ok([400, 401, 403, 404, 409, 429, 500, 503].includes(status), `${code}: ${status}`)
    t.notOk(messages.has(message), `${code}: its message is not another code's`)
    messages.add(message)
  }
})

t.test('an error is an XemsError and an Error with its code, status, message and cause', async (t) => {
  const cause = new Error('socket closed')
  const err = xemsError('FST_XEMS_STORE_UNAVAILABLE', [], { cause })
  t.ok(err instanceof XemsError)
  t.ok(err instanceof Error)
  t.ok(isXemsError(err))
  t.equal(err.name, 'XemsError')
  t.equal(err.code, 'FST_XEMS_STORE_UNAVAILABLE')
  t.equal(err.statusCode, 503)
  t.equal(err.message, 'fastify-xems: the session store is unavailable')
  t.equal(err.cause, cause)
  t.match(String(err.stack), /errors\.test\.ts/, 'the stack starts where it was made')
  t.notOk(isXemsError(new Error('other')))
  const filled = xemsError('FST_XEMS_BAD_OPTION', ['ttl', 'must be shorter than maxAge'])
  t.equal(filled.message, 'fastify-xems: option "ttl" must be shorter than maxAge')
  t.equal(filled.statusCode, 500)
  const waiting = xemsError('FST_XEMS_MFA_LOCKED', [], { retryAfter: 30 })
  t.equal(waiting.retryAfter, 30)
  t.equal(waiting.statusCode, 429)
})

t.test('Fastify answers an error with its status, code and message', async (t) => {
  const app = Fastify()
  app.get('/csrf', async () => { throw xemsError('FST_XEMS_CSRF', ['Sec-Fetch-Site: cross-site']) })
  const answer = await app.inject('/csrf')
  t.equal(answer.statusCode, 403)
  t.same(answer.json(), {
    statusCode: 403,
    code: 'FST_XEMS_CSRF',
    error: 'Forbidden',
    message: 'Cross-site request refused (Sec-Fetch-Site: cross-site): this action must come from the site itself'
  })
})
