/**
 * The host around tsnet's networks, judged from readings the command took: subnets the host
 * already routes elsewhere, br_netfilter, FORWARD's policy, an MTU the uplink cannot carry.
 * Each check is one function in HOST_CHECKS; overlay mode's (its VXLAN port, the underlay's
 * MTU, its peers) are in overlay-checks.ts. Pure.
 */
import { parseCidr, prefixesOverlap } from '../core/addr.js'
import type { NetworkRecord } from '../core/records.js'
import type { Directory } from './directory.js'
import type { Finding } from './findings.js'
import { OVERLAY_CHECKS } from './overlay-checks.js'
import type { UdpSocket } from './proc-net-udp.js'
import { linkOfNetwork } from './status-view.js'

export interface HostReadings {
  /** The main table's routes (not the default route), with the device's name. */
  routes: Array<{ dst: string; dev?: string }>
  /** The interface of the default route, if there is one. */
  uplink?: { dev: string; mtu: number }
  /** The br_netfilter module is loaded (its settings exist). */
  brNetfilter: boolean
  /** net.ipv4.ip_forward / net.ipv6.conf.all.forwarding, as read. */
  forwarding: { 4?: string; 6?: string }
  /** FORWARD's policy per family, as iptables -S says it (ACCEPT, DROP). */
  forwardPolicy: { 4?: string; 6?: string }
  /** UDP sockets (/proc/net/udp and udp6); absent when they could not be read. */
  udp?: UdpSocket[]
  /** The interface holding this node's swarm address (overlay traffic leaves there), when known. */
  underlay?: { dev: string; mtu: number; family: 4 | 6 }
  /** The swarm's peer book: the running daemon's, else the one it stored; absent: none. */
  swarm?: { peers: number; from: 'daemon' | 'store'; addresses?: string[] }
  /** The families that have a default route (absent: not read). */
  defaultRoutes?: Array<4 | 6>
}

export type HostCheck = (networks: readonly NetworkRecord[], h: HostReadings, dir: Directory) => Finding[]

const subnetsOf = (n: NetworkRecord) => [...n.ipv4Subnets, ...n.ipv6Subnets].map((s) => s.pool)

export const overlappingRoutes: HostCheck = (networks, h, dir) => {
  const out: Finding[] = []
  for (const n of networks) {
    const own = linkOfNetwork(n)
    for (const subnet of subnetsOf(n)) {
      const mine = parseCidr(subnet)?.prefix
      if (!mine) continue
      for (const r of h.routes) {
        const theirs = parseCidr(r.dst)?.prefix
        if (!theirs || r.dev === own || !prefixesOverlap(mine, theirs)) continue
        const route = `${r.dst}${r.dev ? ` dev ${r.dev}` : ''}`
        out.push({
          area: 'host',
          problem: `subnet ${subnet} of ${dir.network(n.id)} overlaps the host's route ${route}: traffic to those addresses may leave the wrong way`,
          fix: `give the network a free subnet (docker network rm, then docker network create --subnet ...), or remove the route if nothing needs it (ip route del ${route})`,
          remedy: 'manual',
        })
      }
    }
  }
  return out
}

export const bridgeNetfilter: HostCheck = (networks, h) => {
  if (h.brNetfilter || !networks.some((n) => n.mode === 'bridge' || n.mode === 'cluster')) return []
  return [{
    area: 'host',
    problem: "the br_netfilter module is not loaded: traffic inside a bridge bypasses iptables, so enable_icc=false and tsnet's anti-spoofing rules do not hold",
    fix: 'modprobe br_netfilter, and keep it across reboots: echo br_netfilter > /etc/modules-load.d/tsnet.conf (then tsnet doctor --fix sets its settings)',
    remedy: 'manual',
  }]
}

export const forwardPolicy: HostCheck = (networks, h) => {
  if (networks.length === 0) return []
  const out: Finding[] = []
  for (const f of [4, 6] as const) {
    if (h.forwarding[f] !== '1' || h.forwardPolicy[f] !== 'ACCEPT') continue
    const tool = f === 4 ? 'iptables' : 'ip6tables'
    out.push({
      area: 'firewall',
      problem: `forwarding is on but ${tool}' FORWARD policy is ACCEPT: this host routes traffic between any of its interfaces (tsnet's own networks stay closed by its chains; Docker and tsnet set DROP when they turn forwarding on)`,
      fix: `${tool} -P FORWARD DROP, unless this host is meant to route (then make it a rule of your firewall's)`,
      remedy: 'manual',
    })
  }
  return out
}

export const uplinkMtu: HostCheck = (networks, h, dir) => {
  const uplink = h.uplink
  if (!uplink) return []
  return networks.filter((n) => !n.internal && n.mtu > uplink.mtu).map((n) => ({
    area: 'host' as const,
    problem: `${dir.network(n.id)} has MTU ${n.mtu}, but the uplink ${uplink.dev} carries ${uplink.mtu}: its containers' large packets to the outside are dropped or fragmented`,
    fix: `re-create the network with -o com.docker.network.driver.mtu=${uplink.mtu} (docker network rm, then docker network create ...), or start tsnet with --default-mtu ${uplink.mtu} for new networks`,
    remedy: 'manual' as const,
  }))
}

export const HOST_CHECKS: readonly HostCheck[] = [overlappingRoutes, bridgeNetfilter, forwardPolicy, uplinkMtu, ...OVERLAY_CHECKS]

export function hostFindings(networks: readonly NetworkRecord[], h: HostReadings, dir: Directory): Finding[] {
  return HOST_CHECKS.flatMap((check) => check(networks, h, dir))
}
