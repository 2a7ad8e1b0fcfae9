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
import { POLICY_OPTION, type PolicyRule, type PolicySource, formatPolicy, parsePolicy } from './policy.js'
import { type Grant, containerIps, grantsOf, pairsPerContainer } from './policy-grants.js'
import { invalid, quote } from '../errors.js'
import type { EndpointRecord, NetworkRecord, PublishedPort } from './records.js'

export const FAMILIES: readonly Family[] = [4, 6]

/** Device group of tsnet bridges: a fixed marker in the high half, option flags in the low bits. */
export const GROUP = { base: 0x74730000, mask: 0xffff0000, iccOff: 0x1, internal: 0x2 } as const
const hex = (n: number) => `0x${n.toString(16)}`
const TSNET_DEV = `${hex(GROUP.base)}/${hex(GROUP.mask)}`
const ICC_OFF_DEV = `${hex(GROUP.iccOff)}/${hex(GROUP.iccOff)}`
const INTERNAL_DEV = `${hex(GROUP.internal)}/${hex(GROUP.internal)}`

export function deviceGroupOf(n: Pick<NetworkRecord, 'enableIcc' | 'internal'>): number {
  return GROUP.base | (n.enableIcc ? 0 : GROUP.iccOff) | (n.internal ? GROUP.internal : 0)
}

export const CHAIN = {
  forward: 'TSNET-FORWARD',
  from: 'TSNET-FROM',
  to: 'TSNET-TO',
  dnat: 'TSNET-DNAT',
  postrouting: 'TSNET-POSTROUTING',
  raw: 'TSNET-RAW',
} as const
/** Docker's chain for user rules; Docker keeps its jump first in FORWARD whenever it starts. */
export const DOCKER_USER = 'DOCKER-USER'

export type SetKind = 'src' | 'masq' | 'allow' | 'foreign'
export const SET_TYPE: Record<SetKind, string> = {
  src: 'hash:net,iface',
  masq: 'hash:net',
  allow: 'hash:ip,port,net',
  foreign: 'hash:net',
}
export const SET_KINDS = Object.keys(SET_TYPE) as SetKind[]
export const setName = (kind: SetKind, family: Family) => `tsnet-${kind}${family}`
export const ALL_SETS = FAMILIES.flatMap((f) => SET_KINDS.map((k) => setName(k, f)))

/** One ipset member, commented with who it belongs to (a network tag, or `tsnet:docker`). */
export interface SetEntry {
  set: string
  entry: string
  comment: string
}
export const FOREIGN_TAG = 'tsnet:docker'
export const entryKey = (e: SetEntry) => `${e.set} ${e.entry}`

/** Drop rules carry these comments so their counters show which part of the policy refused a packet. */
export const DROP = {
  icc: 'tsnet: icc disabled',
  spoofed: 'tsnet: spoofed source',
  internal: 'tsnet: internal network',
  docker: 'tsnet: to a Docker network',
  notAllowed: 'tsnet: not allowed',
  loopback: 'tsnet: loopback from outside',
} as const

const drop = (why: string) => `-m comment --comment "${why}" -j DROP`

/**
 * Docker's bridges by the names Docker gives them: the default bridge, the swarm egress bridge
 * and every user network (`br-` and 12 hex digits of its ID). These names keep tsnet's containers
 * out of Docker's networks without Docker's API (the foreign set adds the subnets of networks
 * named otherwise, once Docker's API has told them). Other bridges are not closed: a host's
 * uplink or LAN is often a bridge (br0, vmbr0), and egress through it must stay open. Traffic to a
 * tsnet bridge named like this never gets here (TSNET-TO decides it first).
 */
export const DOCKER_BRIDGES = ['docker0', 'docker_gwbridge', 'br-+'] as const

/** The fixed filter rules of one family (chain bodies; the chains are flushed and refilled whole). */
export function filterRules(f: Family): Record<'forward' | 'from' | 'to', string[]> {
  const set = (k: SetKind) => setName(k, f)
  return {
    forward: [
      `-m devgroup --src-group ${TSNET_DEV} -j ${CHAIN.from}`,
      `-m devgroup --dst-group ${TSNET_DEV} -j ${CHAIN.to}`,
    ],
    // Out of a tsnet bridge. Bridged frames stay inside one network (in == out).
    from: [
      `-m physdev --physdev-is-bridged -m devgroup --src-group ${ICC_OFF_DEV} ${drop(DROP.icc)}`,
      `-m physdev --physdev-is-bridged -j ACCEPT`,
      `-m set ! --match-set ${set('src')} src,src ${drop(DROP.spoofed)}`,
      `-m devgroup --src-group ${INTERNAL_DEV} ${drop(DROP.internal)}`,
      `-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT`,
      `-m devgroup --dst-group ${TSNET_DEV} -j ${CHAIN.to}`,
      ...DOCKER_BRIDGES.map((b) => `-o ${b} ${drop(DROP.docker)}`),
      `-m set --match-set ${set('foreign')} dst ${drop(DROP.docker)}`,
      `-j ACCEPT`,
    ],
    // Into a tsnet bridge from anywhere else: replies, published ports, and what policies allow.
    to: [
      `-m devgroup --dst-group ${INTERNAL_DEV} ${drop(DROP.internal)}`,
      `-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT`,
      `-m conntrack --ctstate DNAT -j ACCEPT`,
      `-m set --match-set ${set('allow')} dst,dst,src -j ACCEPT`,
      drop(DROP.notAllowed),
    ],
  }
}

/** The fixed nat rules of one family: hairpin and localhost sources, then egress masquerade. */
export function postroutingRules(f: Family): string[] {
  return [
    `-m conntrack --ctstate DNAT -m set --match-set ${setName('src', f)} src,dst -j MASQUERADE`,
    ...(f === 4 ? [`-s 127.0.0.0/8 -m devgroup --dst-group ${TSNET_DEV} -j MASQUERADE`] : []),
    `-m devgroup --dst-group ${TSNET_DEV} -j RETURN`,
    `-m set --match-set ${setName('masq', f)} src -j MASQUERADE`,
  ]
}

/** What only the host itself may send to: the loopback range of each family. */
export const LOOPBACK: Record<Family, string> = { 4: '127.0.0.0/8', 6: '::1/128' }

/**
 * The raw PREROUTING rules of one family, before conntrack and NAT see the packet: nothing that
 * arrives on another interface than lo may be addressed to loopback. Host-wide rather than per
 * tsnet bridge, because a LAN host can route 127.0.0.1 to this host as well as a container can,
 * and tsnet's route_localnet (or another tool's, kube-proxy sets it for all interfaces) would
 * otherwise deliver such packets to services bound to 127.0.0.1. The kernel already treats them
 * as martians wherever route_localnet is off, so the rule takes nothing legitimate away: the
 * host's own traffic to 127.0.0.1 arrives on lo, and replies to its DNATed connections are still
 * addressed to a bridge address at this point. (The kernel drops ::1 from other interfaces before
 * netfilter sees it; the IPv6 rule is there so both families say the same.)
 */
export function rawRules(f: Family): string[] {
  return [`-d ${LOOPBACK[f]} ! -i lo ${drop(DROP.loopback)}`]
}

/** Jumps from built-in chains (and DOCKER-USER) to tsnet's, each wanted first in its chain. */
export interface Jump {
  table: 'filter' | 'nat' | 'raw'
  chain: string
  rule: string
}
/**
 * The jumps of one family. Published ports are DNATed for local destinations: from PREROUTING
 * only when not addressed to loopback (a loopback binding answers the host itself, whose packets
 * take OUTPUT), from OUTPUT for all of them.
 */
export function jumps(f: Family): Jump[] {
  return [
    { table: 'filter', chain: 'FORWARD', rule: `-j ${CHAIN.forward}` },
    { table: 'filter', chain: DOCKER_USER, rule: `-j ${CHAIN.forward}` },
    { table: 'nat', chain: 'PREROUTING', rule: `! -d ${LOOPBACK[f]} -m addrtype --dst-type LOCAL -j ${CHAIN.dnat}` },
    { table: 'nat', chain: 'OUTPUT', rule: `-m addrtype --dst-type LOCAL -j ${CHAIN.dnat}` },
    { table: 'nat', chain: 'POSTROUTING', rule: `-j ${CHAIN.postrouting}` },
    { table: 'raw', chain: 'PREROUTING', rule: `-j ${CHAIN.raw}` },
  ]
}
/** Jumps earlier versions of tsnet made and this one removes (the PREROUTING one DNATed packets to 127.0.0.1 from anywhere). */
export const LEGACY_JUMPS: readonly Jump[] = [
  { table: 'nat', chain: 'PREROUTING', rule: `-m addrtype --dst-type LOCAL -j ${CHAIN.dnat}` },
]

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
const familyOf = (cidr: string): Family | undefined => parseCidr(cidr)?.ip.family

/** hash:net refuses /0; an unbounded pool is entered as its two halves. */
function netMembers(cidr: string): string[] {
  const p = prefixOf(cidr)
  if (!p) return []
  if (p === '0.0.0.0/0') return ['0.0.0.0/1', '128.0.0.0/1']
  if (p === '::/0') return ['::/1', '8000::/1']
  return [p]
}

/** What a network puts in the src (anti-spoofing, hairpin) and masq (egress NAT) sets. */
export function networkEntries(n: NetworkRecord): SetEntry[] {
  const comment = networkTag(n.id)
  const out: SetEntry[] = []
  for (const s of [...n.ipv4Subnets, ...n.ipv6Subnets]) {
    const f = familyOf(s.pool)
    if (!f) continue
    for (const m of netMembers(s.pool)) {
      out.push({ set: setName('src', f), entry: `${m},${n.bridge}`, comment })
      if (n.enableIpMasquerade && !n.internal) out.push({ set: setName('masq', f), entry: m, comment })
    }
  }
  return out
}

/** Resolves a network name to its subnets (from Docker's view); empty when Docker knows no such network. */
export type NameResolver = (name: string) => string[]

/** Per network; the allow sets have room for many networks at this size. */
export const MAX_ALLOW_ENTRIES = 65_536

interface AllowPlan {
  grants: Record<Family, Map<string, Grant>>
  /** Containers counted per family. */
  containers: Record<Family, number>
  count: number
}

/** What `rules` grant per family (names resolved, members canonical), and the entries that makes for `containers`. */
function planAllow(rules: PolicyRule[], containers: Record<Family, number>, resolve: NameResolver): AllowPlan {
  // Each CIDR parsed once, whatever the number of rules and families naming it (parsing is the costly part).
  const parsed = new Map<string, string[]>()
  const membersOfCidr = (cidr: string) => {
    let members = parsed.get(cidr)
    if (!members) parsed.set(cidr, (members = netMembers(cidr)))
    return members
  }
  const membersIn = (f: Family) => (s: PolicySource) =>
    (s.kind === 'cidr' ? [s.cidr] : resolve(s.name)).flatMap(membersOfCidr).filter((m) => m.includes(':') === (f === 6))
  const grants = { 4: grantsOf(rules, membersIn(4)), 6: grantsOf(rules, membersIn(6)) }
  const count = FAMILIES.reduce((sum, f) => sum + containers[f] * pairsPerContainer(grants[f]), 0)
  return { grants, containers, count }
}

/** The refusal of a policy that would expand beyond MAX_ALLOW_ENTRIES: it names the network, the policy and the count. */
function refuseOversized(n: NetworkRecord, rules: PolicyRule[], plan: AllowPlan, hypothetical: boolean): never {
  const parts = FAMILIES.filter((f) => plan.containers[f] > 0)
    .map((f) => `${plan.containers[f]} x ${pairsPerContainer(plan.grants[f])} port/source pairs over IPv${f}`)
  const whom = hypothetical ? 'for its first container' : 'for its containers'
  throw invalid(`the ${POLICY_OPTION} policy of network ${n.id.slice(0, 12)} (${quote(formatPolicy(rules))}) would put ${plan.count} entries in the firewall ${whom} (${parts.join(' + ')}); at most ${MAX_ALLOW_ENTRIES} are allowed per network: name fewer sources or narrower port ranges`)
}

/**
 * How many allow-set entries `rules` yield for `endpoints`, counted from the ranges without
 * spelling them out: per family, container addresses x distinct (port, source) pairs, names
 * counted with the subnets they resolve to.
 */
export function allowEntryCount(n: NetworkRecord, endpoints: EndpointRecord[], rules: PolicyRule[], resolve: NameResolver): number {
  if (n.internal || rules.length === 0) return 0
  const ips = containerIps(endpoints)
  return planAllow(rules, { 4: ips[4].length, 6: ips[6].length }, resolve).count
}

/**
 * Refuses a network's policy that would put more than MAX_ALLOW_ENTRIES entries in the firewall,
 * before any is built. With no endpoint yet (CreateNetwork, `tsnet policy set` on an empty
 * network) one container per family the network has is counted: a policy that no container
 * could take is refused when it is given, not at the first container start.
 */
export function checkPolicySize(n: NetworkRecord, endpoints: EndpointRecord[], resolve: NameResolver, rules = n.policy ? parsePolicy(n.policy) : []): void {
  if (n.internal || rules.length === 0) return
  const ips = containerIps(endpoints)
  const hypothetical = ips[4].length + ips[6].length === 0
  const containers = hypothetical
    ? { 4: n.ipv4Subnets.length > 0 ? 1 : 0, 6: n.ipv6Subnets.length > 0 ? 1 : 0 }
    : { 4: ips[4].length, 6: ips[6].length }
  const plan = planAllow(rules, containers, resolve)
  if (plan.count > MAX_ALLOW_ENTRIES) refuseOversized(n, rules, plan, hypothetical)
}

/**
 * What a network's policy puts in the allow set: container address, protocol:port, source; each
 * entry once. Counted first: a policy beyond MAX_ALLOW_ENTRIES is refused before it is expanded.
 */
export function allowEntries(n: NetworkRecord, endpoints: EndpointRecord[], rules: PolicyRule[], resolve: NameResolver): SetEntry[] {
  if (n.internal || rules.length === 0) return []
  const ips = containerIps(endpoints)
  const plan = planAllow(rules, { 4: ips[4].length, 6: ips[6].length }, resolve)
  if (plan.count > MAX_ALLOW_ENTRIES) refuseOversized(n, rules, plan, false)
  const comment = networkTag(n.id)
  const out: SetEntry[] = []
  const done = new Set<string>()
  // Endpoint by endpoint (as stored), each address's family in turn; an address met before is done.
  for (const e of endpoints) {
    for (const addr of [e.address, e.addressV6]) {
      const c = addr ? parseCidr(addr) : undefined
      const ip = c ? formatIp(c.ip) : undefined
      if (!c || !ip || done.has(ip)) continue
      done.add(ip)
      const f = c.ip.family
      const set = setName('allow', f)
      for (const [src, g] of plan.grants[f]) {
        for (const proto of g.order) {
          if (proto === 'icmp') {
            out.push({ set, entry: `${ip},${f === 4 ? 'icmp:echo-request' : 'icmpv6:echo-request'},${src}`, comment })
            continue
          }
          for (const [from, to] of g.ranges.get(proto) ?? []) {
            for (let port = from; port <= to; port++) out.push({ set, entry: `${ip},${proto}:${port},${src}`, comment })
          }
        }
      }
    }
  }
  return out
}

/**
 * Everything a network puts in the sets: its subnets, and what its stored policy lets in to
 * `endpoints` (its own). Refuses, before expanding it, a policy beyond MAX_ALLOW_ENTRIES.
 */
export function entriesOfNetwork(n: NetworkRecord, endpoints: EndpointRecord[], resolve: NameResolver): SetEntry[] {
  const rules = n.policy ? parsePolicy(n.policy) : []
  checkPolicySize(n, endpoints, resolve, rules)
  return [...networkEntries(n), ...allowEntries(n, endpoints, rules, resolve)]
}

/**
 * Networks may share a subnet (another IPAM driver allows it): the subnet members of the others,
 * to which a member `n` gives up is handed over rather than deleted.
 */
export function heirsOf(n: NetworkRecord, networks: Iterable<NetworkRecord>): SetEntry[] {
  const pools = new Set([...n.ipv4Subnets, ...n.ipv6Subnets].map((x) => x.pool))
  return [...networks]
    .filter((m) => m.id !== n.id && [...m.ipv4Subnets, ...m.ipv6Subnets].some((x) => pools.has(x.pool)))
    .flatMap((m) => networkEntries(m))
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

/** Comment on an endpoint's DNAT rules. */
export const endpointTag = (endpointId: string) => `tsnet:ep:${endpointId.slice(0, 12)}`

/** The DNAT rule (body, without `-A TSNET-DNAT`) of one published port. */
export function dnatRule(endpointId: string, p: PublishedPort): string {
  const dest = p.family === 4 ? `${p.containerIp}:${p.containerPort}` : `[${p.containerIp}]:${p.containerPort}`
  const host = p.hostIp !== '' && p.hostIp !== '0.0.0.0' && p.hostIp !== '::' ? `-d ${p.hostIp}/${p.family === 4 ? 32 : 128} ` : ''
  return `${host}-p ${p.proto} -m ${p.proto} --dport ${p.hostPort} -m comment --comment "${endpointTag(endpointId)}" -j DNAT --to-destination ${dest}`
}
