/** Parsing of the port maps Docker sends with CreateEndpoint, Join and ProgramExternalConnectivity. */
import { invalid, quote } from '../errors.js'
import { type Family, formatIp, parseCidr, parseIp } from './addr.js'
import type { PortMapping } from './records.js'

const PROTOCOLS: Record<number, PortMapping['proto']> = { 6: 'tcp', 17: 'udp', 132: 'sctp' }

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v)

function intField(obj: Record<string, unknown>, key: string, where: string, min: number, max: number, required = true): number {
  const v = obj[key]
  if (v === undefined && !required) return 0
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw invalid(`${where}: ${key} must be a whole number from ${min} to ${max}, got ${quote(v)}`)
  }
  return v
}

function protoOf(obj: Record<string, unknown>, where: string): PortMapping['proto'] {
  const n = intField(obj, 'Proto', where, 0, 255)
  const proto = PROTOCOLS[n]
  if (!proto) throw invalid(`${where}: protocol number ${n} is not supported (tcp=6, udp=17, sctp=132)`)
  return proto
}

function list(value: unknown, what: string): unknown[] {
  if (value === undefined || value === null) return []
  if (!Array.isArray(value)) throw invalid(`${what} must be a list`)
  if (value.length > 4096) throw invalid(`${what} has ${value.length} entries; at most 4096 are accepted`)
  return value
}

/** parseIp for many mappings that name few addresses: each distinct text is parsed once per port map. */
function ipParser(): (text: string) => ReturnType<typeof parseIp> {
  const seen = new Map<string, ReturnType<typeof parseIp>>()
  return (text) => {
    if (!seen.has(text)) seen.set(text, parseIp(text))
    return seen.get(text)
  }
}

export function parsePortMap(value: unknown): PortMapping[] {
  const ipOf = ipParser()
  return list(value, 'the port map').map((raw, i) => {
    const where = `port mapping #${i + 1}`
    if (!isObject(raw)) throw invalid(`${where} is not an object`)
    const proto = protoOf(raw, where)
    const containerPort = intField(raw, 'Port', where, 1, 65535)
    const hostPort = intField(raw, 'HostPort', where, 0, 65535, false)
    const hostPortEnd = intField(raw, 'HostPortEnd', where, 0, 65535, false)
    if (hostPortEnd !== 0 && hostPortEnd < hostPort) throw invalid(`${where}: host port range ${hostPort}-${hostPortEnd} is reversed`)
    const hostIp = raw.HostIP ?? ''
    if (typeof hostIp !== 'string' || (hostIp !== '' && !ipOf(hostIp))) throw invalid(`${where}: host IP ${quote(hostIp)} is not an IP address`)
    return { proto, containerPort, hostIp, hostPort, hostPortEnd: hostPortEnd || hostPort }
  })
}

export function parseExposedPorts(value: unknown): Array<{ proto: PortMapping['proto']; port: number }> {
  return list(value, 'the exposed port list').map((raw, i) => {
    const where = `exposed port #${i + 1}`
    if (!isObject(raw)) throw invalid(`${where} is not an object`)
    return { proto: protoOf(raw, where), port: intField(raw, 'Port', where, 1, 65535) }
  })
}

/** Host ports from..to, both included. */
export interface PortRange {
  from: number
  to: number
}

/** One mapping to publish: the host ports it may take and, per address family, where it binds and leads. */
export interface PublishRequest {
  mapping: PortMapping
  targets: Array<{ family: Family; containerIp: string; bind: string }>
  /**
   * Host ports to try, lowest first; undefined: one from the ephemeral range. Kept as a range,
   * never spelled out: one request may carry thousands of mappings that each span 65,535 ports.
   */
  hostPorts: PortRange | undefined
}

const WILDCARD: Record<Family, string> = { 4: '0.0.0.0', 6: '::' }

/** The address a published port is bound to: its HostIP, or every address of its family. */
export const bindAddressOf = (p: { family: Family; hostIp: string }): string => p.hostIp || WILDCARD[p.family]

/**
 * What publishing `mappings` for an endpoint means. An empty HostIP publishes on every host
 * address of each family the container has; a given HostIP only on that one.
 */
export function planPublish(endpoint: { address?: string; addressV6?: string }, mappings: PortMapping[]): PublishRequest[] {
  const ips: Partial<Record<Family, string>> = {}
  for (const a of [endpoint.address, endpoint.addressV6]) {
    const c = a ? parseCidr(a) : undefined
    if (c) ips[c.ip.family] = formatIp(c.ip)
  }
  const ipOf = ipParser()
  return mappings.map((m, i) => {
    const where = `port mapping #${i + 1} (${m.proto}/${m.containerPort})`
    let targets: PublishRequest['targets']
    if (m.hostIp === '') {
      targets = ([4, 6] as const).flatMap((f) => (ips[f] ? [{ family: f, containerIp: ips[f] as string, bind: WILDCARD[f] }] : []))
      if (targets.length === 0) throw invalid(`${where}: the container has no address on this network to publish`)
    } else {
      const ip = ipOf(m.hostIp)
      if (!ip) throw invalid(`${where}: host IP ${quote(m.hostIp)} is not an IP address`)
      const target = ips[ip.family]
      if (!target) throw invalid(`${where}: host IP ${m.hostIp} is IPv${ip.family}, but the container has no IPv${ip.family} address on this network`)
      targets = [{ family: ip.family, containerIp: target, bind: formatIp(ip) }]
    }
    const hostPorts = m.hostPort === 0 ? undefined : { from: m.hostPort, to: m.hostPortEnd }
    return { mapping: m, targets, hostPorts }
  })
}

/**
 * The most host ports one ProgramExternalConnectivity may look at, over all its mappings: each
 * port of a range that is checked against the ports already published, or tried on the host,
 * counts once. Docker's real uses stay far below it (4,096 single mappings, the most one
 * request carries; or a range such as 8000-9000 shared by a few hundred containers), while
 * thousands of `-p 1-65535:80` mappings in one request are refused in milliseconds.
 */
export const MAX_PORT_TRIES = 16_384

/** Where a host port is bound: its family and address (0.0.0.0 or :: for every address). */
export interface PortBinding {
  family: Family
  bind: string
}

const isWildcard = (address: string) => address === '0.0.0.0' || address === '::'

/** Two bindings of one port collide in the kernel: same family, and one address covers the other. */
export const kernelOverlap = (a: PortBinding, b: PortBinding): boolean =>
  a.family === b.family && (isWildcard(a.bind) || isWildcard(b.bind) || a.bind === b.bind)

/** tsnet's rule between endpoints, stricter than the kernel's: a wildcard of either family covers every address. */
export const endpointOverlap = (a: PortBinding, b: PortBinding): boolean => isWildcard(a.bind) || isWildcard(b.bind) || a.bind === b.bind

const PROTO_INDEX: Record<PortMapping['proto'], number> = { tcp: 0, udp: 1, sctp: 2 }
const canonicalAddress = (address: string) => {
  const ip = parseIp(address)
  return ip ? formatIp(ip) : address
}

/**
 * Published host ports indexed by (protocol, port), so that checking a candidate costs one
 * lookup whatever the number of endpoints and mappings.
 */
export class PortHolders {
  private readonly byPort = new Map<number, Array<PortBinding & { owner: string }>>()

  constructor(private readonly overlap: (a: PortBinding, b: PortBinding) => boolean) {}

  add(proto: PortMapping['proto'], port: number, binding: PortBinding, owner: string): void {
    const key = PROTO_INDEX[proto] * 65536 + port
    const list = this.byPort.get(key) ?? []
    list.push({ family: binding.family, bind: canonicalAddress(binding.bind), owner })
    this.byPort.set(key, list)
  }

  /** Who holds `proto/port` on an address one of `bindings` (canonical, as planPublish writes them) would use, if anyone does. */
  holder(proto: PortMapping['proto'], port: number, bindings: PortBinding[]): string | undefined {
    const list = this.byPort.get(PROTO_INDEX[proto] * 65536 + port)
    if (!list) return undefined
    for (const b of bindings) {
      const hit = list.find((h) => this.overlap(h, b))
      if (hit) return hit.owner
    }
    return undefined
  }
}
