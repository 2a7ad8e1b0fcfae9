/**
 * What iproute2 says about a namespace, as JSON: the reference the netlink tests compare the
 * client's view and changes with (`ip -j -d link show`, `ip -j addr`, `ip -j route`,
 * `ip -j neigh`, `bridge -j fdb show`).
 */
import type { Netns } from './netns.js'

export interface IpLinkD {
  ifindex: number
  ifname: string
  ifalias?: string
  /** The peer of a veth, the parent of a macvlan/vlan (a name). */
  link?: string
  master?: string
  mtu: number
  address?: string
  group?: number | string
  flags: string[]
  operstate?: string
  linkinfo?: { info_kind?: string; info_data?: Record<string, unknown>; info_slave_kind?: string }
}

export async function ipLinks(ns: Netns): Promise<IpLinkD[]> {
  return JSON.parse(await ns.ok('ip', ['-j', '-d', 'link', 'show'])) as IpLinkD[]
}

export async function ipLink(ns: Netns, name: string): Promise<IpLinkD | undefined> {
  return (await ipLinks(ns)).find((l) => l.ifname === name)
}

export const groupNumber = (g: number | string | undefined): number => (g === undefined || g === 'default' ? 0 : Number(g))

export interface IpAddrInfo {
  family: 'inet' | 'inet6'
  local: string
  prefixlen: number
  scope: string
  label?: string
  nodad?: boolean
  tentative?: boolean
}

export async function ipAddrs(ns: Netns, dev: string): Promise<IpAddrInfo[]> {
  const out = JSON.parse(await ns.ok('ip', ['-j', 'addr', 'show', 'dev', dev])) as Array<{ addr_info?: IpAddrInfo[] }>
  return out[0]?.addr_info ?? []
}

export interface IpRoute {
  dst: string
  dev?: string
  gateway?: string
  protocol?: string
  scope?: string
  metrics?: Array<{ mtu?: number }>
}

export async function ipRoutes(ns: Netns, family: 4 | 6): Promise<IpRoute[]> {
  return JSON.parse(await ns.ok('ip', ['-j', `-${family}`, 'route', 'show', 'table', 'main'])) as IpRoute[]
}

export interface IpNeigh {
  dst: string
  dev?: string
  lladdr?: string
  state: string[]
}

export async function ipNeighs(ns: Netns, dev: string): Promise<IpNeigh[]> {
  return JSON.parse(await ns.ok('ip', ['-j', 'neigh', 'show', 'dev', dev, 'nud', 'all'])) as IpNeigh[]
}

export interface BridgeFdb {
  mac: string
  ifname?: string
  dst?: string
  flags: string[]
  state?: string
  master?: string
}

export async function bridgeFdb(ns: Netns, dev: string): Promise<BridgeFdb[]> {
  return JSON.parse(await ns.ok('bridge', ['-j', 'fdb', 'show', 'dev', dev])) as BridgeFdb[]
}
