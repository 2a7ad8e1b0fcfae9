/**
 * Pure decisions about cluster networks (issue 14): what a network named by `tsnet.overlay` is
 * (subnet, gateway, VNI, MTU), how a host's wish compares with what the cluster stored, and which
 * pool and VNI a new network gets. No I/O: services/cluster-networks.ts reads and writes the store.
 */
import { type Family, type Prefix, formatIp, formatPrefix, parseCidr, parseIp, prefixContains, prefixesOverlap } from './addr.js'
import { type DefaultPool, chooseDefaultPool, isReserved } from './ipam.js'
import { conflict, exhausted, invalid, quote } from '../errors.js'
import { DOCKER_VNI_FIRST, type VniRange, formatVniRange } from '../modes/overlay-options.js'

/**
 * VNIs of cluster networks by default: below Docker's overlay (4096 and up) and below tsnet's Swarm
 * range (256-4095 by default), so all three can share UDP 4789 on one host.
 */
export const DEFAULT_CLUSTER_VNI_RANGE: VniRange = { first: 1, last: 255 }

/** What the cluster stores for one network; the same on every host. */
export interface ClusterNetworkSpec {
  name: string
  subnet: string
  gateway: string
  ipv6Subnet?: string
  ipv6Gateway?: string
  vni: number
  /** The MTU the first host asked for; absent: each host derives it from its underlay. */
  mtu?: number
  createdBy: string
  createdAt: string
  /** Random, per creation: lets the creator recognise its own write after an unknown outcome. */
  token: string
}

/** What one host asks for; every field may be left out. */
export interface WantedNetwork {
  subnet?: string
  gateway?: string
  ipv6Subnet?: string
  mtu?: number
}

/** The one cluster-wide record of every network's subnets and VNI: choices and overlap checks read it. */
export interface ClusterIndex {
  networks: Record<string, { subnet: string; ipv6Subnet?: string; vni: number }>
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/
const HOST_ID = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$/

export function checkNetworkName(name: unknown): string {
  if (typeof name !== 'string' || !NAME.test(name)) {
    throw invalid(`tsnet.overlay=${quote(name)} is not a cluster network name: 1 to 63 of A-Z, a-z, 0-9, '_', '.' and '-', starting with a letter or digit`)
  }
  return name
}

export function checkHostId(id: unknown): string {
  if (typeof id !== 'string' || !HOST_ID.test(id)) throw invalid(`host ID ${quote(id)} is not 1 to 128 of A-Z, a-z, 0-9, '_', '.', ':' and '-'`)
  return id
}

/** A subnet as given ("10.0.0.0/24"), normalised to its network; host bits set are refused. */
export function parseSubnet(text: string, family: Family, what: string): Prefix {
  const c = parseCidr(text)
  if (!c || c.ip.family !== family) throw invalid(`${what} ${quote(text)} is not an IPv${family} subnet (for example ${family === 4 ? '10.220.0.0/24' : 'fd00:0:0:1::/64'})`)
  if (c.ip.value !== c.prefix.network) throw invalid(`${what} ${text} has host bits set: did you mean ${formatPrefix(c.prefix)}?`)
  const maxBits = family === 4 ? 30 : 126
  if (c.prefix.bits > maxBits) throw invalid(`${what} ${text} is too small for a network of several hosts: at most /${maxBits}`)
  return c.prefix
}

/** The gateway: the one asked for (inside the subnet, not its network or broadcast address), else the first address. */
export function gatewayOf(subnet: Prefix, asked?: string): string {
  if (asked === undefined) return formatIp({ family: subnet.family, value: subnet.network + 1n })
  const ip = parseIp(asked) ?? parseCidr(asked)?.ip
  if (!ip || ip.family !== subnet.family || !prefixContains(subnet, ip)) throw invalid(`gateway ${quote(asked)} is not an address inside ${formatPrefix(subnet)}`)
  if (isReserved(subnet, ip.value)) throw invalid(`gateway ${asked} is the network or broadcast address of ${formatPrefix(subnet)}`)
  return formatIp(ip)
}

export function checkMtu(mtu: unknown): number | undefined {
  if (mtu === undefined) return undefined
  if (typeof mtu !== 'number' || !Number.isInteger(mtu) || mtu < 1280 || mtu > 65535) throw invalid(`MTU ${quote(mtu)} is not a whole number from 1280 to 65535`)
  return mtu
}

/** The wish, checked: normalised subnets and gateway, so comparing with the stored spec is comparing text. */
export function normaliseWanted(wanted: WantedNetwork): WantedNetwork {
  const subnet = wanted.subnet !== undefined ? parseSubnet(wanted.subnet, 4, 'subnet') : undefined
  if (wanted.gateway !== undefined && !subnet) throw invalid(`a gateway (${quote(wanted.gateway)}) needs its subnet: give --subnet too`)
  const mtu = checkMtu(wanted.mtu)
  return {
    ...(subnet ? { subnet: formatPrefix(subnet), gateway: gatewayOf(subnet, wanted.gateway) } : {}),
    ...(wanted.ipv6Subnet !== undefined ? { ipv6Subnet: formatPrefix(parseSubnet(wanted.ipv6Subnet, 6, 'IPv6 subnet')) } : {}),
    ...(mtu !== undefined ? { mtu } : {}),
  }
}

/**
 * Refuses a wish that differs from what the cluster stored: what this host gives must match,
 * what it leaves out it gets from the cluster. The MTU is not compared (each host's underlay may
 * differ; the caller warns).
 */
export function checkAgainstStored(stored: ClusterNetworkSpec, wanted: WantedNetwork): void {
  const mismatch = (what: string, have: string | undefined, asked: string) => conflict(
    `cluster network ${quote(stored.name)} is stored with ${what} ${have ?? 'none'}, and this host asked for ${asked}: ` +
    `give the same ${what} on every host (or leave it out to take the cluster's), or choose another tsnet.overlay name`,
    { network: stored.name, stored: have, asked })
  if (wanted.subnet !== undefined && wanted.subnet !== stored.subnet) throw mismatch('subnet', stored.subnet, wanted.subnet)
  if (wanted.gateway !== undefined && wanted.gateway !== stored.gateway) throw mismatch('gateway', stored.gateway, wanted.gateway)
  if (wanted.ipv6Subnet !== undefined && wanted.ipv6Subnet !== stored.ipv6Subnet) throw mismatch('IPv6 subnet', stored.ipv6Subnet, wanted.ipv6Subnet)
}

/** The first VNI of the range no cluster network holds. */
export function chooseVni(range: VniRange, index: ClusterIndex): number {
  const taken = new Set(Object.values(index.networks).map((n) => n.vni))
  for (let v = range.first; v <= range.last; v++) if (!taken.has(v)) return v
  throw exhausted(`every VNI of the cluster range ${formatVniRange(range)} is held by a cluster network (${taken.size} networks): remove one, or widen the range`)
}

/** The subnet of a new network: the one asked for (refused when it overlaps another cluster network), else a free default pool. */
export function chooseSubnet(name: string, wanted: WantedNetwork, index: ClusterIndex, defaults: DefaultPool[], avoid: Prefix[]): string {
  const held = Object.entries(index.networks).flatMap(([n, net]) => [[n, net.subnet], ...(net.ipv6Subnet ? [[n, net.ipv6Subnet]] : [])] as Array<[string, string]>)
    .flatMap(([n, text]) => {
      const c = parseCidr(text)
      return c ? [{ name: n, prefix: c.prefix }] : []
    })
  for (const text of [wanted.subnet, wanted.ipv6Subnet]) {
    const mine = text !== undefined ? parseCidr(text)?.prefix : undefined
    const clash = mine && held.find((h) => h.name !== name && h.prefix.family === mine.family && prefixesOverlap(h.prefix, mine))
    if (clash) {
      throw conflict(`subnet ${text} of cluster network ${quote(name)} overlaps ${formatPrefix(clash.prefix)}, which cluster network ${quote(clash.name)} holds`,
        { network: name, other: clash.name })
    }
  }
  if (wanted.subnet !== undefined) return wanted.subnet
  const chosen = chooseDefaultPool(defaults, held.map((h) => h.prefix), avoid)
  if (!chosen) {
    const list = defaults.map((p) => `${formatPrefix(p.base)} in /${p.size}`).join(', ')
    throw exhausted(`no free pool is left for cluster network ${quote(name)}: every default pool (${list}) is held by another cluster network or routed by this host; give --subnet`)
  }
  return formatPrefix(chosen)
}

/** A cluster VNI range must stay clear of Docker's overlay VNIs and of tsnet's Swarm range. */
export function checkClusterVniRange(range: VniRange, swarmRange?: VniRange): void {
  if (range.last >= DOCKER_VNI_FIRST) throw invalid(`cluster VNI range ${formatVniRange(range)} reaches ${DOCKER_VNI_FIRST}, where Docker's overlay VNIs start`)
  if (swarmRange && range.first <= swarmRange.last && swarmRange.first <= range.last) {
    throw invalid(`cluster VNI range ${formatVniRange(range)} overlaps the Swarm VNI range ${formatVniRange(swarmRange)}: networks of both would share VNIs on one host`)
  }
}
