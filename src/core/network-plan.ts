/**
 * Pure planning for the network driver: requests → records → the responses Docker expects.
 * Every validation error is thrown here, before anything touches the host or the store.
 */
import { clip, invalid, quote } from '../errors.js'
import { type Family, type Prefix, formatIp, parseCidr, parseIp, prefixContains, prefixesOverlap } from './addr.js'
import {
  BRIDGE_PREFIX, CONTAINER_VETH_PREFIX, HOST_VETH_PREFIX, bridgeNameFor, checkId, checkIfName, checkMac, containerVethFor, hostVethFor, macFromIpv4, macFromSeed,
} from './names.js'
import { POLICY_OPTION, canonicalPolicy } from './policy.js'
import { parseExposedPorts, parsePortMap } from './ports.js'
import type { EndpointRecord, NetworkRecord, PortMapping, SubnetRecord } from './records.js'
import { OPT, type CreateEndpointRequest, type CreateNetworkRequest, type IpamData, type JoinResponse } from '../protocol/types.js'

export const OPTION = {
  bridgeName: 'com.docker.network.bridge.name',
  mtu: 'com.docker.network.driver.mtu',
  masquerade: 'com.docker.network.bridge.enable_ip_masquerade',
  icc: 'com.docker.network.bridge.enable_icc',
  ifacePrefix: 'com.docker.network.container_iface_prefix',
  hostBinding: 'com.docker.network.bridge.host_binding_ipv4',
  allow: POLICY_OPTION,
} as const

/** Keys the daemon itself interprets when given with -o; they may be echoed in the generic map. */
const DAEMON_KEYS = new Set([OPT.enableIpv6, OPT.enableIpv4, OPT.internal, 'com.docker.network.bridge.default_bridge'])
const KNOWN_OPTIONS = new Set<string>([...Object.values(OPTION), ...DAEMON_KEYS])

export const MTU_MIN = 68
export const MTU_MAX = 65535
const IFACE_PREFIX_RE = /^[a-z][a-z0-9]{0,9}$/

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v)

/** Go's strconv.ParseBool, which is what Docker's own drivers use for option values. */
export function parseBool(key: string, value: string): boolean {
  if (['1', 't', 'T', 'TRUE', 'true', 'True'].includes(value)) return true
  if (['0', 'f', 'F', 'FALSE', 'false', 'False'].includes(value)) return false
  throw invalid(`option ${key}=${quote(value)} must be true or false`)
}

export function parseMtu(value: string, what: string): number {
  if (!/^\d+$/.test(value)) throw invalid(`${what}=${quote(value)} is not a number: the MTU must be a whole number from ${MTU_MIN} to ${MTU_MAX}`)
  if (Number(value) < MTU_MIN || Number(value) > MTU_MAX) {
    throw invalid(`${what}=${quote(value)} is out of range: the MTU must be a whole number from ${MTU_MIN} to ${MTU_MAX}`)
  }
  return Number(value)
}

function genericOptions(options: Record<string, unknown>): Record<string, string> {
  const raw = options[OPT.generic]
  if (raw === undefined || raw === null) return {}
  if (!isObject(raw)) throw invalid('network options (-o) must be a map of strings')
  const out: Record<string, string> = {}
  for (const [k, v] of Object.entries(raw)) {
    if (typeof v !== 'string') throw invalid(`option ${clip(k)} must be a string, got ${quote(v)}`)
    if (!KNOWN_OPTIONS.has(k)) {
      throw invalid(`unknown network option ${clip(k)}; tsnet understands ${[...Object.values(OPTION)].join(', ')}`)
    }
    out[k] = v
  }
  return out
}

function boolOption(options: Record<string, unknown>, key: string): boolean {
  const v = options[key]
  if (v === undefined || v === null) return false
  if (typeof v === 'boolean') return v
  if (typeof v === 'string') return parseBool(key, v)
  throw invalid(`option ${key} must be true or false, got ${quote(v)}`)
}

function parseSubnets(list: IpamData[] | null | undefined, family: Family): SubnetRecord[] {
  return (list ?? []).map((d) => {
    const pool = parseCidr(d.Pool)
    if (!pool || pool.ip.family !== family) throw invalid(`IPv${family} pool ${quote(d.Pool)} is not a valid IPv${family} CIDR`)
    const record: SubnetRecord = { pool: d.Pool }
    const inPool = (text: string, what: string) => {
      const c = parseCidr(text)
      if (!c || !prefixContains(pool.prefix, c.ip)) throw invalid(`${what} ${quote(text)} is not an address inside pool ${d.Pool}`)
      return text
    }
    if (d.Gateway !== undefined && d.Gateway !== '') record.gateway = inPool(d.Gateway, 'gateway')
    if (d.AuxAddresses && Object.keys(d.AuxAddresses).length > 0) {
      record.auxAddresses = {}
      for (const [name, addr] of Object.entries(d.AuxAddresses)) record.auxAddresses[name] = inPool(addr, `aux address ${name}`)
    }
    return record
  })
}

/** A user's bridge name must not collide with the names tsnet gives its own bridges and veths. */
function checkUserBridgeName(name: string): string {
  checkIfName(name, `bridge name (${OPTION.bridgeName})`)
  const reserved = [BRIDGE_PREFIX, HOST_VETH_PREFIX, CONTAINER_VETH_PREFIX].find((p) => name.toLowerCase().startsWith(p))
  if (reserved) throw invalid(`bridge name ${quote(name)} starts with ${reserved}, which tsnet reserves for the interfaces it names itself`)
  return name
}

export interface NetworkDefaults {
  mtu: number
}

export function planNetwork(req: CreateNetworkRequest, defaults: NetworkDefaults, now: string): NetworkRecord {
  checkId('network ID', req.NetworkID)
  const options = req.Options ?? {}
  const generic = genericOptions(options)
  const userBridge = generic[OPTION.bridgeName]
  const bridge = userBridge !== undefined ? checkUserBridgeName(userBridge) : bridgeNameFor(req.NetworkID)
  const mtu = generic[OPTION.mtu] !== undefined ? parseMtu(generic[OPTION.mtu] ?? '', OPTION.mtu) : defaults.mtu
  const prefix = generic[OPTION.ifacePrefix]
  if (prefix !== undefined && !IFACE_PREFIX_RE.test(prefix)) {
    throw invalid(`${OPTION.ifacePrefix}=${quote(prefix)} must be 1 to 10 lowercase letters and digits, starting with a letter`)
  }
  const hostBinding = generic[OPTION.hostBinding]
  if (hostBinding !== undefined && !parseIp(hostBinding)) {
    throw invalid(`${OPTION.hostBinding}=${quote(hostBinding)} is not an IP address: it names the host address that ports published without one (-p 8080:80) bind to`)
  }
  const internal = boolOption(options, OPT.internal)
  const policy = generic[OPTION.allow] !== undefined ? canonicalPolicy(generic[OPTION.allow] ?? '') : ''
  if (internal && policy !== '') throw invalid(`an internal network accepts no traffic from other networks, so it takes no ${OPTION.allow} policy`)
  const ipv4Subnets = parseSubnets(req.IPv4Data, 4)
  const ipv6Subnets = parseSubnets(req.IPv6Data, 6)
  const ipv6 = boolOption(options, OPT.enableIpv6) || ipv6Subnets.length > 0
  if (boolOption(options, OPT.enableIpv6) && ipv6Subnets.length === 0) throw invalid('IPv6 is enabled but no IPv6 pool was given')
  return {
    id: req.NetworkID,
    bridge,
    bridgeNamedByUser: userBridge !== undefined,
    mtu,
    internal,
    ipv6,
    ipv4Subnets,
    ipv6Subnets,
    enableIpMasquerade: generic[OPTION.masquerade] === undefined ? true : parseBool(OPTION.masquerade, generic[OPTION.masquerade] ?? ''),
    enableIcc: generic[OPTION.icc] === undefined ? true : parseBool(OPTION.icc, generic[OPTION.icc] ?? ''),
    genericOptions: generic,
    ...(policy !== '' ? { policy } : {}),
    createdAt: now,
  }
}

/**
 * The host address that mappings without a HostIP bind to on `n` (-o host_binding_ipv4), or ''
 * for every address. 0.0.0.0 is Docker's default, so it means every address too.
 */
export function defaultHostIp(n: NetworkRecord): string {
  const text = n.genericOptions[OPTION.hostBinding]
  const ip = text === undefined ? undefined : parseIp(text)
  if (!ip || (ip.family === 4 && ip.value === 0n)) return ''
  return formatIp(ip)
}

/**
 * The mappings as `n` publishes them: one without a HostIP takes the network's default host
 * address. As Docker's bridge, an IPv4 default publishes such a mapping on that address only
 * (no IPv6 wildcard beside it) and an IPv6 default on that IPv6 address only.
 */
export function withDefaultHostIp(n: NetworkRecord, mappings: PortMapping[]): PortMapping[] {
  const hostIp = defaultHostIp(n)
  return hostIp === '' ? mappings : mappings.map((m) => (m.hostIp === '' ? { ...m, hostIp } : m))
}

export interface SubnetOverlap {
  other: NetworkRecord
  /** The subnet of the planned network, and the other network's subnet it overlaps. */
  mine: string
  theirs: string
}

/**
 * A subnet of `planned` that overlaps a subnet of another network, if one does. The firewall
 * tells networks apart by their subnets, so a network sharing addresses with another would get
 * that network's policy grants (Docker's bridge refuses the overlap too). Null-IPAM pools (/0)
 * hold no address and overlap nothing.
 */
export function findSubnetOverlap(planned: NetworkRecord, networks: Iterable<NetworkRecord>): SubnetOverlap | undefined {
  const mine = [...planned.ipv4Subnets, ...planned.ipv6Subnets].flatMap((s) => poolsOf([s]).map((p) => ({ pool: s.pool, p })))
  for (const other of networks) {
    if (other.id === planned.id) continue
    for (const s of [...other.ipv4Subnets, ...other.ipv6Subnets]) {
      for (const theirs of poolsOf([s])) {
        const hit = mine.find((m) => prefixesOverlap(m.p, theirs))
        if (hit) return { other, mine: hit.pool, theirs: s.pool }
      }
    }
  }
  return undefined
}

/** Addresses to put on the bridge: every gateway tsnet's network has. */
export function bridgeAddresses(n: NetworkRecord): string[] {
  return [...n.ipv4Subnets, ...n.ipv6Subnets].flatMap((s) => (s.gateway ? [s.gateway] : []))
}

/** JSON with object keys sorted, so records built in different orders compare equal. */
function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_k, v: unknown) => (isObject(v) ? Object.fromEntries(Object.entries(v).sort(([x], [y]) => x.localeCompare(y))) : v))
}

/** True when the two records describe the same network (a retried CreateNetwork). */
export function sameNetwork(a: NetworkRecord, b: NetworkRecord): boolean {
  // The policy may have been changed since with `tsnet policy set`; the options it came from are compared.
  return canonicalJson({ ...a, createdAt: '', policy: '' }) === canonicalJson({ ...b, createdAt: '', policy: '' })
}

function poolsOf(subnets: SubnetRecord[]): Prefix[] {
  return subnets.flatMap((s) => {
    const c = parseCidr(s.pool)
    return c && c.prefix.bits > 0 ? [c.prefix] : []
  })
}

function endpointAddress(text: string | undefined, family: Family, network: NetworkRecord): string | undefined {
  if (text === undefined || text === '') return undefined
  const c = parseCidr(text)
  if (!c || c.ip.family !== family) throw invalid(`endpoint IPv${family} address ${quote(text)} is not a valid IPv${family} CIDR`)
  const subnets = family === 4 ? network.ipv4Subnets : network.ipv6Subnets
  const pools = poolsOf(subnets)
  const unbounded = subnets.some((s) => parseCidr(s.pool)?.prefix.bits === 0)
  if (!unbounded && !pools.some((p) => prefixContains(p, c.ip))) {
    throw invalid(`address ${text} is outside the subnets of network ${network.id.slice(0, 12)} (${subnets.map((s) => s.pool).join(', ') || 'none'})`)
  }
  return text
}

export interface EndpointPlan {
  record: EndpointRecord
  /** Only the fields Docker left empty: Docker treats any other as an attempt to change its choice. */
  response: { Interface?: { MacAddress?: string } }
}

export function planEndpoint(req: CreateEndpointRequest, network: NetworkRecord, now: string): EndpointPlan {
  checkId('endpoint ID', req.EndpointID)
  const iface = req.Interface ?? {}
  const address = endpointAddress(iface.Address, 4, network)
  const addressV6 = endpointAddress(iface.AddressIPv6, 6, network)
  const given = iface.MacAddress ? checkMac(iface.MacAddress) : undefined
  const ip4 = address ? parseCidr(address)?.ip : undefined
  const mac = given ?? (ip4 ? macFromIpv4(ip4) : macFromSeed(req.EndpointID))
  const options = req.Options ?? {}
  const record: EndpointRecord = {
    id: req.EndpointID,
    networkId: network.id,
    hostIf: hostVethFor(req.EndpointID),
    containerIf: containerVethFor(req.EndpointID),
    mac,
    macFromDocker: given !== undefined,
    mtu: network.mtu,
    ...(address ? { address } : {}),
    ...(addressV6 ? { addressV6 } : {}),
    portMappings: parsePortMap(options[OPT.portMap]),
    exposedPorts: parseExposedPorts(options[OPT.exposedPorts]),
    joined: false,
    createdAt: now,
  }
  return { record, response: given ? {} : { Interface: { MacAddress: mac } } }
}

export function sameEndpoint(a: EndpointRecord, b: EndpointRecord): boolean {
  const strip = (e: EndpointRecord) => JSON.stringify({ ...e, createdAt: '', joined: false, sandboxKey: undefined })
  return strip(a) === strip(b)
}

function gatewayFor(subnets: SubnetRecord[], address: string | undefined): string | undefined {
  const ip = address ? parseCidr(address)?.ip : undefined
  if (!ip) return undefined
  for (const s of subnets) {
    const pool = parseCidr(s.pool)
    const gw = s.gateway ? parseCidr(s.gateway) : undefined
    if (pool && gw && prefixContains(pool.prefix, ip)) return formatIp(gw.ip)
  }
  return undefined
}

/**
 * What Join answers: the interface Docker should move into the sandbox, and the gateways.
 * An internal network gives no gateway, so the container gets no default route (as Docker's bridge).
 */
export function planJoin(network: NetworkRecord, endpoint: EndpointRecord): JoinResponse {
  const response: JoinResponse = {
    InterfaceName: { SrcName: endpoint.containerIf, DstPrefix: network.genericOptions[OPTION.ifacePrefix] ?? 'eth' },
  }
  if (network.internal) return response
  const gw4 = gatewayFor(network.ipv4Subnets, endpoint.address)
  const gw6 = gatewayFor(network.ipv6Subnets, endpoint.addressV6)
  if (gw4) response.Gateway = gw4
  if (gw6) response.GatewayIPv6 = gw6
  return response
}

export function checkSandboxKey(key: string): string {
  if (key.length === 0 || key.length > 4096 || key.includes('\0')) throw invalid('SandboxKey must be a non-empty path')
  return key
}
