/**
 * Issue 12, item 5: secrets with obviously no entropy are refused at construction (and so at
 * register), with a message that says how to make one; each accepted form is read as documented.
 */
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Fastify from 'fastify'
import { Redis } from 'ioredis'
import t from 'tap'
import { xemsSession } from '../../../index.js'
import { parseSecret } from '../../../lib/crypto/cipher.js'
import { MemoryStore } from '../../../lib/store/memory/memory-store.js'
import { RedisStore } from '../../../lib/store/redis/redis-store.js'

const WEAK: Array<[string, unknown, RegExp]> = [
  ['32 × "a"', 'a'.repeat(32), /all its bytes are the same/],
  ['32 zero bytes', Buffer.alloc(32), /all its bytes are the same/],
  ['64 hex zeros', '0'.repeat(64), /all its bytes are the same/],
  ['base64 of 32 zero bytes', Buffer.alloc(32).toString('base64'), /all its bytes are the same/],
  ['"password" × 4', 'password'.repeat(4), /repeats a pattern of 8 bytes/],
  ['"ab" × 16', 'ab'.repeat(16), /repeats a pattern of 2 bytes/],
  ['a 16-byte pattern twice', 'Tr0ub4dor&3xyzQ!Tr0ub4dor&3xyzQ!', /repeats a pattern of 16 bytes/],
  ['bytes 0..31', Buffer.from(Array.from({ length: 32 }, (_, i) => i)), /evenly spaced/],
  ['"ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`" (a run)', 'ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`', /evenly spaced/],
  ['few distinct characters', 'aabbccddeeffgghhiijjkkaabbccddef', /distinct bytes/],
  ['32 hex characters (openssl rand -hex 16), read as ASCII before', randomBytes(16).toString('hex'), /32 hex characters: that is 16 bytes/]
]

t.test('obviously weak 32-byte secrets are refused, saying how to make one, never echoing the value', async (t) => {
  for (const [what, secret, reason] of WEAK) {
    let error: unknown
    try { parseSecret(secret, 'persistence.secret') } catch (err) { error = err }
    t.match(error, { code: 'FST_XEMS_BAD_SECRET', message: reason }, what)
    t.match((error as Error | undefined)?.message, /openssl rand -base64 32/, `${what}: the message says how to make one`)
    if (typeof secret === 'string') t.notOk((error as Error | undefined)?.message.includes(secret), `${what}: not echoed`)
  }
})

t.test('random secrets in every accepted form pass, read as documented', async (t) => {
  for (let i = 0; i < 2000; i++) {
    const bytes = randomBytes(32)
    t.same(parseSecret(bytes, 's'), bytes)
    if (i < 200) {
      t.same(parseSecret(bytes.toString('hex'), 's'), bytes, '64 hex characters are decoded')
      t.same(parseSecret(bytes.toString('base64'), 's'), bytes, 'base64 is decoded')
      t.same(parseSecret(bytes.toString('base64url'), 's'), bytes, 'base64url is decoded')
      const ascii = randomBytes(24).toString('base64') // 32 printable characters
      t.same(parseSecret(ascii, 's'), Buffer.from(ascii, 'ascii'), '32 printable ASCII characters are taken as typed')
    }
  }
  t.same(parseSecret('correct-horse-battery-staple-42!', 's'), Buffer.from('correct-horse-battery-staple-42!'), 'a typed passphrase of 32 characters passes')
})

t.test('a weak secret fails at construction of the stores and at register', async (t) => {
  t.throws(() => new MemoryStore({ persistence: { path: '/nonexistent', secret: 'password'.repeat(4) } }), { code: 'FST_XEMS_BAD_SECRET', message: /"persistence\.secret" is not a usable secret/ })
  t.throws(() => new MemoryStore({ persistence: { path: '/nonexistent', secret: [randomBytes(32), Buffer.alloc(32)] } }), { code: 'FST_XEMS_BAD_SECRET', message: /"persistence\.secret\[1\]"/ })
  const client = new Redis({ lazyConnect: true })
  t.teardown(() => { client.disconnect() })
  t.throws(() => new RedisStore({ client, secret: 'a'.repeat(32) }), { code: 'FST_XEMS_BAD_SECRET', message: /"secret" is not a usable secret/ })
  const dir = await mkdtemp(join(tmpdir(), 'xems-weak-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  const app = Fastify()
  await t.rejects((async () => {
    await app.register(xemsSession, { store: new MemoryStore({ persistence: { path: dir, secret: '0123456789abcdef0123456789abcdef' } }) })
    await app.ready()
  })(), { code: 'FST_XEMS_BAD_SECRET', message: /openssl rand/ })
})
