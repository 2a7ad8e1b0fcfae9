// Link deletions sent from a worker thread (off-thread.ts): routing, the answers callers see
// (the same as in-thread ones: replies, errnos, deadlines), the worker's reference, and what
// happens when the worker cannot start, dies, or is closed. A fake worker stands in, except in
// the last test, which starts the real one and asks it read-only things.
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { EventEmitter } from 'node:events'
import { join } from 'node:path'
import { NLMSG, RTM } from '../../src/host/netlink/constants.js'
import { NetlinkErrno } from '../../src/host/netlink/errno.js'
import { deleteLink } from '../../src/host/netlink/link-changes.js'
import { linkSelector } from '../../src/host/netlink/links.js'
import { CLOSED, type ClosedFlag, OffThread, startRequestWorker, type CloseWorker, type FromWorker, type ToWorker, type WorkerPort } from '../../src/host/netlink/off-thread.js'
import { Rtnl, type RawSocket } from '../../src/host/netlink/socket.js'
import { decodeMessages, encodeMessage, type NlMessage } from '../../src/host/netlink/wire.js'
import { TsnetError } from '../../src/errors.js'

/** In-thread socket: answers every request with `answer` (an errno, 0 an ack). */
class FakeSocket extends EventEmitter {
  sent: NlMessage[] = []
  constructor(private readonly answer: number) { super() }
  send(msg: Uint8Array, _o: unknown, cb: (err?: Error) => void) {
    const [m] = decodeMessages(Buffer.from(msg))
    this.sent.push(m!)
    const p = Buffer.alloc(20)
    p.writeInt32LE(-this.answer, 0)
    queueMicrotask(() => { cb(); this.emit('message', encodeMessage(NLMSG.ERROR, 0, m!.seq, 0, [p]), { port: 0 }) })
  }
  close() {}
  address() { return { port: 4242 } }
  ref() {}
  unref() {}
  addMembership() {}
  setRecvBufferSize() {}
}

class FakeWorker extends EventEmitter implements WorkerPort {
  posted: ToWorker[] = []
  refs = 0
  /** Asked to close its socket and end (a worker is never terminated: see off-thread.ts). */
  closing = false
  /** The flag a real worker sets once its socket is closed: the process's exit hook waits for it. */
  flag: ClosedFlag | undefined
  postMessage(msg: ToWorker | CloseWorker) {
    if (!('close' in msg)) this.posted.push(msg)
    else {
      this.closing = true
      if (this.flag) Atomics.store(this.flag, 0, CLOSED)
    }
  }
  ref() { this.refs = 1 }
  unref() { this.refs = 0 }
  say(msg: FromWorker) { this.emit('message', msg) }
}

const tick = () => new Promise((r) => setImmediate(r))

// Closed at the end, so that the process's exit hook finds every (fake) worker closed and does not wait.
const clients: Rtnl[] = []
t.teardown(() => { for (const r of clients) r.close() })

function client(opts: { timeoutMs?: number; answer?: number; start?: () => FakeWorker } = {}) {
  const workers: FakeWorker[] = []
  const sockets: FakeSocket[] = []
  const start = opts.start ?? (() => { const w = new FakeWorker(); workers.push(w); queueMicrotask(() => w.say({ ready: true })); return w })
  const rtnl = new Rtnl({
    ...(opts.timeoutMs ? { timeoutMs: opts.timeoutMs } : {}),
    openSocket: () => { const s = new FakeSocket(opts.answer ?? 0); sockets.push(s); return s as unknown as RawSocket },
    offThread: (closed) => Object.assign(start(), { flag: closed }),
  })
  clients.push(rtnl)
  return { rtnl, workers, sockets, worker: () => workers[workers.length - 1]! }
}

const caught = (p: Promise<unknown>) => p.then(() => undefined, (e: unknown) => e)

t.test('a link deletion goes to the worker, started by the first create; other requests stay in this thread', async (t) => {
  const { rtnl, workers, sockets, worker } = client()
  await rtnl.request(RTM.GETLINK, 0, [Buffer.alloc(16)], 'read link a')
  t.equal(workers.length, 0, 'a read starts no worker')
  await rtnl.request(RTM.NEWLINK, 0, [Buffer.alloc(16)], 'create link a')
  t.equal(workers.length, 1, 'a create starts it, ahead of the deletions to come')
  t.same(sockets[0]!.sent.map((m) => m.type), [RTM.GETLINK, RTM.NEWLINK], 'both sent in this thread')
  await rtnl.request(RTM.NEWLINK, 0, [Buffer.alloc(16)], 'create link b')
  t.equal(workers.length, 1, 'one worker')
  const p = deleteLink(rtnl, 'tslp0')
  await tick()
  t.equal(workers.length, 1, 'the deletion uses it')
  const req = worker().posted[0]!
  t.equal(req.type, RTM.DELLINK)
  t.equal(req.flags, 0, 'flags as given: the worker adds REQUEST|ACK as Rtnl.request does')
  t.same(Buffer.from(req.body), Buffer.concat(linkSelector('tslp0')), 'the body, concatenated')
  t.equal(req.doing, 'delete link tslp0')
  t.equal(worker().refs, 1, 'referenced while a deletion waits')
  worker().say({ id: req.id, replies: [] })
  t.equal(await p, undefined)
  t.equal(worker().refs, 0, 'unreferenced when idle: the worker alone does not keep the process alive')
  t.equal(sockets[0]!.sent.length, 3, 'the deletion did not use the in-thread socket')
})

t.test('answers from the worker are what an in-thread request gives', async (t) => {
  const { rtnl, worker } = client()
  // ENODEV: the same "no link named" as in this thread.
  const inline = new Rtnl({ openSocket: () => new FakeSocket(19) as unknown as RawSocket })
  const expected = (await caught(deleteLink(inline, 'tslpgone'))) as TsnetError
  t.equal(expected.kind, 'notfound')
  const p = caught(deleteLink(rtnl, 'tslpgone'))
  await tick()
  worker().say({ id: worker().posted[0]!.id, errno: 19 })
  const err = (await p) as TsnetError
  t.ok(err instanceof TsnetError)
  t.same({ kind: err.kind, message: err.message, context: err.context }, { kind: expected.kind, message: expected.message, context: expected.context }, 'ENODEV: same error as in-thread')
  t.ok(err.cause instanceof NetlinkErrno && err.cause.code === 'ENODEV', 'caused by the kernel errno')

  // A TsnetError of the worker's Rtnl (its socket failed) keeps its kind and sentence.
  const q = caught(rtnl.request(RTM.DELLINK, 0, [], 'delete link x'))
  await tick()
  worker().say({ id: worker().posted[1]!.id, error: 'netlink: the socket failed (ENOBUFS); requests in flight were abandoned', kind: 'host' })
  const e2 = (await q) as TsnetError
  t.ok(e2 instanceof TsnetError)
  t.equal(e2.kind, 'host')
  t.equal(e2.message, 'netlink: the socket failed (ENOBUFS); requests in flight were abandoned')

  // Replies come back as Buffers.
  const r = rtnl.request(RTM.DELLINK, 0, [], 'delete link y')
  await tick()
  worker().say({ id: worker().posted[2]!.id, replies: [{ type: RTM.NEWLINK, flags: 0, seq: 9, port: 0, payload: new Uint8Array([1, 2, 3]) }] })
  const [m] = await r
  t.ok(Buffer.isBuffer(m!.payload))
  t.same([...m!.payload], [1, 2, 3])
})

t.test('a deletion without an answer fails at its deadline, with the in-thread sentence; a late answer is dropped', async (t) => {
  const { rtnl, worker } = client({ timeoutMs: 50 })
  const p = caught(deleteLink(rtnl, 'slow'))
  await tick()
  const id = worker().posted[0]!.id
  const err = (await p) as TsnetError
  t.ok(err instanceof TsnetError)
  t.equal(err.message, 'netlink: the kernel did not answer within 50 ms while trying to delete link slow')
  t.equal(err.kind, 'host')
  t.equal(worker().refs, 0, 'unreferenced after the deadline')
  worker().say({ id, replies: [] }) // late: nobody waits for it
  const q = deleteLink(rtnl, 'next')
  await tick()
  worker().say({ id: worker().posted[1]!.id, replies: [] })
  await q
  t.notOk(worker().closing, 'the same worker goes on')
})

t.test('a worker that cannot start: its requests and all later ones are sent from this thread', async (t) => {
  const thrown = client({ start: () => { throw new Error('no threads') } })
  await deleteLink(thrown.rtnl, 'a')
  t.equal(thrown.sockets[0]!.sent[0]!.type, RTM.DELLINK, 'sent in this thread')

  const w = new FakeWorker()
  let starts = 0
  const said = client({ start: () => { starts++; return w } })
  said.rtnl.close() // nothing started yet: close() does not start one either
  t.equal(starts, 0)
  const p = deleteLink(said.rtnl, 'b')
  await tick()
  t.equal(w.posted.length, 1, 'posted before the worker said anything')
  w.say({ startFailed: 'cannot open a netlink socket in a worker thread: nope' })
  await p
  t.equal(said.sockets[0]!.sent.filter((m) => m.type === RTM.DELLINK).length, 1, 'then sent from here, once')
  t.ok(w.closing, 'asked to end')
  await deleteLink(said.rtnl, 'c')
  t.equal(said.sockets[0]!.sent.length, 2, 'later ones too')
  t.equal(starts, 1, 'no second try')

  const inlineErr = client({ answer: 19, start: () => { const x = new FakeWorker(); queueMicrotask(() => x.emit('exit', 1)); return x } })
  const e = (await caught(deleteLink(inlineErr.rtnl, 'gone'))) as TsnetError
  t.equal(e.message, 'no link named gone', 'an exit before ready: the in-thread answer, errors included')
})

t.test('a worker that dies with deletions out fails them (the kernel may have done them); later ones run here', async (t) => {
  const { rtnl, worker, sockets } = client()
  const p = caught(deleteLink(rtnl, 'a'))
  await tick()
  worker().emit('error', new Error('boom'))
  const err = (await p) as TsnetError
  t.ok(err instanceof TsnetError)
  t.equal(err.message, 'netlink: the worker thread sending requests stopped (it failed: boom); requests in flight were abandoned')
  t.ok(worker().closing, 'asked to end')
  worker().emit('exit', 1) // after the error event: ignored
  await deleteLink(rtnl, 'b')
  t.equal(sockets[0]!.sent[0]!.type, RTM.DELLINK, 'in this thread')
})

t.test('close() stops the worker and fails what waits, as the socket does; the next deletion starts a new one', async (t) => {
  const { rtnl, workers, worker } = client()
  const p = caught(deleteLink(rtnl, 'a'))
  await tick()
  rtnl.close()
  const err = (await p) as TsnetError
  t.equal(err.message, 'netlink: the socket was closed')
  t.ok(workers[0]!.closing, 'the worker is asked to close its socket and end')
  t.equal(workers[0]!.refs, 0, 'and does not keep the process alive meanwhile')
  workers[0]!.emit('exit', 1) // the old worker's exit is not a failure
  const q = deleteLink(rtnl, 'b')
  await tick()
  t.equal(workers.length, 2, 'a new worker')
  worker().say({ id: worker().posted[0]!.id, replies: [] })
  await q
})

t.test('no worker for a fake socket unless asked; the worker module refuses to run in the main thread', async (t) => {
  const s = new FakeSocket(0)
  const rtnl = new Rtnl({ openSocket: () => s as unknown as RawSocket })
  await deleteLink(rtnl, 'a')
  t.equal(s.sent[0]!.type, RTM.DELLINK, 'in this thread')
  await t.rejects(import('../../src/host/netlink/request-worker.js'), /runs as a worker thread only/)
})

t.test('the real worker: the addon loads in a worker thread; a read and a refused deletion answer as in this thread', async (t) => {
  // Read-only for the kernel: a link that does not exist is not deleted (ENODEV, or EPERM without CAP_NET_ADMIN).
  const off = new OffThread(10_000, () => Promise.reject(new Error('not inline')), (closed) => startRequestWorker(10_000, closed))
  t.teardown(() => off.close())
  const lo = linkSelector('lo')
  const inline = new Rtnl({ offThread: false })
  t.teardown(() => inline.close())
  const [viaWorker] = await off.request(RTM.GETLINK, 0, lo, 'read link lo')
  const [here] = await inline.request(RTM.GETLINK, 0, lo, 'read link lo')
  t.equal(viaWorker!.type, RTM.NEWLINK)
  t.equal(viaWorker!.payload.readInt32LE(4), here!.payload.readInt32LE(4), 'the same ifindex for lo: same network namespace')
  const missing = linkSelector('tslpnosuch0')
  const a = await caught(off.request(RTM.DELLINK, 0, missing, 'delete link tslpnosuch0'))
  const b = await caught(inline.request(RTM.DELLINK, 0, missing, 'delete link tslpnosuch0'))
  t.ok(a instanceof NetlinkErrno, 'a kernel errno')
  t.equal((a as NetlinkErrno).code, (b as NetlinkErrno).code, `the same errno (${(b as NetlinkErrno).code})`)
})

t.test('a process with a worker ends cleanly: idle, or exiting with a request out (the addon would crash it if the worker ended with its socket open)', async (t) => {
  const module = new URL('../../src/host/netlink/off-thread.ts', import.meta.url).href
  const script = (exitAtOnce: boolean) => `
    import { OffThread, startRequestWorker } from ${JSON.stringify(module)}
    const lo = [Buffer.alloc(16), Buffer.from([7, 0, 3, 0, 0x6c, 0x6f, 0, 0])] // ifinfomsg, IFLA_IFNAME "lo"
    const off = new OffThread(10000, () => Promise.reject(new Error('the worker did not start')), (c) => startRequestWorker(10000, c))
    await off.request(18, 0, lo, 'read link lo') // RTM_GETLINK: read-only
    if (${exitAtOnce}) { off.request(18, 0, lo, 'read link lo'); process.exit(0) }
    console.log('idle; no close()')`
  // Files, not -e: a worker inherits the flags, and --input-type refuses a worker's file (the worker would not start).
  const dir = t.testdir({ 'idle.mjs': script(false), 'exit.mjs': script(true) })
  for (const exitAtOnce of [false, true]) {
    const r = spawnSync(process.execPath, [...process.execArgv, join(dir, exitAtOnce ? 'exit.mjs' : 'idle.mjs')], { encoding: 'utf8', timeout: 60_000 })
    t.equal(r.signal, null, `${exitAtOnce ? 'process.exit with a request out' : 'left idle'}: no signal (${r.stderr.slice(-300)})`)
    t.equal(r.status, 0, 'exit code 0: the worker does not keep the process alive, nor crash it')
  }
})
