/**
 * The `tsnet.allow` policy: which sources may reach a network's containers, on which ports.
 * Syntax (docs/network-edge.md): rules separated by ';', each `SOURCES PORTS`, both
 * comma-separated. A source is a Docker network name or an address/CIDR; a port is
 * `tcp|udp|sctp/N[-M]` or `icmp`.
 */
import { clip, invalid, quote } from '../errors.js'
import { type Family, familyBits, formatCidr, formatPrefix, parseCidr, parseIp } from './addr.js'

export type PolicySource = { kind: 'network'; name: string } | { kind: 'cidr'; cidr: string; family: Family }
export type PolicyPort = { proto: 'tcp' | 'udp' | 'sctp'; from: number; to: number } | { proto: 'icmp' }
export interface PolicyRule {
  sources: PolicySource[]
  ports: PolicyPort[]
}

export const POLICY_OPTION = 'tsnet.allow'
export const MAX_PORT_SPAN = 1024
const MAX_TEXT = 4096
const MAX_RULES = 64
/** Docker's own rule for network names. */
const NETWORK_NAME_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$/
const PORT_RE = /^(tcp|udp|sctp)\/(\d{1,5})(?:-(\d{1,5}))?$/

function parseSource(text: string, where: string): PolicySource {
  const ip = parseIp(text)
  if (ip) return { kind: 'cidr', cidr: formatCidr(ip, familyBits(ip.family)), family: ip.family }
  if (text.includes('/')) {
    const c = parseCidr(text)
    if (!c) throw invalid(`${where}: ${quote(text)} is not a valid CIDR`)
    if (c.prefix.bits === 0) throw invalid(`${where}: ${quote(text)} would allow every address; name the sources you mean`)
    return { kind: 'cidr', cidr: formatPrefix(c.prefix), family: c.ip.family }
  }
  if (!NETWORK_NAME_RE.test(text)) throw invalid(`${where}: ${quote(text)} is neither a network name nor an address or CIDR`)
  return { kind: 'network', name: text }
}

function parsePort(text: string, where: string): PolicyPort {
  if (text === 'icmp') return { proto: 'icmp' }
  const m = PORT_RE.exec(text)
  if (!m) throw invalid(`${where}: ${quote(text)} is not a port; write tcp/N, udp/N, sctp/N, a range such as tcp/8000-8010, or icmp`)
  const proto = m[1] as 'tcp' | 'udp' | 'sctp'
  const from = Number(m[2])
  const to = m[3] === undefined ? from : Number(m[3])
  for (const p of [from, to]) if (p < 1 || p > 65535) throw invalid(`${where}: port ${p} in ${quote(text)} is out of range (1-65535)`)
  if (to < from) throw invalid(`${where}: port range ${quote(text)} is reversed`)
  if (to - from + 1 > MAX_PORT_SPAN) throw invalid(`${where}: port range ${quote(text)} spans ${to - from + 1} ports; at most ${MAX_PORT_SPAN} are allowed per range`)
  return { proto, from, to }
}

/** Parses a policy text; the empty text is no policy. Throws an invalid error naming the part that is wrong. */
export function parsePolicy(text: string): PolicyRule[] {
  if (typeof text !== 'string') throw invalid(`${POLICY_OPTION} must be a string`)
  if (text.length > MAX_TEXT) throw invalid(`${POLICY_OPTION} is ${text.length} characters long; at most ${MAX_TEXT} are accepted`)
  const parts = text.split(';').map((r) => r.trim()).filter((r) => r !== '')
  if (parts.length > MAX_RULES) throw invalid(`${POLICY_OPTION} has ${parts.length} rules; at most ${MAX_RULES} are accepted`)
  return parts.map((part, i) => {
    const where = `${POLICY_OPTION} rule ${i + 1} (${quote(clip(part))})`
    const words = part.split(/\s+/)
    if (words.length !== 2) throw invalid(`${where}: a rule is SOURCES PORTS, for example "ui tcp/8080" or "10.1.0.0/16,ops tcp/80,tcp/443"`)
    const [sourceText = '', portText = ''] = words
    const sources = sourceText.split(',').map((s) => parseSource(s, where))
    const ports = portText.split(',').map((p) => parsePort(p, where))
    return { sources, ports }
  })
}

/** The canonical text of a parsed policy (status output, and what `policy show` prints). */
export function formatPolicy(rules: PolicyRule[]): string {
  return rules.map((r) => {
    const src = r.sources.map((s) => (s.kind === 'network' ? s.name : s.cidr)).join(',')
    const ports = r.ports.map((p) => (p.proto === 'icmp' ? 'icmp' : p.from === p.to ? `${p.proto}/${p.from}` : `${p.proto}/${p.from}-${p.to}`)).join(',')
    return `${src} ${ports}`
  }).join('; ')
}

/** The canonical text of a policy text; refused when even that form would be too long to keep. */
export function canonicalPolicy(text: string): string {
  const canonical = formatPolicy(parsePolicy(text))
  if (canonical.length > MAX_TEXT) throw invalid(`${POLICY_OPTION} is ${canonical.length} characters long once written out in full (addresses as CIDRs); at most ${MAX_TEXT} are kept`)
  return canonical
}

/** Network names a policy refers to. */
export function policyNetworkNames(rules: PolicyRule[]): string[] {
  return [...new Set(rules.flatMap((r) => r.sources.flatMap((s) => (s.kind === 'network' ? [s.name] : []))))]
}
