/** lib/binding/dbsc.ts without a server: structured-field strings, the bound cookie, proofs verified by jose. */
import t from 'tap'
import { exportJWK, generateKeyPair, SignJWT } from 'jose'
import { boundCookieValid, boundCookieValue, newBinding, parseSfString, skippedReasons, verifyRefreshProof, verifyRegistrationProof } from '../../../lib/binding/dbsc.js'

t.test('parseSfString reads an RFC 9651 string and refuses anything else', async (t) => {
  t.equal(parseSfString('"abc"'), 'abc')
  t.equal(parseSfString('"a\\"b\\\\c";x=1'), 'a"b\\c', 'escapes, parameters ignored')
  for (const bad of ['abc', '"abc', '""', '"a\\nb"', '"a"b', '"é"', 42, undefined]) t.equal(parseSfString(bad), null, String(bad))
  t.equal(parseSfString(`"${'a'.repeat(65)}"`, 64), null, 'longer than allowed')
})

t.test('skippedReasons keeps the draft\'s tokens only', async (t) => {
  t.same(skippedReasons('unreachable;session_identifier="1", quota_exceeded;session_identifier="2", bogus'), ['unreachable', 'quota_exceeded'])
  t.same(skippedReasons(undefined), [])
})

t.test('the bound cookie: valid for its session until it expires; another session\'s, a changed or an expired one is not', async (t) => {
  const { publicKey } = await generateKeyPair('ES256')
  const proof = { alg: 'ES256' as const, jwk: await exportJWK(publicKey), jkt: 'x', jti: 'c' }
  const a = newBinding(proof, 0)
  const b = newBinding(proof, 0)
  const value = boundCookieValue(a, 600_000)
  t.ok(boundCookieValid(a, value, 599_000))
  t.notOk(boundCookieValid(a, value, 600_000), 'expired')
  t.notOk(boundCookieValid(b, value, 1000), 'another session')
  t.notOk(boundCookieValid(a, value.replace(/^[0-9a-z]+/, (exp) => (parseInt(exp, 36) + 100).toString(36)), 1000), 'a pushed-back expiry')
  t.notOk(boundCookieValid(a, undefined, 0))
})

t.test('registration and refresh proofs: jose verifies them; a proof without jwk, by another key, of another typ or alg is refused', async (t) => {
  const keys = await generateKeyPair('ES256')
  const jwk = await exportJWK(keys.publicKey)
  const sign = async (header: Record<string, unknown>, key = keys.privateKey): Promise<string> =>
    `"${await new SignJWT({ jti: 'chal' }).setProtectedHeader({ alg: 'ES256', typ: 'dbsc+jwt', ...header }).sign(key)}"`
  const proof = await verifyRegistrationProof(await sign({ jwk }), ['ES256', 'RS256'])
  t.equal(proof.jti, 'chal')
  t.equal(proof.alg, 'ES256')
  t.same(Object.keys(proof.jwk).sort(), ['crv', 'kty', 'x', 'y'])
  await t.rejects(verifyRegistrationProof(await sign({}), ['ES256']), { code: 'FST_XEMS_DBSC_INVALID', statusCode: 400 }, 'no jwk')
  await t.rejects(verifyRegistrationProof(await sign({ jwk, typ: 'JWT' }), ['ES256']), { code: 'FST_XEMS_DBSC_INVALID' }, 'another typ')
  await t.rejects(verifyRegistrationProof(await sign({ jwk }), ['RS256']), { code: 'FST_XEMS_DBSC_INVALID' }, 'an algorithm not offered')
  const binding = newBinding(proof, 0)
  t.equal(await verifyRefreshProof(await sign({}), binding), 'chal')
  t.equal(await verifyRefreshProof(undefined, binding), null, 'no proof: the caller answers 403 with a challenge')
  const other = await generateKeyPair('ES256')
  await t.rejects(verifyRefreshProof(await sign({}, other.privateKey), binding), { code: 'FST_XEMS_DBSC_INVALID' }, 'another key')
})
