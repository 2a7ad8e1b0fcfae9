/**
 * Which conntrack flows of published ports tsnet makes the kernel forget. NAT is decided on a
 * flow's first packet only: a UDP client that keeps sending from one source port keeps its
 * conntrack entry, and with it the old DNAT target, for as long as it sends (moby#8795). TCP is
 * left alone: a new connection is a new flow and meets the current rules.
 */
import { type Family, formatIp, parseIp } from './addr.js'
import type { PublishedPort } from './records.js'

/** Flows whose original destination is `hostPort` of `proto` on `hostIp` ('' for any address). */
export interface PortFlow {
  family: Family
  proto: 'udp' | 'sctp'
  hostPort: number
  hostIp: string
}

const isWildcard = (a: string) => a === '' || a === '0.0.0.0' || a === '::'

/** The UDP and SCTP flows to forget when `published` ports are revoked or just published; one per family, protocol, address and port. */
export function flowsToForget(published: readonly PublishedPort[]): PortFlow[] {
  const out = new Map<string, PortFlow>()
  for (const p of published) {
    if (p.proto === 'tcp') continue
    const ip = isWildcard(p.hostIp) ? undefined : parseIp(p.hostIp)
    const hostIp = ip && ip.family === p.family ? formatIp(ip) : ''
    out.set(`${p.family} ${p.proto} ${hostIp} ${p.hostPort}`, { family: p.family, proto: p.proto, hostPort: p.hostPort, hostIp })
  }
  return [...out.values()]
}
