/**
 * Host changes as data. Every mode renders the kernel objects a network or an endpoint needs as
 * plain values; the engine diffs them against what the host has and applies the difference. One
 * object is identified by its key; the rules per kind (what "the same" means, what tsnet owns,
 * in which order objects are made) live here, so diffing stays one generic function.
 */
import type { Family } from './addr.js'
import { BRIDGE_PREFIX, HOST_VETH_PREFIX, MACVLAN_PREFIX } from './names.js'

export type Proto = 'tcp' | 'udp' | 'sctp'
export type LinkType = 'bridge' | 'veth' | 'vxlan' | 'macvlan' | 'vlan'

export interface LinkObject {
  kind: 'link'
  name: string
  type: LinkType
  /** ifalias `tsnet:net:<id>` / `tsnet:ep:<id>`: tsnet only ever changes links that carry its tag. */
  alias: string
  mtu: number
  /** The link's own MAC (bridges); a veth's MAC is its peer's, set at creation. */
  mac?: string
  master?: string
  group?: number
  up: boolean
  /**
   * False: bring the link to spec when it exists, but never create it. A joined veth whose
   * container is gone took its peer along; only Docker can make the container's end again.
   */
  recreate: boolean
  /**
   * Docker moves this link into the container at Join (a macvlan endpoint's only link): once
   * joined, its absence from the host is its normal state, not something missing.
   */
  inSandbox?: boolean
  veth?: { peer: string; peerMac: string }
  /** `ageing`: seconds a learned remote MAC is kept (made with it; not compared, so never a reason to re-make the link). */
  vxlan?: { vni: number; port: number; local: string; dev?: string; learning: boolean; proxy: boolean; ageing?: number }
  macvlan?: { parent: string; mode: 'bridge' | 'private' | 'vepa' | 'passthru' }
  vlan?: { parent: string; id: number }
}

export interface AddrObject {
  kind: 'addr'
  link: string
  /** address/prefix length as given to the link */
  cidr: string
}

export interface SysctlObject {
  kind: 'sysctl'
  /** slash form under /proc/sys, e.g. net/ipv4/conf/tsbr-x/route_localnet */
  path: string
  value: string
}

export interface NeighObject {
  kind: 'neigh'
  link: string
  ip: string
  mac: string
}

export interface FdbObject {
  kind: 'fdb'
  link: string
  mac: string
  /**
   * VTEP the MAC lives behind: an entry of the vxlan device `link` (00:00:00:00:00:00 floods to
   * that host). Absent: a static, sticky entry in the bridge's table pinning the MAC to its port
   * `link`, so no frame from elsewhere moves it.
   */
  dst?: string
}

export interface SetEntryObject {
  kind: 'setEntry'
  set: string
  entry: string
  /** the owner's tag (`tsnet:net:<id12>`, `tsnet:docker`); ipset keeps it as the member's comment */
  comment: string
}

export interface DnatObject {
  kind: 'dnat'
  family: Family
  /** rule body in TSNET-DNAT, tagged with its endpoint */
  rule: string
}

/** tsnet's fixed chains, jumps and sets (both families): there while any network exists. */
export interface ChainsObject {
  kind: 'chains'
  /** All of it exactly as tsnet makes it (false on the host: some part is missing or was changed). */
  intact: boolean
}

/**
 * A rule of tsnet's in TSNET-INPUT (filter INPUT), which exists while some rule is wanted: what
 * reaches this host itself from where it must not (VXLAN of tsnet's networks from unknown hosts,
 * anything from an overlay bridge). With `table: 'mangle'`, in TSNET-PREROUTING (mangle
 * PREROUTING), for checks only that hook allows (a reverse-path check).
 */
export interface GuardObject {
  kind: 'guard'
  family: Family
  rule: string
  table?: 'mangle'
}

/** A published host port held by a socket of tsnet's, so nothing else takes it. */
export interface PortHoldObject {
  kind: 'portHold'
  proto: Proto
  port: number
  bindings: Array<{ family: Family; address: string }>
}

export type HostObject =
  | LinkObject | AddrObject | SysctlObject | NeighObject | FdbObject
  | SetEntryObject | DnatObject | ChainsObject | PortHoldObject | GuardObject
export type ObjectKind = HostObject['kind']
export type ObjectOf<K extends ObjectKind> = Extract<HostObject, { kind: K }>

/** One change to the host. `update` carries what was there, so it can be undone. */
export type Op =
  | { op: 'create'; obj: HostObject }
  | { op: 'update'; obj: HostObject; from: HostObject }
  | { op: 'delete'; obj: HostObject }

const bindingsText = (b: PortHoldObject['bindings']) => b.map((x) => `${x.family}:${x.address}`).sort().join(',')

export function keyOf(o: HostObject): string {
  switch (o.kind) {
    case 'link': return `link ${o.name}`
    case 'addr': return `addr ${o.link} ${o.cidr}`
    case 'sysctl': return `sysctl ${o.path}`
    case 'neigh': return `neigh ${o.link} ${o.ip}`
    case 'fdb': return `fdb ${o.link} ${o.mac} ${o.dst ?? 'static'}`
    case 'setEntry': return `set ${o.set} ${o.entry}`
    case 'dnat': return `dnat ${o.family} ${o.rule}`
    case 'chains': return 'chains'
    case 'portHold': return `port ${o.proto}/${o.port} ${bindingsText(o.bindings)}`
    case 'guard': return `guard ${o.family} ${o.table ? `${o.table} ` : ''}${o.rule}`
  }
}

/** The kind a key names (keys start with it). */
export function kindOfKey(key: string): ObjectKind {
  const head = key.slice(0, key.indexOf(' ') < 0 ? key.length : key.indexOf(' '))
  const kinds: Record<string, ObjectKind> = {
    link: 'link', addr: 'addr', sysctl: 'sysctl', neigh: 'neigh', fdb: 'fdb', set: 'setEntry', dnat: 'dnat', chains: 'chains', port: 'portHold', guard: 'guard',
  }
  const kind = kinds[head]
  if (!kind) throw new Error(`not an object key: ${key}`)
  return kind
}

export const TSNET_TAG_PREFIX = 'tsnet:'

/**
 * Whether an object found on the host is tsnet's to change or delete. Links carry tsnet's alias;
 * set members a tsnet comment; TSNET-DNAT, the chains and the held sockets are tsnet's by where
 * they are. Addresses, neighbours and FDB entries are tsnet's when their link is (the host
 * layer only reports those). Kernel settings are shared with the host: changed, never removed.
 */
export function isOwned(o: HostObject): boolean {
  switch (o.kind) {
    // The alias is a second request after the link is made: a crash between the two leaves a
    // link under a name tsnet reserves for itself, without its tag. (A container's end of a veth
    // carries no tag either, and is never tsnet's to delete: Docker moves it.)
    case 'link': return o.alias.startsWith(TSNET_TAG_PREFIX) || (o.alias === '' && [BRIDGE_PREFIX, HOST_VETH_PREFIX, MACVLAN_PREFIX].some((p) => o.name.startsWith(p)))
    case 'setEntry': return o.comment.startsWith(TSNET_TAG_PREFIX)
    case 'sysctl': return false
    default: return true
  }
}

/** Whether the object on the host already is what is wanted. */
export function sameObject(want: HostObject, have: HostObject): boolean {
  if (want.kind === 'link' && have.kind === 'link') {
    return want.type === have.type && want.alias === have.alias && want.mtu === have.mtu && want.up === have.up
      && (want.mac === undefined || want.mac === have.mac)
      && (want.master ?? '') === (have.master ?? '')
      && (want.group === undefined || want.group === have.group)
      && sameKindData(want, have)
  }
  if (want.kind === 'setEntry' && have.kind === 'setEntry') return want.comment === have.comment
  if (want.kind === 'sysctl' && have.kind === 'sysctl') return want.value === have.value
  if (want.kind === 'neigh' && have.kind === 'neigh') return want.mac === have.mac
  if (want.kind === 'chains' && have.kind === 'chains') return want.intact === have.intact
  // Everything else is fully described by its key.
  return want.kind === have.kind
}

function sameKindData(want: LinkObject, have: LinkObject): boolean {
  if (want.vxlan) {
    const h = have.vxlan
    return h !== undefined && h.vni === want.vxlan.vni && h.port === want.vxlan.port && h.local === want.vxlan.local
      && h.learning === want.vxlan.learning && h.proxy === want.vxlan.proxy && (want.vxlan.dev === undefined || h.dev === want.vxlan.dev)
  }
  if (want.macvlan) return have.macvlan?.parent === want.macvlan.parent && have.macvlan.mode === want.macvlan.mode
  if (want.vlan) return have.vlan?.parent === want.vlan.parent && have.vlan.id === want.vlan.id
  return true
}

/**
 * Whether `have` can be brought to `want` in place. A link of another type or with other
 * creation-time data (VNI, parent) must be made again.
 */
export function updatable(want: HostObject, have: HostObject): boolean {
  if (want.kind === 'link' && have.kind === 'link') return want.type === have.type && sameKindData(want, have)
  return want.kind === 'setEntry' || want.kind === 'sysctl' || want.kind === 'neigh' || want.kind === 'chains'
}

/**
 * Creation order; deletion runs the other way. Bridges before their ports, links before what
 * sits on them, the chains before the sets and rules they use, rules before the ports they
 * lead to are held.
 */
export function rankOf(o: HostObject): number {
  switch (o.kind) {
    case 'chains': return 0
    case 'link':
      if (o.type === 'vlan') return 10
      if (o.type === 'bridge') return 11
      // Ports on their bridge, and macvlan children after their parent (a VXLAN device tsnet makes).
      return o.master !== undefined || o.type === 'macvlan' ? 13 : 12
    case 'addr': return 20
    case 'sysctl': return 21
    case 'neigh': return 30
    case 'fdb': return 31
    case 'setEntry': return 40
    // After the set members its rules match on (and which its driver creates the sets for).
    case 'guard': return 41
    case 'portHold': return 50
    case 'dnat': return 51
  }
}

/** Objects that live on a link and go with it when it is deleted. */
export function linkOf(o: HostObject): string | undefined {
  return o.kind === 'addr' || o.kind === 'neigh' || o.kind === 'fdb' ? o.link : undefined
}

/**
 * What an object needs in place before it can be made, and what it provides, as tokens: when a
 * reconcile fails to make one object, it skips those that need it (a DNAT rule whose host port
 * another process took meanwhile must not steal that process's traffic).
 */
export function needsOf(o: HostObject): string[] {
  switch (o.kind) {
    case 'link': return o.master !== undefined ? [`link ${o.master}`] : []
    case 'addr': case 'neigh': case 'fdb': return [`link ${o.link}`]
    case 'dnat': return [`hold ${portOfRule(o.rule)}`]
    default: return []
  }
}

export function providesOf(o: HostObject): string[] {
  switch (o.kind) {
    case 'link': return [`link ${o.name}`]
    case 'portHold': return [`hold ${o.proto}/${o.port}`]
    default: return []
  }
}

/** `proto/port` of a DNAT rule body (`-p tcp -m tcp --dport 8080 ...`). */
export function portOfRule(rule: string): string {
  const m = /-p (\w+) .*--dport (\d+)/.exec(rule)
  return m ? `${m[1]}/${m[2]}` : ''
}
