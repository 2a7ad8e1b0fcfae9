/**
 * The worker thread of off-thread.ts: an Rtnl of its own that sends what the main thread hands
 * it and posts back the replies, the kernel's errno, or the TsnetError's kind and sentence. It
 * opens its socket first and says ready; when it cannot (the addon does not load in a worker, no
 * socket), it says why and takes no request, so the main thread sends them itself.
 */
import { parentPort, workerData } from 'node:worker_threads'
import { TsnetError } from '../../errors.js'
import { NetlinkErrno } from './errno.js'
import { CLOSED, type ClosedFlag, type CloseWorker, type FromWorker, type ToWorker } from './off-thread.js'
import { openRawSocket, Rtnl, type RawSocket } from './socket.js'

const port = parentPort
if (!port) throw new Error('request-worker runs as a worker thread only')
const { timeoutMs, closed } = workerData as { timeoutMs: number; closed: ClosedFlag }
const post = (msg: FromWorker) => port.postMessage(msg)

let first: RawSocket | undefined
try {
  first = openRawSocket()
} catch (err) {
  post({ startFailed: `cannot open a netlink socket in a worker thread: ${err instanceof Error ? err.message : String(err)}` })
  Atomics.store(closed, 0, CLOSED)
  port.close()
}

if (first) {
  const rtnl = new Rtnl({
    timeoutMs,
    offThread: false, // this is the thread requests are sent from
    openSocket: () => {
      const sock = first ?? openRawSocket()
      first = undefined
      return sock
    },
  })
  port.on('message', (msg: ToWorker | CloseWorker) => {
    if ('close' in msg) {
      // The socket must be closed before this thread ends: the addon crashes the process otherwise.
      rtnl.close()
      first?.close()
      Atomics.store(closed, 0, CLOSED)
      Atomics.notify(closed, 0)
      port.close()
      return
    }
    rtnl.request(msg.type, msg.flags, [Buffer.from(msg.body.buffer, msg.body.byteOffset, msg.body.byteLength)], msg.doing).then(
      // Copies: a reply's payload is a view into the whole received datagram.
      (replies) => post({ id: msg.id, replies: replies.map((m) => ({ ...m, payload: new Uint8Array(m.payload) })) }),
      (err: unknown) => post(err instanceof NetlinkErrno ? { id: msg.id, errno: err.errno }
        : err instanceof TsnetError ? { id: msg.id, error: err.message, kind: err.kind }
        : { id: msg.id, error: `netlink: ${err instanceof Error ? err.message : String(err)}`, kind: 'host' }),
    )
  })
  post({ ready: true })
}
