import t from 'tap'
import { defineScript } from '../../../../lib/store/redis/scripts/define.js'
import { SCRIPT, SCRIPTS } from '../../../../lib/store/redis/scripts/index.js'

t.test('the header declares each field at the ARGV index the builder writes it to', async (t) => {
  const script = defineScript({
    prelude: '-- prelude\n',
    keys: ['a', 'b'],
    argv: { name: 'text', now: 'number', on: 'flag', gone: 'list', off: 'flag' },
    rest: 'pairs',
    body: 'return 1\n'
  })
  t.equal(script.lua, [
    '-- prelude',
    '-- KEYS and ARGV, by name, as the builder writes them (generated: scripts/define.ts)',
    'local a = KEYS[1]',
    'local b = KEYS[2]',
    'local name = ARGV[1]',
    'local now, nowText = tonumber(ARGV[2]), ARGV[2]',
    "local on = ARGV[3] == '1'",
    'local gone, goneFrom = tonumber(ARGV[4]), 6',
    "local off = ARGV[5] == '1'",
    'local pairsFrom = goneFrom + gone',
    'return 1',
    ''
  ].join('\n'))
  const sealed = Buffer.from([0, 1, 2])
  t.same(script.args({ a: 'ka', b: 'kb', name: sealed, now: 1700000000123, on: true, gone: ['g1', 'g2'], off: false, pairs: ['f', 'v'] }), {
    keys: ['ka', 'kb'],
    argv: [sealed, '1700000000123', '1', '2', '0', 'g1', 'g2', 'f', 'v']
  }, 'numbers as String(n), flags as 1/0, a list as its length then its entries after the named fields, the rest last')
  t.same(script.args({ a: 'ka', b: 'kb', name: '', now: 0, on: false, gone: [], off: true, pairs: [] }).argv, ['', '0', '0', '0', '1'])
})

t.test('no script body reads an argument by position: only through the generated header, or its rest', async (t) => {
  for (const [name, script] of Object.entries(SCRIPT)) {
    const header = script.lua.indexOf('-- KEYS and ARGV, by name')
    t.ok(header >= 0, `${name}: has the generated header`)
    // the header is one block of lines; the body starts after the blank line that ends it
    const body = script.lua.slice(script.lua.indexOf('\n\n', header))
    t.same(body.match(/(KEYS|ARGV)\[\d+\]/g), null, `${name}: no KEYS[n] or ARGV[n] past the header`)
    t.equal(SCRIPTS[name as keyof typeof SCRIPTS], script.lua)
  }
})

t.test('the session scripts read the fields RedisStore passes, in order', async (t) => {
  const { argv, keys } = SCRIPT.commit.args({
    key: 'k', tokenKey: 'tk', now: 5, rotate: false, newKey: '', box: '', unseenWindow: 0, migrations: 7, deleted: ['d:x'], written: ['d:y', 'v']
  })
  t.same(keys, ['k'])
  t.same(argv, ['tk', '5', '0', '', '', '0', '7', '1', 'd:x', 'd:y', 'v'], 'the commit arguments of a request without rotation')
  t.match(SCRIPT.commit.lua, /local deleted, deletedFrom = tonumber\(ARGV\[8\]\), 9\nlocal writtenFrom = deletedFrom \+ deleted\n/)
  t.match(SCRIPT.create.lua, /local timesSeal = ARGV\[9\]\nlocal dataFrom = 10\n/)
  t.match(SCRIPT.migrate.lua, /local sealedUser = ARGV\[11\]\nlocal dataFrom = 12\n/)
})
