import t from 'tap'
import { ShardedMap } from '../../../../lib/store/memory/sharded-map.js'
import { generateToken, tokenKey } from '../../../../lib/crypto/random-token.js'

t.test('behaves like a Map: set, get, has, delete, size, iteration that survives deletion', async (t) => {
  const map = new ShardedMap<number>()
  const plain = new Map<string, number>()
  const keys = ['', 'a', 'sid-1', 'auth-active\u0000ada', ...Array.from({ length: 2000 }, () => tokenKey(generateToken()))]
  for (const [i, key] of keys.entries()) { map.set(key, i); plain.set(key, i) }
  map.set('a', 42); plain.set('a', 42)
  t.equal(map.size, plain.size, 'overwriting does not grow the size')
  t.ok(keys.every((key) => map.get(key) === plain.get(key) && map.has(key)))
  t.equal(map.get('missing'), undefined)
  t.equal(map.delete('missing'), false)
  let visited = 0
  for (const [key] of map.entries()) {
    visited++
    if (visited % 2 === 0) map.delete(key)
  }
  t.equal(visited, plain.size, 'every entry visited once, while deleting along the way')
  t.equal(map.size, plain.size - Math.floor(plain.size / 2))
  t.equal([...map.keys()].length, map.size)
  t.equal([...map.values()].length, map.size)
  t.equal([...map].length, map.size)
})

t.test('token keys, record ids and prefixed value keys spread evenly over the shards', async (t) => {
  const { generateLocator, recordIdOf, secretKeyOf, sessionTokenOf } = await import('../../../../lib/session/token.js')
  const kinds: Record<string, () => string> = {
    'token keys': () => secretKeyOf(sessionTokenOf(generateLocator(), generateToken())),
    'record ids': () => recordIdOf(generateLocator()),
    'value keys': (() => { let i = 0; return () => `users-registry\u0000user${i++}@example.com` })()
  }
  for (const [kind, make] of Object.entries(kinds)) {
    const map = new ShardedMap<number>()
    for (let i = 0; i < 64_000; i++) map.set(make(), i)
    const sizes = map.shardSizes
    t.equal(sizes.length, 64)
    t.ok(Math.max(...sizes) < 2 * 1000, `${kind}: the fullest shard holds ${Math.max(...sizes)} of an average 1000`)
  }
})
