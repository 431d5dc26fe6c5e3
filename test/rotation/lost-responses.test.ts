/**
 * Issue 11: honest clients that lose responses must never be taken for thieves. 400 clients over real
 * HTTP, 50 requests each with a person's think times between them (from a fraction of a second to a few
 * minutes, on a moved clock), 2 % of responses lost (the server processed the request; the client never
 * saw the new Set-Cookie and sends the token it had). Nobody may be logged out, and every write the server
 * acknowledged — and every write it processed, since a lost response still committed — is there.
 */
import t from 'tap'
import { prng, send, serve } from './http.js'

const CLIENTS = 400
const REQUESTS = 50
const LOSS = 0.02

t.test(`${CLIENTS} clients, ${REQUESTS} requests each, ${LOSS * 100} % of responses lost: nobody is logged out`, async (t) => {
  const served = await serve()
  t.teardown(served.close)
  const random = prng(0x11)
  // Think times: log-uniform from 0.3 s to 180 s (median about 7 s).
  const think = (): number => Math.round(300 * Math.exp(random() * Math.log(180_000 / 300)))

  interface Client { token: string, next: number, sent: number, lastWritten: number, lost: number }
  const clients: Client[] = []
  for (let i = 0; i < CLIENTS; i++) {
    const login = await send(served, 'POST', '/login', undefined, { data: { user: `u${i}`, n: -1 } })
    if (login.status !== 200 || login.token === undefined) throw new Error(`login answered ${login.status}`)
    clients.push({ token: login.token!, next: served.clock.now + think(), sent: 0, lastWritten: -1, lost: 0 })
  }

  const failures: string[] = []
  let lostTotal = 0
  // After its 50 requests, each client makes one more (after a think time like the others): still signed in?
  let loggedOut = 0
  while (clients.some((client) => client.sent <= REQUESTS)) {
    // Everything due within the next 50 ms of the moved clock goes out at once, in parallel.
    const pending = clients.filter((client) => client.sent <= REQUESTS)
    const start = Math.min(...pending.map((client) => client.next))
    served.clock.now = start
    const batch = pending.filter((client) => client.next <= start + 50)
    await Promise.all(batch.map(async (client) => {
      const i = client.sent++
      if (i === REQUESTS) {
        const final = await send(served, 'GET', '/me', client.token)
        if (final.status !== 200) loggedOut++
        else if (final.body.data.n !== client.lastWritten) failures.push('a processed write is missing')
        return
      }
      const write = i % 2 === 0
      const answer = write
        ? await send(served, 'POST', '/me', client.token, { key: 'n', value: i })
        : await send(served, 'GET', '/me', client.token)
      if (answer.status !== 200) failures.push(`request ${i} of a client answered ${answer.status} ${JSON.stringify(answer.body)}`)
      if (write) client.lastWritten = i
      if (!write && answer.status === 200 && answer.body.data.n !== client.lastWritten) {
        failures.push(`a client read n=${String(answer.body.data.n)} after writing ${client.lastWritten}`)
      }
      if (random() < LOSS) {
        client.lost++
        lostTotal++
      } else if (answer.token !== undefined) {
        if (answer.token === '') failures.push('a cookie was cleared')
        client.token = answer.token
      }
      client.next = served.clock.now + think()
    }))
  }
  t.ok(lostTotal >= CLIENTS * REQUESTS * LOSS * 0.7, `responses really were lost (${lostTotal})`)
  t.same(failures, [], 'every request answered 200 with the data the client wrote, and no processed write is missing')
  t.equal(loggedOut, 0, `0 of ${CLIENTS} clients logged out`)
  t.notOk(served.logs.some((line) => line.includes('token-reuse')), 'no theft signal was raised')
})
