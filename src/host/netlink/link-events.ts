/**
 * Link events: a second NETLINK_ROUTE socket, joined to the RTNLGRP_LINK multicast group, that
 * hears every link added, changed or deleted in the namespace it was opened in.
 *
 * What the kernel delivers (checked by test/integration/netlink-events.test.ts):
 * - a new link: RTM_NEWLINK with ifi_change = 0xffffffff ('add'), then more RTM_NEWLINKs as its
 *   state settles ('change');
 * - a rename: one RTM_NEWLINK carrying the new name only, same index ('change'); the old name is
 *   not in the message, so this module remembers index → name and reports it as `previousName`;
 * - a delete: RTM_DELLINK with the link's last name and attributes ('delete'); deleting a veth
 *   deletes both ends, one event each.
 * When the socket's buffer overflows (ENOBUFS) events were lost: `onOverflow` says so, and the
 * listener should read the whole link table again.
 */
import { TsnetError } from '../../errors.js'
import { RTM, RTNLGRP_LINK } from './constants.js'
import { decodeLink, type Link } from './links.js'
import { openRawSocket, type RawSocket } from './socket.js'
import { decodeMessages } from './wire.js'

export interface LinkEvent {
  type: 'add' | 'change' | 'delete'
  index: number
  name: string
  /** The name this index had before, when the event renamed it. */
  previousName?: string
  alias?: string
  kind?: string
  link: Link
}

export interface LinkWatchOptions {
  /** Events were lost (the socket's buffer overflowed): re-read the link table. */
  onOverflow?: () => void
  /** The socket failed for another reason; the watch has stopped. */
  onError?: (err: TsnetError) => void
  /** Receive buffer in bytes (default 4 MiB; the kernel caps it at net.core.rmem_max). */
  receiveBuffer?: number
  openSocket?: () => RawSocket
}

export interface LinkWatch {
  /** Tells the watch the names links have now (e.g. from listLinks), so renames of older links report `previousName`. */
  seed(links: readonly Link[]): void
  stop(): void
}

/** The ifi_change value the kernel sends when it registers a new device. */
const CHANGE_ALL = 0xffffffff

export function watchLinks(onEvent: (e: LinkEvent) => void, opts: LinkWatchOptions = {}): LinkWatch {
  const sock = (opts.openSocket ?? openRawSocket)()
  const names = new Map<number, string>()
  let stopped = false
  const stop = () => {
    if (stopped) return
    stopped = true
    try {
      sock.close()
    } catch {
      // already closed
    }
  }
  try {
    sock.setRecvBufferSize(opts.receiveBuffer ?? 4 << 20)
    sock.addMembership(RTNLGRP_LINK)
  } catch (err) {
    stop()
    throw new TsnetError('host', `netlink: cannot subscribe to link events: ${err instanceof Error ? err.message : String(err)}`, { cause: err })
  }
  sock.unref() // a watch alone does not keep the process alive

  sock.on('message', (buf, rinfo) => {
    if (stopped || rinfo.port !== 0) return // only the kernel speaks on this group
    let msgs
    try {
      msgs = decodeMessages(buf)
    } catch {
      opts.onOverflow?.() // a datagram we cannot read is as good as lost
      return
    }
    for (const msg of msgs) {
      if (msg.type !== RTM.NEWLINK && msg.type !== RTM.DELLINK) continue
      const link = decodeLink(msg)
      if (!link) continue
      const before = names.get(link.index)
      let type: LinkEvent['type']
      if (msg.type === RTM.DELLINK) {
        type = 'delete'
        names.delete(link.index)
      } else {
        type = msg.payload.readUInt32LE(12) === CHANGE_ALL && before === undefined ? 'add' : 'change'
        names.set(link.index, link.name)
      }
      onEvent({
        type,
        index: link.index,
        name: link.name,
        ...(before !== undefined && before !== link.name ? { previousName: before } : {}),
        ...(link.alias ? { alias: link.alias } : {}),
        ...(link.kind ? { kind: link.kind } : {}),
        link,
      })
    }
  })
  sock.on('truncatedMessage', () => opts.onOverflow?.())
  sock.on('error', (err) => {
    if (stopped) return
    if (err.code === 'ENOBUFS') {
      opts.onOverflow?.()
      return
    }
    stop()
    opts.onError?.(new TsnetError('host', `netlink: link events stopped: ${err.code ?? err.message}`, { cause: err }))
  })

  return {
    seed(links) {
      // Events already heard are newer than a listing taken around the same time: they win.
      for (const l of links) if (!names.has(l.index)) names.set(l.index, l.name)
    },
    stop,
  }
}
