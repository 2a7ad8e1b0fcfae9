/**
 * The fixed part of the network edge, the same on every host whatever its networks: tsnet's
 * chains and the rules in them, the jumps to them, the device groups and sets they match on.
 */
import type { Family } from './addr.js'

export const FAMILIES: readonly Family[] = [4, 6]

/** Device group of tsnet bridges: a fixed marker in the high half, option flags in the low bits. */
export const GROUP = { base: 0x74730000, mask: 0xffff0000, iccOff: 0x1, internal: 0x2, overlay: 0x4 } as const
const hex = (n: number) => `0x${n.toString(16)}`
const TSNET_DEV = `${hex(GROUP.base)}/${hex(GROUP.mask)}`
const ICC_OFF_DEV = `${hex(GROUP.iccOff)}/${hex(GROUP.iccOff)}`
const INTERNAL_DEV = `${hex(GROUP.internal)}/${hex(GROUP.internal)}`
/**
 * Overlay bridges: tsnet's marker and the overlay bit together. TSNET-INPUT sees every packet for
 * the host, so its rules need the marker too, or an interface of the host's whose group merely has
 * that bit would match.
 */
const OVERLAY_DEV = `${hex((GROUP.base | GROUP.overlay) >>> 0)}/${hex((GROUP.mask | GROUP.overlay) >>> 0)}`

export function deviceGroupOf(n: { enableIcc: boolean; internal: boolean }): number {
  return GROUP.base | (n.enableIcc ? 0 : GROUP.iccOff) | (n.internal ? GROUP.internal : 0)
}

/**
 * An overlay bridge: nothing is routed into or out of it on the host (its containers route
 * through docker_gwbridge), so the internal bit drops routed traffic both ways, and the overlay
 * bit lets TSNET-INPUT drop what its containers send to the host itself.
 */
export const OVERLAY_GROUP = GROUP.base | GROUP.internal | GROUP.overlay

export const CHAIN = {
  forward: 'TSNET-FORWARD',
  from: 'TSNET-FROM',
  to: 'TSNET-TO',
  dnat: 'TSNET-DNAT',
  postrouting: 'TSNET-POSTROUTING',
  raw: 'TSNET-RAW',
  /** Made with the first guard rule (core/objects.ts GuardObject) and removed with the last. */
  input: 'TSNET-INPUT',
  /** The same for guard rules in mangle PREROUTING. */
  prerouting: 'TSNET-PREROUTING',
} as const
/** Docker's chain for user rules; Docker keeps its jump first in FORWARD whenever it starts. */
export const DOCKER_USER = 'DOCKER-USER'

export type SetKind = 'src' | 'masq' | 'allow' | 'foreign' | 'vtep'
export const SET_TYPE: Record<SetKind, string> = {
  src: 'hash:net,iface',
  masq: 'hash:net',
  allow: 'hash:ip,port,net',
  foreign: 'hash:net',
  // The hosts of the swarm (their VTEP addresses): the only sources of VXLAN for tsnet's networks.
  vtep: 'hash:ip',
}
export const SET_KINDS = Object.keys(SET_TYPE) as SetKind[]
/** The sets the base makes; the VTEP sets come with the first overlay network (hosts with bridges only never get them). */
export const BASE_SET_KINDS: readonly SetKind[] = ['src', 'masq', 'allow', 'foreign']
export const setName = (kind: SetKind, family: Family) => `tsnet-${kind}${family}`
export const ALL_SETS = FAMILIES.flatMap((f) => SET_KINDS.map((k) => setName(k, f)))
export const BASE_SETS = FAMILIES.flatMap((f) => BASE_SET_KINDS.map((k) => setName(k, f)))
export const VTEP_TAG = 'tsnet:vtep'

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

/** What TSNET-INPUT drops from overlay bridges: the host is not reachable from an overlay network. */
export const OVERLAY_TO_HOST_RULE = `-m devgroup --src-group ${OVERLAY_DEV} -m comment --comment tsnet:overlay-to-host -j DROP`

/** u32 expression selecting VXLAN packets of one VNI (IPv4: header length from IHL; IPv6: no extension headers). */
function vniMatch(f: Family, vni: number): string {
  const v = `0x${vni.toString(16)}`
  return f === 4 ? `0x0>>0x16&0x3c@0xc>>0x8=${v}` : `0x34>>0x8=${v}`
}

/**
 * The rule that drops VXLAN of one network (its port and VNI) from any source that is not a known
 * VTEP. Written the way `iptables -S` prints it once quotes are removed, so it reads back equal.
 */
export function vxlanGuardRule(f: Family, port: number, vni: number, tag: string): string {
  return `-p udp -m udp --dport ${port} -m u32 --u32 ${vniMatch(f, vni)} -m set ! --match-set ${setName('vtep', f)} src -m comment --comment ${tag} -j DROP`
}

export const VTEP_PASS_TAG = 'tsnet:vtep-pass'
/**
 * What a known VTEP sends to a VXLAN port leaves TSNET-INPUT at once: the per-network rules only
 * drop other sources, so this changes no verdict, but a peer's datagram no longer runs one u32
 * match per overlay network (its cost grew with the networks). Shared by the networks on a port.
 */
export function vtepPassRule(f: Family, port: number): string {
  return `-p udp -m udp --dport ${port} -m set --match-set ${setName('vtep', f)} src -m comment --comment ${VTEP_PASS_TAG} -j RETURN`
}

/**
 * Where a rule goes in TSNET-INPUT: drops that hold whatever the source (from an overlay network
 * to the host) before the VTEP pass, and the pass before the per-network drops it short-cuts.
 */
export function guardRank(rule: string): number {
  if (rule.includes(`--comment ${VTEP_PASS_TAG} `)) return 1
  return rule.includes('--match-set') ? 2 : 0
}

export const VTEP_SPOOF_TAG = 'tsnet:vtep-spoof'
/**
 * VXLAN with a known VTEP's source address that did not come in where the route to that VTEP
 * goes out: a local container (every overlay container is on docker_gwbridge too) posing as a peer
 * to get past TSNET-INPUT's source check. Dropped before routing (rpfilter needs PREROUTING); a
 * peer's own datagrams arrive on the route back to it and pass. Only the VXLAN port: the nodes'
 * other traffic (Swarm's) is not tsnet's to judge.
 */
export function vtepSpoofRule(f: Family, port: number): string {
  // The set before the route lookup: that lookup is made for a VTEP's datagrams only.
  return `-p udp -m udp --dport ${port} -m set --match-set ${setName('vtep', f)} src -m rpfilter --invert -m comment --comment ${VTEP_SPOOF_TAG} -j DROP`
}

/** TSNET-INPUT's rules in the order they are written (stable within a rank). */
export function inGuardOrder(rules: readonly string[]): string[] {
  return rules.map((rule, i) => ({ rule, i })).sort((a, b) => guardRank(a.rule) - guardRank(b.rule) || a.i - b.i).map((x) => x.rule)
}
