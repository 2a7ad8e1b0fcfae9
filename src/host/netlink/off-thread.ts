/**
 * Requests sent from a worker thread. The kernel handles an rtnetlink request inside sendmsg(),
 * and the `netlink` binding calls sendmsg() on the thread that sends: deleting a veth or macvlan
 * link takes 15 ms or more there (unregistering a device waits for RCU grace periods), which on
 * the main thread stalls every other Docker request. The worker owns a socket of its own (same
 * process, so the same network namespace) and answers with the replies or the errno.
 *
 * Callers see what an in-thread request gives: the same replies, NetlinkErrno for a refusal, the
 * same deadline sentence. A worker that cannot start sends nothing to the kernel, so its requests
 * run in this thread instead, as do all later ones; a worker that dies while requests are out
 * fails those (whether the kernel got them is unknown) and later ones run in this thread.
 *
 * The addon crashes the process (SIGSEGV) when a worker thread ends with a netlink socket open,
 * so a worker is never terminated: it is asked to close its socket and leave, and at process
 * exit every live worker is asked so and waited for (briefly), see closeAtExit.
 */
import { Worker } from 'node:worker_threads'
import { TsnetError, type ErrorKind } from '../../errors.js'
import { NetlinkErrno } from './errno.js'
import type { NlMessage } from './wire.js'

/** One request, as it crosses to the worker; `flags` as given to Rtnl.request. */
export interface ToWorker { id: number; type: number; flags: number; body: Uint8Array; doing: string }
/** Close the socket, say so in `closed`, and end (no request is taken after it). */
export interface CloseWorker { close: true }
export type WireMessage = Omit<NlMessage, 'payload'> & { payload: Uint8Array }
export type FromWorker =
  | { ready: true }
  | { startFailed: string }
  | { id: number; replies: WireMessage[] }
  | { id: number; errno: number }
  | { id: number; error: string; kind: ErrorKind }

/** The part of a Worker used here (unit tests give a fake). */
export interface WorkerPort {
  postMessage(msg: ToWorker | CloseWorker): void
  on(event: 'message', fn: (msg: FromWorker) => void): unknown
  on(event: 'error', fn: (err: Error) => void): unknown
  on(event: 'exit', fn: (code: number) => void): unknown
  ref(): void
  unref(): void
}

/** Shared with the worker: [0] becomes CLOSED once its socket is closed for good. */
export type ClosedFlag = Int32Array
export const CLOSED = 1
/** How long a process exit waits for the workers to close their sockets (a deletion takes ~15–30 ms). */
const EXIT_WAIT_MS = 1000

/** Sends a request in this thread instead (Rtnl.request without the worker). */
export type Inline = (type: number, flags: number, body: readonly Buffer[], doing: string) => Promise<NlMessage[]>

interface Pending { req: ToWorker; body: readonly Buffer[]; timer: NodeJS.Timeout; resolve: (r: NlMessage[]) => void; reject: (err: Error) => void }

/** The worker's module, next to this one: .ts when run from the sources (tests, benches), .js when built. */
export function startRequestWorker(timeoutMs: number, closed: ClosedFlag): WorkerPort {
  const ext = import.meta.url.endsWith('.ts') ? '.ts' : '.js'
  return new Worker(new URL(`./request-worker${ext}`, import.meta.url), { workerData: { timeoutMs, closed } }) as unknown as WorkerPort
}

const live = new Map<WorkerPort, ClosedFlag>()
let exitHooked = false
/**
 * Asks every live worker to close its socket when the process exits, and waits until each has
 * (or EXIT_WAIT_MS passed): Node ends worker threads at exit, and one ending with a socket open
 * crashes the process. Synchronous, as an 'exit' listener must be; a worker in a deletion answers
 * once the kernel is done with it.
 */
function closeAtExit(w: WorkerPort, closed: ClosedFlag): void {
  live.set(w, closed)
  w.on('exit', () => live.delete(w))
  if (exitHooked) return
  exitHooked = true
  process.on('exit', () => {
    for (const [worker] of live) worker.postMessage({ close: true })
    const until = Date.now() + EXIT_WAIT_MS
    for (const [, flag] of live) {
      while (Atomics.load(flag, 0) !== CLOSED && Date.now() < until) Atomics.wait(flag, 0, 0, until - Date.now())
    }
  })
}

export class OffThread {
  private worker: WorkerPort | undefined
  private ready = false
  /** The worker could not start or died: everything runs in this thread from then on. */
  private failed = false
  private nextId = 0
  private readonly pending = new Map<number, Pending>()

  constructor(private readonly timeoutMs: number, private readonly inline: Inline, private readonly start: (closed: ClosedFlag) => WorkerPort) {}

  request(type: number, flags: number, body: readonly Buffer[], doing: string): Promise<NlMessage[]> {
    const worker = this.failed ? undefined : this.open()
    if (!worker) return this.inline(type, flags, body, doing)
    return new Promise<NlMessage[]>((resolve, reject) => {
      const id = ++this.nextId
      // A copy: a small Buffer shares the pool's ArrayBuffer, which posting would copy whole.
      const req: ToWorker = { id, type, flags, body: new Uint8Array(Buffer.concat(body)), doing }
      const timer = setTimeout(() => this.settle(id, new TsnetError('host', `netlink: the kernel did not answer within ${this.timeoutMs} ms while trying to ${doing}`)), this.timeoutMs)
      if (this.pending.size === 0) worker.ref()
      this.pending.set(id, { req, body, timer, resolve, reject })
      worker.postMessage(req)
    })
  }

  /** Starts the worker ahead of its first request (nothing when it runs or could not start). */
  warm(): void {
    if (!this.failed) this.open()
  }

  /** Stops the worker; requests still waiting fail as the socket's do. The next request starts a new one. */
  close(): void {
    for (const p of this.detach()) p.reject(new TsnetError('host', 'netlink: the socket was closed'))
  }

  private open(): WorkerPort | undefined {
    if (this.worker) return this.worker
    let w: WorkerPort
    const closed: ClosedFlag = new Int32Array(new SharedArrayBuffer(4))
    try {
      w = this.start(closed)
    } catch {
      this.failed = true
      return undefined
    }
    closeAtExit(w, closed)
    w.on('message', (msg) => this.worker === w && this.receive(msg))
    w.on('error', (err) => this.worker === w && this.died(`it failed: ${err.message}`))
    w.on('exit', (code) => this.worker === w && this.died(`it exited with code ${code}`))
    w.unref()
    this.worker = w
    this.ready = false
    return w
  }

  private receive(msg: FromWorker): void {
    if ('ready' in msg) this.ready = true
    else if ('startFailed' in msg) this.died(msg.startFailed)
    else if ('replies' in msg) this.settle(msg.id, undefined, msg.replies.map((m) => ({ ...m, payload: Buffer.from(m.payload.buffer, m.payload.byteOffset, m.payload.byteLength) })))
    else if ('errno' in msg) this.settle(msg.id, new NetlinkErrno(msg.errno))
    else this.settle(msg.id, new TsnetError(msg.kind, msg.error))
  }

  private settle(id: number, err: Error | undefined, replies: NlMessage[] = []): void {
    const p = this.pending.get(id)
    if (!p) return // answered after its deadline
    clearTimeout(p.timer)
    this.pending.delete(id)
    if (this.pending.size === 0) this.worker?.unref()
    if (err) p.reject(err)
    else p.resolve(replies)
  }

  private died(why: string): void {
    const started = this.ready
    this.failed = true
    for (const p of this.detach()) {
      if (started) p.reject(new TsnetError('host', `netlink: the worker thread sending requests stopped (${why}); requests in flight were abandoned`))
      // It never got to its socket, so the kernel saw none of these: send them from here.
      else this.inline(p.req.type, p.req.flags, p.body, p.req.doing).then(p.resolve, p.reject)
    }
  }

  /** Forgets the worker and has it close its socket and end; returns the requests it had, their deadlines cleared. */
  private detach(): Pending[] {
    const w = this.worker
    this.worker = undefined
    this.ready = false
    const waiting = [...this.pending.values()]
    this.pending.clear()
    for (const p of waiting) clearTimeout(p.timer)
    w?.postMessage({ close: true })
    w?.unref()
    return waiting
  }
}
