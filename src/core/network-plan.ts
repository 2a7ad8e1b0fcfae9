/**
 * Pure planning for the network driver, whatever the mode: requests → records → the answers
 * Docker expects. Every validation error is thrown here, before anything touches the host or
 * the store. The mode (src/modes) contributes its own options, names and kernel objects.
 */
import { invalid, quote } from '../errors.js'
import { type Family, type Prefix, formatIp, parseCidr, prefixContains, prefixesOverlap } from './addr.js'
import { COMMON_OPTION, OPT } from './docker-keys.js'
import { checkId, checkMac, macFromIpv4, macFromSeed } from './names.js'
import { canonicalPolicy } from './policy.js'
import { parseExposedPorts, parsePortMap } from './ports.js'
import { boolOption, canonicalJson, parseMtu, parseSubnets, type SubnetInput } from './options.js'
import type { CommonNetwork, EndpointRecord, NetworkRecord, SubnetRecord } from './records.js'
import type { NetworkMode, PlanContext } from '../modes/mode.js'

const IFACE_PREFIX_RE = /^[a-z][a-z0-9]{0,9}$/

/** CreateNetwork as the planning code needs it (the service maps Docker's request onto this). */
export interface NetworkInput {
  NetworkID: string
  Options?: Record<string, unknown> | null
  IPv4Data?: SubnetInput[] | null
  IPv6Data?: SubnetInput[] | null
}

/** Refuses `-o` keys neither the mode nor the common set knows, listing the ones that are. */
export function checkOptionKeys(generic: Readonly<Record<string, string>>, mode: NetworkMode, daemonKeys: readonly string[]): void {
  const common: string[] = [COMMON_OPTION.mode, COMMON_OPTION.mtu, COMMON_OPTION.ifacePrefix, ...(mode.supports.policy ? [COMMON_OPTION.allow] : [])]
  const known = new Set([...common, ...mode.optionKeys, ...daemonKeys])
  for (const k of Object.keys(generic)) {
    if (known.has(k)) continue
    const refused = mode.refusedOptions && Object.hasOwn(mode.refusedOptions, k) ? mode.refusedOptions[k] : undefined
    if (refused !== undefined) throw invalid(`option ${k} does not apply to a ${mode.name} network: ${refused}`)
    if (k === COMMON_OPTION.allow) {
      throw invalid(`option ${COMMON_OPTION.allow} needs the host firewall, which never sees the traffic of a ${mode.name} network`)
    }
    throw invalid(`unknown network option ${k.length > 64 ? `${k.slice(0, 64)}…` : k}; tsnet's ${mode.name} mode understands ${[...common, ...mode.optionKeys].join(', ')}`)
  }
}

/** The record of a new network: the common part, then the mode's. */
export function planNetwork(req: NetworkInput, mode: NetworkMode, generic: Readonly<Record<string, string>>, ctx: PlanContext, now: string): NetworkRecord {
  checkId('network ID', req.NetworkID)
  const options = req.Options ?? {}
  const mtu = generic[COMMON_OPTION.mtu] !== undefined ? parseMtu(generic[COMMON_OPTION.mtu] ?? '', COMMON_OPTION.mtu) : ctx.defaultMtu
  const prefix = generic[COMMON_OPTION.ifacePrefix]
  if (prefix !== undefined && !IFACE_PREFIX_RE.test(prefix)) {
    throw invalid(`${COMMON_OPTION.ifacePrefix}=${quote(prefix)} must be 1 to 10 lowercase letters and digits, starting with a letter`)
  }
  const internal = boolOption(options, OPT.internal)
  const policy = generic[COMMON_OPTION.allow] !== undefined ? canonicalPolicy(generic[COMMON_OPTION.allow] ?? '') : ''
  if (internal && policy !== '') throw invalid(`an internal network accepts no traffic from other networks, so it takes no ${COMMON_OPTION.allow} policy`)
  const ipv4Subnets = parseSubnets(req.IPv4Data, 4)
  const ipv6Subnets = parseSubnets(req.IPv6Data, 6)
  const ipv6 = boolOption(options, OPT.enableIpv6) || ipv6Subnets.length > 0
  if (boolOption(options, OPT.enableIpv6) && ipv6Subnets.length === 0) throw invalid('IPv6 is enabled but no IPv6 pool was given')
  const common: CommonNetwork = {
    id: req.NetworkID,
    mtu,
    internal,
    ipv6,
    ipv4Subnets,
    ipv6Subnets,
    enableIpMasquerade: true,
    enableIcc: true,
    genericOptions: { ...generic },
    ...(policy !== '' ? { policy } : {}),
    createdAt: now,
  }
  return mode.planSpec(generic, common, ctx)
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

/** Addresses to put on the host side of a network: every gateway it has. */
export function gatewayAddresses(n: CommonNetwork): string[] {
  return [...n.ipv4Subnets, ...n.ipv6Subnets].flatMap((s) => (s.gateway ? [s.gateway] : []))
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

function endpointAddress(text: string | undefined, family: Family, network: CommonNetwork): string | undefined {
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

/** CreateEndpoint as the planning code needs it. */
export interface EndpointInput {
  EndpointID: string
  Interface?: { Address?: string; AddressIPv6?: string; MacAddress?: string } | null
  Options?: Record<string, unknown> | null
}

export interface EndpointPlan {
  record: EndpointRecord
  /** Only the fields Docker left empty: Docker treats any other as an attempt to change its choice. */
  response: { Interface?: { MacAddress?: string } }
}

export function planEndpoint(req: EndpointInput, network: NetworkRecord, mode: NetworkMode, now: string): EndpointPlan {
  checkId('endpoint ID', req.EndpointID)
  const iface = req.Interface ?? {}
  const address = endpointAddress(iface.Address, 4, network)
  const addressV6 = endpointAddress(iface.AddressIPv6, 6, network)
  const given = iface.MacAddress ? checkMac(iface.MacAddress) : undefined
  const ip4 = address ? parseCidr(address)?.ip : undefined
  const fixed = mode.fixedMac?.(network)
  if (fixed !== undefined && given !== undefined && given !== fixed) {
    throw invalid(`MAC address ${given} cannot be given to a container on network ${network.id.slice(0, 12)}: its interface takes ${fixed}, the MAC of the parent interface (macvlan passthru mode)`)
  }
  const mac = given ?? fixed ?? (ip4 ? macFromIpv4(ip4) : macFromSeed(req.EndpointID))
  const options = req.Options ?? {}
  const record: EndpointRecord = {
    id: req.EndpointID,
    networkId: network.id,
    ...mode.linkNames(req.EndpointID, network),
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
  const strip = (e: EndpointRecord) => canonicalJson({ ...e, createdAt: '', joined: false, sandboxKey: undefined })
  return strip(a) === strip(b)
}

/** The gateway of the subnet `address` lies in, as a bare address. */
export function gatewayFor(subnets: SubnetRecord[], address: string | undefined): string | undefined {
  const ip = address ? parseCidr(address)?.ip : undefined
  if (!ip) return undefined
  for (const s of subnets) {
    const pool = parseCidr(s.pool)
    const gw = s.gateway ? parseCidr(s.gateway) : undefined
    if (pool && gw && prefixContains(pool.prefix, ip)) return formatIp(gw.ip)
  }
  return undefined
}

export function checkSandboxKey(key: string): string {
  if (key.length === 0 || key.length > 4096 || key.includes('\0')) throw invalid('SandboxKey must be a non-empty path')
  return key
}
