/**
 * Issue 11: a thief must always be caught, however many requests it makes (the old design remembered 16
 * rotated tokens: 17 requests erased the evidence). Real HTTP, a moved clock.
 */
import t from 'tap'
import { send, serve } from './http.js'

t.test('a thief with a copied cookie makes 1000 requests; the victim comes back: theft signal, session revoked', async (t) => {
  const served = await serve({ gracePeriod: '2s' })
  t.teardown(served.close)
  const login = await send(served, 'POST', '/login', undefined, { userId: 'victim' })
  const victim = (await send(served, 'GET', '/me', login.token)).token!
  // An infostealer copies the cookie jar: the victim's newest token.
  let stolen = victim
  for (let i = 0; i < 1000; i++) {
    served.clock.advance(300)
    const answer = await send(served, 'GET', '/me', stolen)
    if (answer.status !== 200) return t.fail(`the thief's request ${i} answered ${answer.status}`)
    stolen = answer.token ?? stolen
  }
  t.not(stolen, victim, 'the thief rotated the session many times')
  served.clock.advance(60_000)
  const back = await send(served, 'GET', '/me', victim)
  t.equal(back.status, 401, 'the victim comes back with its token')
  t.equal(back.body.code, 'FST_XEMS_TOKEN_REUSED', 'and it is recognised as an earlier token: the theft signal')
  t.equal((await send(served, 'GET', '/me', stolen)).status, 401, "the thief's current token died with the session")
  const event = served.logs.map((line) => JSON.parse(line)).find((entry) => entry.xems === 'token-reuse')
  t.equal(event?.userId, 'victim', 'the reuse is logged with the user')
  t.equal(event?.revoked, true)
})

t.test('a thief who copied a request token, while the victim had not used the new one yet, is caught when the victim returns', async (t) => {
  const served = await serve({ gracePeriod: '2s', unseenWindow: '10m' })
  t.teardown(served.close)
  const token = (await send(served, 'POST', '/login', undefined)).token!
  const copiedFromALog = token
  const victim = (await send(served, 'GET', '/me', token)).token!
  served.clock.advance(60_000)
  const thief = await send(served, 'GET', '/me', copiedFromALog)
  t.equal(thief.status, 200, 'within the unseen window the copied request token still opens the session…')
  let stolen = thief.token!
  for (let i = 0; i < 5; i++) {
    served.clock.advance(3000)
    stolen = (await send(served, 'GET', '/me', stolen)).token ?? stolen
  }
  served.clock.advance(60_000)
  const back = await send(served, 'GET', '/me', victim)
  t.equal(back.status, 401, '…but the victim coming back is the theft signal')
  t.equal(back.body.code, 'FST_XEMS_TOKEN_REUSED')
  t.equal((await send(served, 'GET', '/me', stolen)).status, 401, 'and the thief is out')
})

t.test('a copied request token is worth nothing once the victim has used the new one', async (t) => {
  const served = await serve({ gracePeriod: '2s', onReuse: 'revoke' })
  t.teardown(served.close)
  const token = (await send(served, 'POST', '/login', undefined)).token!
  const copied = token
  let victim = (await send(served, 'GET', '/me', token)).token!
  victim = (await send(served, 'GET', '/me', victim)).token!
  served.clock.advance(2001)
  const thief = await send(served, 'GET', '/public', copied)
  t.equal(thief.status, 401)
  t.equal(thief.body.code, 'FST_XEMS_TOKEN_REUSED')
  t.equal((await send(served, 'GET', '/me', victim)).status, 401, 'revoked: the victim signs in again, the thief has nothing')
})
