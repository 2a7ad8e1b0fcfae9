/**
 * What a parsed `tsnet.allow` policy grants, source by source, as merged port ranges: the shape
 * from which its firewall entries are both counted (arithmetically, before any is built) and
 * spelled out (each entry once, however often the policy repeats a source or a port).
 */
import type { Family } from './addr.js'
import type { PolicyRule, PolicySource } from './policy.js'
import type { EndpointRecord } from './records.js'
import { formatIp, parseCidr } from './addr.js'

export type PortProto = 'tcp' | 'udp' | 'sctp'

/** What one source may reach on each container of its family. */
export interface Grant {
  /** Protocols (and icmp) in the order the policy first names them: the order entries are written in. */
  order: Array<PortProto | 'icmp'>
  /** Per protocol: sorted ranges, overlapping and adjacent ones joined, so each port appears once. */
  ranges: Map<PortProto, Array<[number, number]>>
}

/**
 * Per source member, in the order first named, what `rules` grant it in one family. `membersOf`
 * turns a policy source into the canonical set members of that family (names through Docker's
 * view), so duplicates written differently meet under one key.
 */
export function grantsOf(rules: PolicyRule[], membersOf: (s: PolicySource) => string[]): Map<string, Grant> {
  const out = new Map<string, Grant>()
  for (const rule of rules) {
    for (const m of rule.sources.flatMap(membersOf)) {
      let g = out.get(m)
      if (!g) out.set(m, (g = { order: [], ranges: new Map() }))
      for (const p of rule.ports) {
        if (!g.order.includes(p.proto)) g.order.push(p.proto)
        if (p.proto === 'icmp') continue
        const list = g.ranges.get(p.proto)
        if (list) list.push([p.from, p.to])
        else g.ranges.set(p.proto, [[p.from, p.to]])
      }
    }
  }
  for (const g of out.values()) for (const [proto, list] of g.ranges) g.ranges.set(proto, mergeRanges(list))
  return out
}

function mergeRanges(list: Array<[number, number]>): Array<[number, number]> {
  const out: Array<[number, number]> = []
  for (const [from, to] of [...list].sort((a, b) => a[0] - b[0])) {
    const last = out[out.length - 1]
    if (last && from <= last[1] + 1) last[1] = Math.max(last[1], to)
    else out.push([from, to])
  }
  return out
}

/** Distinct (port, source) pairs the grants give one container: its number of allow entries. */
export function pairsPerContainer(grants: Map<string, Grant>): number {
  let n = 0
  for (const g of grants.values()) {
    if (g.order.includes('icmp')) n++
    for (const list of g.ranges.values()) for (const [from, to] of list) n += to - from + 1
  }
  return n
}

/** Distinct container addresses per family, canonical, in endpoint order. */
export function containerIps(endpoints: readonly EndpointRecord[]): Record<Family, string[]> {
  const out: Record<Family, Set<string>> = { 4: new Set(), 6: new Set() }
  for (const e of endpoints) {
    for (const addr of [e.address, e.addressV6]) {
      const c = addr ? parseCidr(addr) : undefined
      if (c) out[c.ip.family].add(formatIp(c.ip))
    }
  }
  return { 4: [...out[4]], 6: [...out[6]] }
}
