/**
 * Sends tsnet's announcements (core/vxlan-frame.ts) to the other hosts' VXLAN port. The socket
 * is bound to this node's VTEP address, so the receiving kernel learns that address for the
 * container's MAC, and the receiver's TSNET-INPUT lets it in as it lets in any VXLAN of a known
 * host. An ephemeral source port: the kernel's own VXLAN socket holds the destination port here.
 */
import { createSocket, type Socket } from 'node:dgram'
import { parseIp } from '../core/addr.js'

/** Sends one UDP datagram from `local` to each peer's VXLAN port. */
export interface Announcer {
  send(local: string, peers: readonly string[], port: number, payload: Buffer): Promise<void>
}

/** Per datagram; the announcement is best effort and must never hang. */
const SEND_TIMEOUT_MS = 2000

function bind(socket: Socket, address: string): Promise<void> {
  return new Promise((resolve, reject) => {
    socket.once('error', reject)
    socket.bind({ address, port: 0, exclusive: true }, () => {
      socket.off('error', reject)
      resolve()
    })
  })
}

function sendOne(socket: Socket, payload: Buffer, port: number, peer: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`sending to ${peer}:${port} took over ${SEND_TIMEOUT_MS} ms`)), SEND_TIMEOUT_MS)
    socket.send(payload, port, peer, (err) => {
      clearTimeout(timer)
      if (err) reject(err)
      else resolve()
    })
  })
}

export class UdpAnnouncer implements Announcer {
  async send(local: string, peers: readonly string[], port: number, payload: Buffer): Promise<void> {
    const family = parseIp(local)?.family
    if (!family) throw new Error(`${local} is not an address`)
    const socket = createSocket(family === 4 ? 'udp4' : 'udp6')
    try {
      await bind(socket, local)
      const failures: string[] = []
      for (const peer of peers) {
        if (parseIp(peer)?.family !== family) continue
        await sendOne(socket, payload, port, peer).catch((err: unknown) => failures.push(`${peer}: ${err instanceof Error ? err.message : String(err)}`))
      }
      if (failures.length > 0) throw new Error(`not sent to ${failures.join('; ')}`)
    } finally {
      socket.close()
    }
  }
}
