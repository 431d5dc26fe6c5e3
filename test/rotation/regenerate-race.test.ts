/**
 * Issue 11: concurrent regenerate() on one session. Exactly one wins; every other request gets 401, and
 * no 200 carries a token that does not work (the old design answered all ten with 200 and ten tokens,
 * one of which worked).
 */
import t from 'tap'
import { send, serve } from './http.js'

for (const parallel of [10, 100]) {
  t.test(`${parallel} concurrent regenerate() with one token: one winner, the others 401, no dead token in any 200`, async (t) => {
    const served = await serve({ clock: Date.now })
    t.teardown(served.close)
    const token = (await send(served, 'POST', '/login', undefined, { data: { user: 'ada', cart: ['x'] } })).token!
    const answers = await Promise.all(Array.from({ length: parallel }, async () => await send(served, 'POST', '/regenerate', token)))
    const ok = answers.filter((answer) => answer.status === 200)
    t.equal(ok.length, 1, 'exactly one regenerate succeeded')
    t.same(answers.filter((answer) => answer.status !== 200).map((answer) => [answer.status, answer.body.code]),
      Array.from({ length: parallel - 1 }, () => [401, 'FST_XEMS_NO_SESSION']), 'the others answered 401')
    for (const answer of answers) {
      if (answer.token === undefined || answer.token === '') continue
      const me = await send(served, 'GET', '/me', answer.token)
      t.equal(me.status, 200, 'every token a response carried works')
      t.same(me.body.data, { user: 'ada', cart: ['x'] }, 'with the session data')
    }
    t.equal(answers.filter((answer) => answer.token !== undefined && answer.token !== '').length, 1, 'only the winner sent a token')
    const old = await send(served, 'GET', '/me', token)
    t.equal(old.status, 401, 'the old token is dead at once (no grace across a regeneration)')
    t.equal(old.body.code, 'FST_XEMS_NO_SESSION', 'as "no session", not as a theft: requests in flight at the time are honest')
  })
}

t.test('requests in flight while another regenerates never receive a token that died', async (t) => {
  const served = await serve({ clock: Date.now })
  t.teardown(served.close)
  const token = (await send(served, 'POST', '/login', undefined)).token!
  const answers = await Promise.all([
    ...Array.from({ length: 50 }, async () => await send(served, 'GET', '/me', token)),
    send(served, 'POST', '/regenerate', token),
    ...Array.from({ length: 50 }, async () => await send(served, 'GET', '/me', token))
  ])
  const regenerated = answers[50]!
  t.equal(regenerated.status, 200)
  for (const answer of answers) {
    if (answer.token === undefined || answer.token === '' || answer === regenerated) continue
    // A response that rotated before the regeneration carries a token that the regeneration retired:
    // the browser keeps whichever Set-Cookie arrives last, so the regeneration's must be the one that lives.
    const me = await send(served, 'GET', '/public', answer.token)
    t.equal(me.status, 200, 'an older token a response carried never raises the theft signal')
  }
  t.equal((await send(served, 'GET', '/me', regenerated.token)).status, 200, "the regeneration's token works")
})
