// The rtnetlink client's request/reply machinery on a fake socket: sequence matching, multipart
// dumps one at a time, deadlines, kernel-only replies, socket failures, the memory bound.
import t from 'tap'
import { EventEmitter } from 'node:events'
import { NLM_F, NLMSG, RTM } from '../../src/host/netlink/constants.js'
import { NetlinkErrno } from '../../src/host/netlink/errno.js'
import { Rtnl, type RawSocket } from '../../src/host/netlink/socket.js'
import { decodeMessages, encodeMessage, type NlMessage } from '../../src/host/netlink/wire.js'
import { TsnetError } from '../../src/errors.js'

class FakeSocket extends EventEmitter {
  sent: NlMessage[] = []
  closed = false
  refs = 0
  send(msg: Uint8Array, _o: unknown, cb: (err?: Error) => void) {
    this.sent.push(...decodeMessages(Buffer.from(msg)))
    queueMicrotask(() => cb())
  }
  close() { this.closed = true }
  address() { return { port: 4242 } }
  ref() { this.refs = 1 }
  unref() { this.refs = 0 }
  addMembership() {}
  setRecvBufferSize() {}
  /** The kernel answers: messages in one datagram, from port 0 unless told otherwise. */
  reply(msgs: Array<[type: number, flags: number, seq: number, payload?: Buffer]>, port = 0) {
    const buf = Buffer.concat(msgs.map(([type, flags, seq, payload]) => encodeMessage(type, flags, seq, port, payload ? [payload] : [])))
    this.emit('message', buf, { port })
  }
  byType(type: number): NlMessage[] {
    return this.sent.filter((m) => m.type === type)
  }
}

const errPayload = (errno: number) => {
  const b = Buffer.alloc(20)
  b.writeInt32LE(-errno, 0)
  return b
}
const ack = (seq: number): [number, number, number, Buffer] => [NLMSG.ERROR, 0x100, seq, errPayload(0)]
const tick = () => new Promise((r) => setImmediate(r))

function client(opts: { timeoutMs?: number; maxDumpMessages?: number } = {}) {
  const sockets: FakeSocket[] = []
  const rtnl = new Rtnl({ ...opts, openSocket: () => { const s = new FakeSocket(); sockets.push(s); return s as unknown as RawSocket } })
  return { rtnl, sockets, sock: () => sockets[sockets.length - 1]! }
}

t.test('opens lazily; a request carries REQUEST|ACK, its seq and port; replies before the ack are returned', async (t) => {
  const { rtnl, sockets, sock } = client()
  t.equal(sockets.length, 0, 'no socket before the first request')
  const p = rtnl.request(RTM.GETLINK, 0, [Buffer.alloc(16)], 'read link x')
  await tick()
  const sent = sock().sent[0]!
  t.equal(sent.flags, NLM_F.REQUEST | NLM_F.ACK)
  t.equal(sent.port, 4242)
  t.equal(sock().refs, 1, 'referenced while a request waits')
  sock().reply([[RTM.NEWLINK, 0, sent.seq, Buffer.alloc(16)], ack(sent.seq)])
  const replies = await p
  t.same(replies.map((m) => m.type), [RTM.NEWLINK])
  t.equal(sock().refs, 0, 'unreferenced when idle: the socket alone does not keep the process alive')
  rtnl.close()
  t.ok(sock().closed, 'close() closes it')
})

t.test('replies are matched by sequence number; strangers and unknown seqs are ignored', async (t) => {
  const { rtnl, sock } = client()
  const a = rtnl.request(RTM.NEWLINK, 0, [], 'create link a')
  const b = rtnl.request(RTM.NEWLINK, 0, [], 'create link b')
  await tick()
  const [sa, sb] = sock().sent.map((m) => m.seq)
  t.not(sa, sb, 'distinct sequence numbers')
  sock().reply([ack(sb!)], 777) // not from the kernel
  sock().reply([ack(12345)]) // nobody asked
  sock().reply([[NLMSG.ERROR, 0, sb!, errPayload(17)]])
  sock().reply([ack(sa!)])
  t.same(await a, [], 'a: acknowledged')
  const err = await b.catch((e: unknown) => e)
  t.ok(err instanceof NetlinkErrno && err.code === 'EEXIST', 'b: refused with EEXIST, not confused with a')
})

t.test('a request without an answer fails at its deadline; a late answer is dropped; the socket stays', async (t) => {
  const { rtnl, sockets, sock } = client({ timeoutMs: 50 })
  const p = rtnl.request(RTM.DELLINK, 0, [], 'delete link slow')
  await tick()
  const seq = sock().sent[0]!.seq
  const err = await p.catch((e: unknown) => e)
  t.ok(err instanceof TsnetError)
  t.equal((err as TsnetError).message, 'netlink: the kernel did not answer within 50 ms while trying to delete link slow')
  sock().reply([ack(seq)])
  const q = rtnl.request(RTM.DELLINK, 0, [], 'delete link next')
  await tick()
  sock().reply([ack(sock().sent[1]!.seq)])
  await q
  t.equal(sockets.length, 1, 'same socket')
})

t.test('dumps: parts collected until DONE, one dump at a time, DONE with an error, interrupted dumps retried', async (t) => {
  const { rtnl, sock } = client()
  const d1 = rtnl.dump(RTM.GETLINK, [Buffer.alloc(16)], 'list links')
  const d2 = rtnl.dump(RTM.GETADDR, [Buffer.alloc(8)], 'list addresses')
  const change = rtnl.request(RTM.NEWLINK, 0, [], 'create link c')
  await tick()
  t.same(sock().sent.map((m) => m.type).sort(), [RTM.NEWLINK, RTM.GETLINK], 'the second dump waits; a change does not')
  const s1 = sock().byType(RTM.GETLINK)[0]!
  t.equal(s1.flags, NLM_F.REQUEST | NLM_F.DUMP)
  sock().reply([[RTM.NEWLINK, NLM_F.MULTI, s1.seq], [RTM.NEWLINK, NLM_F.MULTI, s1.seq]])
  sock().reply([ack(sock().byType(RTM.NEWLINK)[0]!.seq)]) // the change's ack between dump parts
  sock().reply([[RTM.NEWLINK, NLM_F.MULTI, s1.seq], [NLMSG.DONE, NLM_F.MULTI, s1.seq, Buffer.alloc(4)]])
  t.equal((await d1).length, 3, 'three parts')
  await change
  await tick()
  const s2 = sock().byType(RTM.GETADDR)[0]!
  t.ok(s2, 'then the second dump goes out')
  sock().reply([[RTM.NEWADDR, NLM_F.MULTI | NLM_F.DUMP_INTR, s2.seq], [NLMSG.DONE, NLM_F.MULTI, s2.seq, Buffer.alloc(4)]])
  await tick()
  const retry = sock().byType(RTM.GETADDR)[1]!
  t.ok(retry, 'an interrupted dump is asked again')
  sock().reply([[NLMSG.DONE, NLM_F.MULTI, retry.seq, errPayload(16)]])
  const err = await d2.catch((e: unknown) => e)
  t.ok(err instanceof NetlinkErrno && err.code === 'EBUSY', 'DONE carrying an error rejects')
})

t.test('a dump that times out resets the socket; so do socket errors and oversized dumps', async (t) => {
  const { rtnl, sockets, sock } = client({ timeoutMs: 50, maxDumpMessages: 2 })
  const d = rtnl.dump(RTM.GETLINK, [], 'list links').catch((e: TsnetError) => e.message)
  await tick()
  await new Promise((r) => setTimeout(r, 10))
  const other = rtnl.request(RTM.NEWLINK, 0, [], 'create link o').catch((e: TsnetError) => e.message)
  t.match(await d, /did not answer within 50 ms while trying to list links/)
  t.match(await other, /socket was reset after a dump timed out/, 'requests in flight fail with it')
  t.ok(sockets[0]!.closed, 'closed')

  const big = rtnl.dump(RTM.GETLINK, [], 'list links')
  await tick()
  t.equal(sockets.length, 2, 'a new socket for the next request')
  const seq = sock().sent[0]!.seq
  sock().reply([[RTM.NEWLINK, NLM_F.MULTI, seq], [RTM.NEWLINK, NLM_F.MULTI, seq], [RTM.NEWLINK, NLM_F.MULTI, seq]])
  t.match(await big.catch((e: TsnetError) => e.message), 'more than 2 replies to list links; abandoned')

  const p = rtnl.request(RTM.NEWLINK, 0, [], 'create link e')
  await tick()
  sock().emit('error', Object.assign(new Error('recvmsg'), { code: 'ENOBUFS' }))
  t.match(await p.catch((e: TsnetError) => e.message), 'netlink: the socket failed (ENOBUFS); requests in flight were abandoned')
  t.ok(sock().closed)
})
