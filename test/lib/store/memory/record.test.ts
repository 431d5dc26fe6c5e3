/**
 * The MemoryStore record (lib/store/memory/record.ts): its token key and data packed into one string
 * (data.ts), its common fields in a shared frozen profile (profile.ts), copied on write.
 */
import fc from 'fast-check'
import t from 'tap'
import { dataValue, flat, headEnd, headIs, headKey, packed, repacked, unpackData } from '../../../../lib/store/memory/data.js'
import { MAX_SHARED_PROFILES, profileOf } from '../../../../lib/store/memory/profile.js'
import { MemorySession } from '../../../../lib/store/memory/record.js'
import { NO_PAST, markPresented, matchToken, rotate, retireAll } from '../../../../lib/store/rotation.js'

const NOW = Date.now()
const HOUR = 3_600_000
const create = (data: Record<string, string>, cur = 'HCt8UeHquFxpJVttJVDDfA', userId?: string): MemorySession =>
  MemorySession.of('auth-active', HOUR, userId, cur, false, NO_PAST, data, NOW, NOW, NOW + 24 * HOUR)

/** An own-key copy, as JSON.parse gives (so `__proto__` is a key). */
const own = (entries: Array<[string, string]>): Record<string, string> => {
  const data: Record<string, string> = {}
  for (const [k, v] of entries) Object.defineProperty(data, k, { value: v, enumerable: true, writable: true, configurable: true })
  return data
}

t.test('data round-trips through the packed string, whatever its keys and values hold', async (t) => {
  const long = fc.constantFrom(239, 240, 255, 256, 65535, 65536, 70000).map((n) => 'x'.repeat(n))
  const text = fc.oneof({ arbitrary: fc.string({ unit: 'binary', maxLength: 40 }), weight: 5 }, long)
  const tokenKey = fc.oneof(text, fc.uint8Array({ minLength: 16, maxLength: 16 }).map((b) => Buffer.from(b).toString('base64url')),
    fc.string({ unit: fc.constantFrom(...'AB+/=!-_\u00ff'), minLength: 22, maxLength: 22 }))
  const key = fc.oneof(text, fc.constantFrom('__proto__', 'constructor', '0', '12', '', ':', '3:ab', '\u0000', '\u00ff', '$xems:device'))
  fc.assert(fc.property(fc.uniqueArray(fc.tuple(key, text), { selector: (e) => e[0], maxLength: 8 }), tokenKey, (entries, cur) => {
    const data = own(entries)
    const body = packed(cur, data)
    if (headKey(body) !== cur || !headIs(body, cur) || headIs(body, cur + 'A') || (cur !== '' && headIs(body, cur.slice(1)))) return false
    const at = headEnd(body)
    const back = unpackData(body, at)
    t.same(Object.keys(back).sort(), Object.keys(data).sort())
    for (const [k, v] of entries) {
      if (!Object.hasOwn(back, k) || back[k] !== v || dataValue(body, at, k) !== v) return false
    }
    return dataValue(body, at, 'absent\u0001') === undefined || Object.hasOwn(data, 'absent\u0001')
  }), { numRuns: 300 })
})

t.test('a patch sets, replaces and deletes keys; the token key and the other keys stay', async (t) => {
  const s = create(own([['a', '1'], ['__proto__', '{"polluted":true}'], ['b', '"two:2"']]))
  s.patchData(own([['a', null as unknown as string], ['b', '"3:three"'], ['c', '[1]']]))
  t.same(s.data(), own([['__proto__', '{"polluted":true}'], ['b', '"3:three"'], ['c', '[1]']]))
  t.ok(Object.hasOwn(s.data(), '__proto__'), '__proto__ is an own key')
  t.equal(({} as Record<string, unknown>).polluted, undefined, 'no prototype touched')
  t.equal(s.dataValue('a'), undefined)
  t.equal(s.dataValue('b'), '"3:three"')
  t.equal(s.cur, 'HCt8UeHquFxpJVttJVDDfA')
  s.cur = 'another-key'
  t.equal(s.cur, 'another-key')
  t.ok(s.isCurrent('another-key'))
  t.notOk(s.isCurrent('another-ke'))
  t.notOk(s.isCurrent('another-key-'))
  t.equal(s.dataValue('c'), '[1]', 'the data stays when the token key changes')
  s.setData({ x: '"y"' })
  t.same(s.data(), { x: '"y"' })
  t.equal(s.cur, 'another-key')
  t.equal(repacked(packed('k', {}), 2, undefined, null), packed('k', {}))
})

t.test('a token key of canonical base64url is kept as its 16 bytes; any other key as it is', async (t) => {
  const canonical = 'HCt8UeHquFxpJVttJVDDfA'
  t.equal(packed(canonical, {}).length, 17, '6 characters less than the text')
  // The last character carries 2 bits of the 16 bytes: 'B' sets a bit no byte keeps.
  for (const other of ['HCt8UeHquFxpJVttJVDDfB', 'HCt8UeHquFxpJVttJVDDf!', 'HCt8UeHquFxpJVttJVDD=A', 'HCt8UeHquFxpJVttJVDDfA=']) {
    const body = packed(other, { a: '1' })
    t.equal(headKey(body), other)
    t.ok(headIs(body, other))
    t.notOk(headIs(body, canonical), `${other} is not ${canonical}`)
    t.notOk(headIs(packed(canonical, {}), other))
  }
})

t.test('a copy of the data is a copy: changing it changes neither the session nor another one', async (t) => {
  const a = create({ user: '"ada"' })
  const b = create({ user: '"ada"' })
  const copy = a.data()
  copy.user = '"mallory"'
  copy.extra = '1'
  t.same(a.data(), { user: '"ada"' })
  t.same(b.data(), { user: '"ada"' })
  a.patchData({ user: '"grace"' })
  t.same(b.data(), { user: '"ada"' }, 'a patch of one session is not seen by another')
})

t.test('sessions share one frozen profile until a field of their own changes (copy on write)', async (t) => {
  const a = create({})
  const b = create({})
  t.equal(a.profile, b.profile, 'two new sessions with the same sandbox and lifetimes share a profile')
  t.ok(Object.isFrozen(a.profile))
  t.throws(() => { (a.profile as { sandbox: string }).sandbox = 'x' }, 'a shared profile cannot be written')
  a.sandbox = 'other'
  a.idleTtl = 5
  t.equal(b.sandbox, 'auth-active', 'another session keeps its sandbox')
  t.equal(b.idleTtl, HOUR)
  t.equal(a.sandbox, 'other')
  t.equal(a.idleTtl, 5)
  t.ok(markPresented(a, NOW, 1000))
  t.equal(a.seen, true)
  t.equal(b.seen, false, 'seen is per session')
  t.ok(rotate(a, 'next-key', 'box', NOW, 1000))
  t.equal(a.past.length, 1)
  t.equal(b.past, NO_PAST, 'another session keeps no past')
  t.equal(matchToken(b, 'HCt8UeHquFxpJVttJVDDfA', NOW).kind, 'current')
  t.equal(matchToken(a, 'HCt8UeHquFxpJVttJVDDfA', NOW).kind, 'rotated')
  t.equal(matchToken(a, 'next-key', NOW).kind, 'current')
  retireAll(a, 'migrated', NOW, NOW + 1000)
  t.same(a.past.map((p) => p.key), ['HCt8UeHquFxpJVttJVDDfA', 'next-key'])
  t.equal(a.cur, 'migrated')
  t.equal(b.cur, 'HCt8UeHquFxpJVttJVDDfA')
})

t.test('past entries are kept as they are (opaque): the record never rewrites them', async (t) => {
  const entry = { key: '.'.repeat(22), box: null, until: NOW + 1000 }
  const s = create({})
  s.past = [entry]
  t.equal(s.past[0], entry)
  const c = create({})
  t.equal(c.past, NO_PAST)
})

t.test('a profile naming a user or earlier tokens is never shared', async (t) => {
  const a = create({}, 'k1', 'user-1')
  const b = create({}, 'k2', 'user-1')
  t.not(a.profile, b.profile)
  t.equal(a.userId, 'user-1')
  const c = create({})
  c.userId = 'user-2'
  t.equal(c.userId, 'user-2')
  t.not(c.profile, create({}).profile)
  c.userId = undefined
  t.equal(c.profile, create({}).profile, 'back to the shared one once nothing in it is its own')
  const past = [{ key: 'k', box: 'b', until: NOW + 1 }]
  t.not(profileOf('s', 1, 2, undefined, false, past), profileOf('s', 1, 2, undefined, false, past))
})

t.test('the table of shared profiles is bounded', async (t) => {
  for (let i = 0; i < MAX_SHARED_PROFILES * 2; i++) profileOf(`sandbox-${i}`, 1, 2, undefined, false, NO_PAST)
  const { sharedProfiles } = await import('../../../../lib/store/memory/profile.js')
  t.ok(sharedProfiles() <= MAX_SHARED_PROFILES)
})

t.test('flat copies a string built in pieces, whatever its first character', async (t) => {
  for (const start of ['abc', '12', '{"', '']) {
    const piece = `${start}${'x'.repeat(20)}${String(Math.random())}`
    t.equal(flat(piece), piece)
  }
  t.equal(flat('short'), 'short')
})
