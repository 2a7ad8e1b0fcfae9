/**
 * Pure rendering of the network edge: the fixed chains every host gets, the ipset entries each
 * network and endpoint contributes, and the DNAT rule of each published port. The host layer
 * only applies what this module says.
 *
 * Per-packet cost stays flat: a forwarded packet meets the same few rules whatever the number of
 * networks, because per-network facts are hash lookups (ipsets) and device-group bits.
 */
import { type Family, formatIp, parseCidr, parseIp } from './addr.js'
import { networkTag } from './names.js'
import { parsePolicy } from './policy.js'
import type { ChainsObject, DnatObject, PortHoldObject, SetEntryObject } from './objects.js'
import { bindAddressOf } from './ports.js'
import type { EndpointRecord, PublishedPort } from './records.js'
import { FOREIGN_TAG, type SetEntry, setName } from './edge-rules.js'
import { allowEntries, checkPolicySize } from './allow-entries.js'

export * from './edge-rules.js'
export { MAX_ALLOW_ENTRIES, allowEntries, allowEntryCount, checkPolicySize } from './allow-entries.js'

/**
 * Whether a bridge needs route_localnet: the host's own connections to 127.0.0.1 reach a
 * container behind it through an IPv4 port published on a loopback or wildcard address, and
 * such a packet leaves (and its reply comes back) with a loopback address the kernel otherwise
 * refuses to route off lo. `published` are the ports of the containers behind the bridge.
 */
export function needsRouteLocalnet(published: Iterable<Pick<PublishedPort, 'family' | 'hostIp'>>): boolean {
  for (const p of published) {
    if (p.family !== 4) continue
    if (p.hostIp === '') return true
    const ip = parseIp(p.hostIp)
    if (ip && (ip.value === 0n || ip.value >> 24n === 127n)) return true
  }
  return false
}

const prefixOf = (cidr: string) => {
  const c = parseCidr(cidr)
  return c ? `${formatIp({ family: c.prefix.family, value: c.prefix.network })}/${c.prefix.bits}` : undefined
}
export const familyOf = (cidr: string): Family | undefined => parseCidr(cidr)?.ip.family

/** hash:net refuses /0; an unbounded pool is entered as its two halves. */
export function netMembers(cidr: string): string[] {
  const p = prefixOf(cidr)
  if (!p) return []
  if (p === '0.0.0.0/0') return ['0.0.0.0/1', '128.0.0.0/1']
  if (p === '::/0') return ['::/1', '8000::/1']
  return [p]
}

/** What the edge sees of a network: the interface its traffic crosses and the options that shape its rules. */
export interface EdgeNetwork {
  id: string
  /** The bridge the network's containers hang on. */
  iface: string
  subnets: string[]
  masquerade: boolean
  internal: boolean
  policy?: string
}

/** What a network puts in the src (anti-spoofing, hairpin) and masq (egress NAT) sets. */
export function networkEntries(n: EdgeNetwork): SetEntry[] {
  const comment = networkTag(n.id)
  const out: SetEntry[] = []
  for (const pool of n.subnets) {
    const f = familyOf(pool)
    if (!f) continue
    for (const m of netMembers(pool)) {
      out.push({ set: setName('src', f), entry: `${m},${n.iface}`, comment })
      if (n.masquerade && !n.internal) out.push({ set: setName('masq', f), entry: m, comment })
    }
  }
  return out
}

/** Resolves a network name to its subnets (from Docker's view); empty when Docker knows no such network. */
export type NameResolver = (name: string) => string[]

/**
 * Everything a network puts in the sets: its subnets, and what its stored policy lets in to
 * `endpoints` (its own). Refuses, before expanding it, a policy beyond MAX_ALLOW_ENTRIES.
 */
export function entriesOfNetwork(n: EdgeNetwork, endpoints: readonly EndpointRecord[], resolve: NameResolver): SetEntry[] {
  const rules = n.policy ? parsePolicy(n.policy) : []
  checkPolicySize(n, endpoints, resolve, rules)
  return [...networkEntries(n), ...allowEntries(n, endpoints, rules, resolve)]
}

/** Subnets of Docker's own bridge networks: tsnet's containers may not open connections to them. */
export function foreignEntries(subnets: string[]): SetEntry[] {
  const out = new Map<string, SetEntry>()
  for (const s of subnets) {
    const f = familyOf(s)
    if (!f) continue
    for (const m of netMembers(s)) out.set(`${f} ${m}`, { set: setName('foreign', f), entry: m, comment: FOREIGN_TAG })
  }
  return [...out.values()]
}

/** The edge objects of one network: the shared chains, and its set members as objects. */
export function edgeObjects(n: EdgeNetwork, endpoints: readonly EndpointRecord[], resolve: NameResolver): Array<ChainsObject | SetEntryObject> {
  return [{ kind: 'chains', intact: true }, ...entriesOfNetwork(n, endpoints, resolve).map(setEntryObject)]
}

export const setEntryObject = (e: SetEntry): SetEntryObject => ({ kind: 'setEntry', set: e.set, entry: e.entry, comment: e.comment })

/** Comment on an endpoint's DNAT rules. */
export const endpointTag = (endpointId: string) => `tsnet:ep:${endpointId.slice(0, 12)}`

/** The DNAT rule (body, without `-A TSNET-DNAT`) of one published port. */
export function dnatRule(endpointId: string, p: PublishedPort): string {
  const dest = p.family === 4 ? `${p.containerIp}:${p.containerPort}` : `[${p.containerIp}]:${p.containerPort}`
  const host = p.hostIp !== '' && p.hostIp !== '0.0.0.0' && p.hostIp !== '::' ? `-d ${p.hostIp}/${p.family === 4 ? 32 : 128} ` : ''
  return `${host}-p ${p.proto} -m ${p.proto} --dport ${p.hostPort} -m comment --comment "${endpointTag(endpointId)}" -j DNAT --to-destination ${dest}`
}

/**
 * The objects of an endpoint's published ports: one DNAT rule per port and family, and the
 * host port held by a socket per (protocol, port, host address) with every family it binds.
 */
export function publishedObjects(e: EndpointRecord): Array<DnatObject | PortHoldObject> {
  const out: Array<DnatObject | PortHoldObject> = []
  const holds = new Map<string, PortHoldObject>()
  for (const p of e.published ?? []) {
    out.push({ kind: 'dnat', family: p.family, rule: dnatRule(e.id, p) })
    const key = `${p.proto}/${p.hostPort}/${p.hostIp}`
    const hold = holds.get(key) ?? { kind: 'portHold', proto: p.proto, port: p.hostPort, bindings: [] }
    hold.bindings.push({ family: p.family, address: bindAddressOf(p) })
    holds.set(key, hold)
  }
  return [...out, ...holds.values()]
}
