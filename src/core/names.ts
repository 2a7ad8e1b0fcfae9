/** Deterministic kernel names and ownership tags, and validation of every name that reaches the kernel. */
import { createHash } from 'node:crypto'
import { invalid, quote } from '../errors.js'
import type { Ip } from './addr.js'

/** Docker IDs are 64 hex characters; Swarm's are 25 alphanumerics. Nothing else becomes a file or link name. */
const ID_RE = /^[A-Za-z0-9]{1,64}$/
export function checkId(what: string, id: unknown): string {
  if (typeof id !== 'string' || !ID_RE.test(id)) throw invalid(`${what} ${quote(id)} is not a valid ID (1 to 64 letters and digits)`)
  return id
}

export const IFNAME_MAX = 15
const IFNAME_RE = /^[A-Za-z0-9_.-]{1,15}$/
/** The kernel refuses '/', whitespace, ':' and names longer than 15 bytes; '.' and '..' are reserved. */
export function checkIfName(name: string, what = 'interface name'): string {
  if (!IFNAME_RE.test(name) || name === '.' || name === '..') {
    throw invalid(`${what} ${quote(name)} is not usable: it must be 1 to ${IFNAME_MAX} characters of letters, digits, '_', '-' or '.'`)
  }
  return name
}

const TAG_RE = /^[A-Za-z0-9:_.-]{1,200}$/
/** ifalias values and rule comments are written into ip/iptables batch input: plain characters only. */
export function checkTag(tag: string, what = 'tag'): string {
  if (!TAG_RE.test(tag)) throw invalid(`${what} ${quote(tag)} must be 1 to 200 letters, digits, ':', '_', '.' or '-'`)
  return tag
}

export const BRIDGE_PREFIX = 'tsbr-'
export const HOST_VETH_PREFIX = 'tsv'
export const CONTAINER_VETH_PREFIX = 'tsc'
/** A macvlan endpoint's one link (Docker moves it into the container). */
export const MACVLAN_PREFIX = 'tsm'

const shortId = (id: string, n: number) => id.toLowerCase().slice(0, n)
export const bridgeNameFor = (networkId: string) => BRIDGE_PREFIX + shortId(networkId, IFNAME_MAX - BRIDGE_PREFIX.length)
export const hostVethFor = (endpointId: string) => HOST_VETH_PREFIX + shortId(endpointId, IFNAME_MAX - HOST_VETH_PREFIX.length)
export const containerVethFor = (endpointId: string) => CONTAINER_VETH_PREFIX + shortId(endpointId, IFNAME_MAX - CONTAINER_VETH_PREFIX.length)
export const macvlanNameFor = (endpointId: string) => MACVLAN_PREFIX + shortId(endpointId, IFNAME_MAX - MACVLAN_PREFIX.length)

/** ifalias values mark links as tsnet's own, naming the record they belong to. */
export const networkAlias = (networkId: string) => `tsnet:net:${networkId}`
export const endpointAlias = (endpointId: string) => `tsnet:ep:${endpointId}`
/** Comment on firewall rules, naming the network they belong to. */
export const networkTag = (networkId: string) => `tsnet:net:${networkId.slice(0, 12)}`

const MAC_RE = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/
export function checkMac(mac: string): string {
  const lower = mac.toLowerCase()
  if (!MAC_RE.test(lower)) throw invalid(`MAC address ${quote(mac)} is not of the form xx:xx:xx:xx:xx:xx`)
  const first = parseInt(lower.slice(0, 2), 16)
  if (first & 1) throw invalid(`MAC address ${mac} is a multicast address and cannot be given to an interface`)
  if (lower === '00:00:00:00:00:00') throw invalid('MAC address 00:00:00:00:00:00 cannot be given to an interface')
  return lower
}

const hex2 = (n: number) => n.toString(16).padStart(2, '0')

/** Docker's rule: 02:42 followed by the four bytes of the IPv4 address. */
export function macFromIpv4(ip: Ip): string {
  const v = Number(ip.value)
  return ['02', '42', hex2((v >>> 24) & 255), hex2((v >>> 16) & 255), hex2((v >>> 8) & 255), hex2(v & 255)].join(':')
}

/** A stable, locally administered unicast MAC for objects without an IPv4 address. */
export function macFromSeed(seed: string): string {
  const h = createHash('sha256').update(seed).digest()
  const bytes = [0x02, h[0] ?? 0, h[1] ?? 0, h[2] ?? 0, h[3] ?? 0, h[4] ?? 0]
  return bytes.map(hex2).join(':')
}
