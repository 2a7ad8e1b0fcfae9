/**
 * The rtnetlink client: one NETLINK_ROUTE socket per process, opened on first use, bound to the
 * network namespace of the process that opens it. Requests are matched to replies by sequence
 * number; each has a deadline. Dumps run one at a time (the kernel refuses a second dump on a
 * socket while one is in progress, EBUSY) while changes go out concurrently.
 *
 * The socket comes from the `netlink` package (a prebuilt N-API binding: Node itself has no
 * AF_NETLINK sockets). Its message layer is not used: it groups multipart replies per socket
 * rather than per request and turns kernel errors into strings; the framing here is wire.ts.
 */
import { createRequire } from 'node:module'
import { endianness } from 'node:os'
import { TsnetError } from '../../errors.js'
import { NETLINK_ROUTE, NLM_F, NLMSG, RTM } from './constants.js'
import { type ClosedFlag, OffThread, startRequestWorker, type WorkerPort } from './off-thread.js'
import { decodeMessages, encodeMessage, errnoOf, type NlMessage } from './wire.js'
import { NetlinkErrno } from './errno.js'

/** The part of the package's RawNetlinkSocket used here (its own typings pull in @types/node 12). */
export interface RawSocket {
  send(msg: Uint8Array, options: { port?: number } | undefined, callback: (err?: Error) => void): void
  close(): void
  address(): { port: number }
  ref(): void
  unref(): void
  addMembership(group: number): void
  setRecvBufferSize(size: number): void
  on(event: 'message', fn: (msg: Buffer, rinfo: { port: number; truncated?: number }) => void): unknown
  on(event: 'truncatedMessage', fn: (msg: Buffer, rinfo: { port: number; truncated?: number }) => void): unknown
  on(event: 'error', fn: (err: Error & { errno?: number; code?: string }) => void): unknown
}

type RawSocketClass = new (protocol: number) => RawSocket

let rawSocketClass: RawSocketClass | undefined
/** Opens a raw NETLINK_ROUTE socket in the calling process's network namespace. */
export function openRawSocket(): RawSocket {
  if (endianness() !== 'LE') throw new TsnetError('host', 'netlink: tsnet supports little-endian machines only')
  rawSocketClass ??= (createRequire(import.meta.url)('netlink') as { RawNetlinkSocket: RawSocketClass }).RawNetlinkSocket
  return new rawSocketClass(NETLINK_ROUTE)
}

export interface RtnlOptions {
  /** Deadline of one request, dumps included (default 10 s). */
  timeoutMs?: number
  /** Messages one dump may return before it is abandoned (default 2,000,000): bounds memory. */
  maxDumpMessages?: number
  /** For unit tests: a socket of their own. */
  openSocket?: () => RawSocket
  /**
   * Link deletions sent from a worker thread (off-thread.ts), so that the kernel's slow unregister
   * does not stall this one: yes by default, unless openSocket is given (a fake socket lives in
   * this thread). For unit tests, a function starting a fake worker.
   */
  offThread?: boolean | ((closed: ClosedFlag) => WorkerPort)
}

interface Pending {
  dump: boolean
  doing: string
  replies: NlMessage[]
  interrupted: boolean
  timer: NodeJS.Timeout
  resolve: (r: { replies: NlMessage[]; interrupted: boolean }) => void
  reject: (err: Error) => void
}

const DUMP_RETRIES = 3

export class Rtnl {
  private sock: RawSocket | undefined
  private port = 0
  private seq = Math.floor(Math.random() * 0x7fffffff)
  private readonly pending = new Map<number, Pending>()
  private dumpQueue: Promise<unknown> = Promise.resolve()
  private readonly timeoutMs: number
  private readonly maxDumpMessages: number
  private readonly openSocket: () => RawSocket
  private readonly offThread: OffThread | undefined

  constructor(opts: RtnlOptions = {}) {
    this.timeoutMs = opts.timeoutMs ?? 10_000
    this.maxDumpMessages = opts.maxDumpMessages ?? 2_000_000
    this.openSocket = opts.openSocket ?? openRawSocket
    const off = opts.offThread ?? opts.openSocket === undefined
    if (off) {
      const start = typeof off === 'function' ? off : (closed: ClosedFlag) => startRequestWorker(this.timeoutMs, closed)
      this.offThread = new OffThread(this.timeoutMs, (...args) => this.inThread(...args), start)
    }
  }

  /**
   * A change or a single get, acknowledged. Resolves with the replies before the acknowledgement
   * (none for a change); rejects with NetlinkErrno when the kernel refuses, TsnetError otherwise.
   */
  async request(type: number, flags: number, body: readonly Buffer[], doing: string): Promise<NlMessage[]> {
    if (type === RTM.DELLINK && this.offThread) return this.offThread.request(type, flags, body, doing)
    // A process that creates links deletes them later: start the worker now, so that the first
    // deletion does not wait the ~0.1 s a worker takes to start (reads alone never start it).
    if (type === RTM.NEWLINK) this.offThread?.warm()
    return this.inThread(type, flags, body, doing)
  }

  private async inThread(type: number, flags: number, body: readonly Buffer[], doing: string): Promise<NlMessage[]> {
    return (await this.exchange(type, flags | NLM_F.REQUEST | NLM_F.ACK, body, doing, false)).replies
  }

  /** A dump (NLM_F_DUMP): every object of a kind. Retried when the kernel says the table changed under it. */
  dump(type: number, body: readonly Buffer[], doing: string): Promise<NlMessage[]> {
    const run = async (): Promise<NlMessage[]> => {
      for (let attempt = 1; ; attempt++) {
        const r = await this.exchange(type, NLM_F.REQUEST | NLM_F.DUMP, body, doing, true)
        if (!r.interrupted || attempt === DUMP_RETRIES) return r.replies
      }
    }
    const result = this.dumpQueue.then(run, run)
    this.dumpQueue = result.catch(() => undefined)
    return result
  }

  /** Closes the socket (and stops the worker); requests still waiting fail. The next request opens a new one. */
  close(): void {
    this.reset(new TsnetError('host', 'netlink: the socket was closed'))
    this.offThread?.close()
  }

  private open(): RawSocket {
    if (this.sock) return this.sock
    const sock = this.openSocket()
    sock.on('message', (buf, rinfo) => this.receive(sock, buf, rinfo.port))
    sock.on('truncatedMessage', () => this.reset(new TsnetError('host', 'netlink: a reply was truncated; requests in flight were abandoned')))
    sock.on('error', (err) => {
      if (this.sock === sock) this.reset(new TsnetError('host', `netlink: the socket failed (${err.code ?? err.message}); requests in flight were abandoned`, { cause: err }))
    })
    sock.unref()
    this.sock = sock
    this.port = sock.address().port
    return sock
  }

  private nextSeq(): number {
    do this.seq = (this.seq % 0xffffffff) + 1
    while (this.pending.has(this.seq))
    return this.seq
  }

  private exchange(type: number, flags: number, body: readonly Buffer[], doing: string, dump: boolean) {
    return new Promise<{ replies: NlMessage[]; interrupted: boolean }>((resolve, reject) => {
      let sock: RawSocket
      try {
        sock = this.open()
      } catch (err) {
        reject(new TsnetError('host', `netlink: cannot open a socket to ${doing}: ${err instanceof Error ? err.message : String(err)}`, { cause: err }))
        return
      }
      const seq = this.nextSeq()
      const timer = setTimeout(() => this.expire(seq), this.timeoutMs)
      if (this.pending.size === 0) sock.ref()
      this.pending.set(seq, { dump, doing, replies: [], interrupted: false, timer, resolve, reject })
      const failed = (err: unknown) =>
        this.settle(seq, new TsnetError('host', `netlink: cannot send the request to ${doing}: ${err instanceof Error ? err.message : String(err)}`, { cause: err }))
      try {
        sock.send(encodeMessage(type, flags, seq, this.port, body), undefined, (err) => err && failed(err))
      } catch (err) {
        failed(err)
      }
    })
  }

  private receive(sock: RawSocket, buf: Buffer, from: number): void {
    if (sock !== this.sock || from !== 0) return // only the kernel answers requests
    let msgs: NlMessage[]
    try {
      msgs = decodeMessages(buf)
    } catch (err) {
      this.reset(new TsnetError('host', `netlink: the kernel sent a malformed reply; requests in flight were abandoned`, { cause: err }))
      return
    }
    for (const msg of msgs) {
      const p = this.pending.get(msg.seq)
      if (!p) continue // the answer to a request that already timed out
      if (msg.type === NLMSG.ERROR) {
        const errno = errnoOf(msg)
        this.settle(msg.seq, errno === 0 ? undefined : new NetlinkErrno(errno))
      } else if (msg.type === NLMSG.DONE) {
        if (!p.dump) continue
        const errno = errnoOf(msg)
        this.settle(msg.seq, errno === 0 ? undefined : new NetlinkErrno(errno))
      } else if (msg.type !== NLMSG.NOOP) {
        if (msg.flags & NLM_F.DUMP_INTR) p.interrupted = true
        p.replies.push(msg)
        if (p.replies.length > this.maxDumpMessages) {
          this.settle(msg.seq, new TsnetError('host', `netlink: more than ${this.maxDumpMessages} replies to ${p.doing}; abandoned`))
          this.reset(new TsnetError('host', 'netlink: the socket was reset after an oversized dump'))
        }
      }
    }
  }

  private settle(seq: number, err: Error | undefined): void {
    const p = this.pending.get(seq)
    if (!p) return
    clearTimeout(p.timer)
    this.pending.delete(seq)
    if (this.pending.size === 0) this.sock?.unref()
    if (err) p.reject(err)
    else p.resolve({ replies: p.replies, interrupted: p.interrupted })
  }

  private expire(seq: number): void {
    const p = this.pending.get(seq)
    if (!p) return
    this.settle(seq, new TsnetError('host', `netlink: the kernel did not answer within ${this.timeoutMs} ms while trying to ${p.doing}`))
    // A dump left running would make the next one fail with EBUSY: start again on a fresh socket.
    if (p.dump) this.reset(new TsnetError('host', 'netlink: the socket was reset after a dump timed out'))
  }

  private reset(err: TsnetError): void {
    const sock = this.sock
    this.sock = undefined
    for (const seq of [...this.pending.keys()]) this.settle(seq, err)
    try {
      sock?.close()
    } catch {
      // already closed
    }
  }
}

let shared: Rtnl | undefined
/** The process's rtnetlink client (the socket opens on the first request). */
export function sharedRtnl(): Rtnl {
  shared ??= new Rtnl()
  return shared
}
