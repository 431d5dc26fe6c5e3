/**
 * OpenedSessions: a session is taken from what it opened to only when every field opening reads is the
 * same, byte for byte and in the same order; the fields the resolve script changes on every request
 * (ls, xp, k, s, p) do not count. What it hands out is a copy.
 */
import t from 'tap'
import type { StoredSession } from '../../../../lib/store/contract.js'
import { OpenedSessions } from '../../../../lib/store/redis/opened-sessions.js'

const b = (text: string): Buffer => Buffer.from(text, 'latin1')
const reply = (pairs: Array<[string, string]>): Buffer[] => pairs.flatMap(([name, value]) => [b(name), b(value)])
const session = (): StoredSession => ({
  id: 'r1', sandbox: 'auth-active', data: Object.assign(Object.create(null), { user: '"ada"' }), createdAt: 1, lastSeenAt: 2, idleTtl: 3600, absoluteExpiresAt: 9999, migrations: 0
})
const FIELDS: Array<[string, string]> = [['sb', 'auth-active'], ['ls', '2'], ['ms', 'seal-1'], ['k', 'key-1'], ['d:aa', 'sealed-a'], ['d:bb', 'sealed-b']]

t.test('a hit needs every field but ls, xp, k, s and p unchanged, in the same order', async (t) => {
  const opened = new OpenedSessions()
  opened.remember('r1', reply(FIELDS), session())
  const changedVolatile = FIELDS.map(([n, v]): [string, string] => [n, n === 'ls' ? '77' : n === 'k' ? 'key-2' : v])
  const hit = opened.find('r1', reply([...changedVolatile, ['s', '1'], ['p', 'xyz'], ['xp', '5']]), 50)
  t.ok(hit, 'a new lastSeenAt, token key, flag, history and expiry mark: the same session')
  t.equal(hit?.lastSeenAt, 50, 'with the read\'s lastSeenAt')
  t.equal(opened.find('r2', reply(FIELDS), 50), null, 'another record id: a miss')
  t.equal(opened.find('r1', reply(FIELDS.slice(0, -1)), 50), null, 'the last field missing: a miss')
  t.equal(opened.find('r1', reply([...FIELDS, ['d:cc', 'sealed-c']]), 50), null, 'a field more: a miss')
  t.equal(opened.find('r1', reply(FIELDS.map(([n, v]): [string, string] => [n, n === 'd:bb' ? 'sealed-B' : v])), 50), null, 'one byte of a value: a miss')
  t.equal(opened.find('r1', reply(FIELDS.map(([n, v]): [string, string] => [n === 'd:bb' ? 'd:bc' : n, v])), 50), null, 'one byte of a name: a miss')
  t.equal(opened.find('r1', reply([FIELDS[0]!, FIELDS[2]!, FIELDS[1]!, FIELDS[3]!, FIELDS[5]!, FIELDS[4]!]), 50), null, 'fields in another order: a miss')
  opened.forget('r1')
  t.equal(opened.find('r1', reply(FIELDS), 50), null, 'forgotten: a miss')
})

t.test('what it hands out and what it keeps are copies', async (t) => {
  const opened = new OpenedSessions()
  const fields = reply(FIELDS)
  const original = session()
  opened.remember('r1', fields, original)
  original.data.user = '"eve"'
  fields[5]!.write('X', 0)
  const hit = opened.find('r1', reply(FIELDS), 10)!
  t.same({ ...hit.data }, { user: '"ada"' }, 'changing the session it was given, or the reply\'s buffers, changes nothing kept')
  hit.data.user = '"mallory"'
  hit.sandbox = 'admin'
  const next = opened.find('r1', reply(FIELDS), 11)!
  t.same([next.sandbox, { ...next.data }], ['auth-active', { user: '"ada"' }], 'nor does changing what a read handed out')
})

t.test('it keeps at most 4096 sessions, dropping the oldest', async (t) => {
  const opened = new OpenedSessions()
  for (let i = 0; i < 4097; i++) opened.remember(`r${i}`, reply(FIELDS), session())
  t.equal(opened.find('r0', reply(FIELDS), 1), null, 'the first one kept is gone')
  t.ok(opened.find('r1', reply(FIELDS), 1), 'the second is kept')
  t.ok(opened.find('r4096', reply(FIELDS), 1), 'and the last')
})
