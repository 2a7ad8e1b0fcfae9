/**
 * `tsnet doctor`'s host checks for overlay networks: a process holding a network's VXLAN port,
 * an MTU the underlay cannot carry once VXLAN wraps it, a swarm with no other host known, and
 * other hosts this one has no route to.
 * Pure: the readings come from cli/host-read.ts.
 */
import { parseCidr, parseIp, prefixContains } from '../core/addr.js'
import type { OverlayNetwork, NetworkRecord } from '../core/records.js'
import { VXLAN_OVERHEAD } from '../modes/overlay-options.js'
import type { Directory } from './directory.js'
import type { Finding } from './findings.js'
import type { HostCheck } from './host-checks.js'
import { localAddressText } from './proc-net-udp.js'

const overlaysOf = (networks: readonly NetworkRecord[]) => networks.filter((n): n is OverlayNetwork => n.mode === 'overlay')
const named = (ns: readonly OverlayNetwork[], dir: Directory) => ns.map((n) => dir.network(n.id)).join(', ')

/** A socket a process holds on a network's VXLAN port: the kernel's VXLAN sockets are held by no process. */
export const vxlanPortTaken: HostCheck = (networks, h, dir) => {
  const byPort = new Map<number, OverlayNetwork[]>()
  for (const n of overlaysOf(networks)) byPort.set(n.spec.port, [...(byPort.get(n.spec.port) ?? []), n])
  const out: Finding[] = []
  for (const [port, ns] of byPort) {
    for (const s of (h.udp ?? []).filter((x) => x.port === port && x.process === true)) {
      const at = s.family === 6 ? `[${localAddressText(s)}]:${port}` : `${localAddressText(s)}:${port}`
      out.push({
        area: 'host',
        problem: `UDP port ${port}, the VXLAN port of overlay ${named(ns, dir)}, is bound by a process's socket (${at}, inode ${s.inode}), not by tsnet's VXLAN device: traffic from the other hosts does not reach the network`,
        fix: `stop the process that holds it (ss -ulpn 'sport = :${port}' names it), then tsnet doctor --fix brings the VXLAN device back; or give tsnet another port on the swarm's managers (--vxlan-port, TSNET_VXLAN_PORT) and re-create the network`,
        remedy: 'manual',
      })
    }
  }
  return out
}

/** VXLAN adds 50 bytes over IPv4 (70 over IPv6): the network's MTU must leave them to the underlay. */
export const overlayMtu: HostCheck = (networks, h, dir) => {
  const under = h.underlay ?? (h.uplink ? { ...h.uplink, family: 4 as const } : undefined)
  if (!under) return []
  const room = under.mtu - VXLAN_OVERHEAD[under.family]
  return overlaysOf(networks).filter((n) => n.mtu > room).map((n) => ({
    area: 'host' as const,
    problem: `overlay ${dir.network(n.id)} has MTU ${n.mtu}, but its underlay ${under.dev} carries ${under.mtu} and VXLAN takes ${VXLAN_OVERHEAD[under.family]} bytes of it: packets over ${room} bytes between hosts are dropped`,
    fix: `re-create the network with -o com.docker.network.driver.mtu=${room} (docker network rm, then docker network create -d tsnet --scope swarm ...), or raise the MTU of ${under.dev} on every host (ip link set dev ${under.dev} mtu ${n.mtu + VXLAN_OVERHEAD[under.family]})`,
    remedy: 'manual' as const,
  }))
}

export const lonelyOverlay: HostCheck = (networks, h, dir) => {
  const ns = overlaysOf(networks)
  if (ns.length === 0 || (h.swarm?.peers ?? 0) > 0) return []
  const whose = h.swarm === undefined ? 'tsnet knows' : h.swarm.from === 'daemon' ? 'the daemon knows' : 'the stored peer book holds'
  return [{
    area: 'host',
    problem: `${named(ns, dir)} ${ns.length === 1 ? 'is an overlay network' : 'are overlay networks'}, but ${whose} no other host of the swarm: the network reaches no other host`,
    fix: 'add hosts to the swarm (docker swarm join-token worker prints the command); if docker node ls already lists them, check that tsnet runs there with --scope global, then restart the plugin here so Docker announces the nodes again (docker plugin disable, then docker plugin enable)',
    remedy: 'manual',
  }]
}

/**
 * A peer this host has no route to: VXLAN frames to it cannot leave, so containers there are
 * unreachable. A route check, not a probe: doctor sends nothing to the other hosts.
 */
export const unroutablePeers: HostCheck = (networks, h, dir) => {
  const ns = overlaysOf(networks)
  if (ns.length === 0 || !h.swarm?.addresses || !h.defaultRoutes) return []
  const routes = h.routes.flatMap((r) => parseCidr(r.dst)?.prefix ?? [])
  const out: Finding[] = []
  for (const peer of h.swarm.addresses) {
    const ip = parseIp(peer)
    if (!ip || h.defaultRoutes.includes(ip.family) || routes.some((r) => prefixContains(r, ip))) continue
    out.push({
      area: 'host',
      problem: `swarm host ${peer} is unreachable from here: no route leads to it, so overlay ${named(ns, dir)} cannot carry traffic to its containers`,
      fix: `give this host a route to ${peer} (ip route add ${peer}/${ip.family === 4 ? 32 : 128} via <gateway>), or check the underlay interface that holds this node's swarm address (ip -br addr)`,
      remedy: 'manual',
    })
  }
  return out
}

export const OVERLAY_CHECKS: readonly HostCheck[] = [vxlanPortTaken, overlayMtu, lonelyOverlay, unroutablePeers]
