/**
 * Host ports tsnet publishes are held by a socket of tsnet's own, as Docker does, so no other
 * process can take them while the DNAT rule sends their traffic to a container. Connections
 * never reach these sockets (DNAT rewrites them first); any that do are closed at once.
 */
import { createSocket, type Socket as UdpSocket } from 'node:dgram'
import { createServer, type Server } from 'node:net'
import type { Family } from '../core/addr.js'
import { conflict, invalid } from '../errors.js'
import { yieldToLoop } from '../util/yield.js'

export interface Binding {
  family: Family
  /** Address to bind: a host address, or 0.0.0.0 / :: for all. */
  address: string
}

export interface Reservation {
  port: number
  release(): Promise<void>
}

export interface PortReserver {
  /**
   * Holds `proto` port on every binding, taking the first of `candidates` free on all of them
   * (undefined: one the kernel picks from the ephemeral range). Throws a conflict naming the port
   * when none is free, an invalid error when an address is not the host's. Callers pass short
   * lists (the publisher hands over a range a chunk at a time); a long one is still served with
   * the event loop running between tries.
   */
  reserve(proto: 'tcp' | 'udp' | 'sctp', bindings: Binding[], candidates: number[] | undefined): Promise<Reservation>
}

type Held = { close(): Promise<void> }

function holdTcp(b: Binding, port: number): Promise<{ held: Held; port: number }> {
  return new Promise((resolve, reject) => {
    const server: Server = createServer((sock) => sock.destroy())
    server.once('error', reject)
    server.listen({ host: b.address, port, exclusive: true, ipv6Only: b.family === 6, backlog: 1 }, () => {
      server.removeListener('error', reject)
      server.on('error', () => undefined)
      const addr = server.address()
      resolve({ port: typeof addr === 'object' && addr ? addr.port : port, held: { close: () => new Promise((r) => server.close(() => r())) } })
    })
  })
}

function holdUdp(b: Binding, port: number): Promise<{ held: Held; port: number }> {
  return new Promise((resolve, reject) => {
    const sock: UdpSocket = createSocket({ type: b.family === 4 ? 'udp4' : 'udp6', ipv6Only: b.family === 6 })
    sock.once('error', reject)
    sock.on('message', () => undefined)
    sock.bind({ address: b.address, port, exclusive: true }, () => {
      sock.removeListener('error', reject)
      sock.on('error', () => undefined)
      resolve({ port: sock.address().port, held: { close: () => new Promise((r) => sock.close(() => r())) } })
    })
  })
}

/** The kernel has no sctp sockets here; a bound and released udp socket still proves the address is the host's. */
async function probeAddress(b: Binding): Promise<{ held: Held; port: number }> {
  const { held } = await holdUdp(b, 0)
  await held.close()
  return { port: 0, held: { close: async () => undefined } }
}

const code = (err: unknown) => (err as NodeJS.ErrnoException).code
/** Tries between two turns of the event loop: a bind completes without one, so a long list would hold the daemon. */
const TRIES_PER_TURN = 16

export class SocketPortReserver implements PortReserver {
  async reserve(proto: 'tcp' | 'udp' | 'sctp', bindings: Binding[], candidates: number[] | undefined): Promise<Reservation> {
    const hold = proto === 'tcp' ? holdTcp : proto === 'udp' ? holdUdp : probeAddress
    const tries = candidates ?? Array.from({ length: 16 }, () => 0)
    let busy: string | undefined
    let tried = 0
    for (const candidate of tries) {
      if (++tried % TRIES_PER_TURN === 0) await yieldToLoop()
      const held: Held[] = []
      let port = candidate
      try {
        for (const b of bindings) {
          const r = await hold(b, port)
          held.push(r.held)
          if (port === 0) port = r.port
        }
        if (proto === 'sctp' && port === 0) throw invalid('sctp host port 0 cannot be chosen here: give a host port for sctp mappings')
        return { port, release: async () => { await Promise.all(held.map((h) => h.close())) } }
      } catch (err) {
        await Promise.all(held.map((h) => h.close()))
        const c = code(err)
        if (c === 'EADDRNOTAVAIL') throw invalid(`host IP ${bindings.map((b) => b.address).join(', ')} is not an address of this host`)
        if (c !== 'EADDRINUSE' && c !== 'EACCES') throw err
        busy = `${proto}/${port}${bindings.length === 1 ? ` on ${bindings[0]?.address}` : ''}`
      }
    }
    const what = candidates === undefined ? 'no free port in the ephemeral range' : candidates.length === 1 ? `host port ${busy} is already in use on this host` : `every host port of ${proto}/${candidates[0]}-${candidates[candidates.length - 1]} is already in use on this host`
    throw conflict(what)
  }
}
