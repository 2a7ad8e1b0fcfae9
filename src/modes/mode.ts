/**
 * The seam between network modes. A mode is pure: it reads its own `-o` keys, renders the
 * kernel objects a network and an endpoint need, answers Join, and tells the edge firewall what
 * it sees of a network. Everything else (the verb pipeline, locks, diff, apply, rollback, the
 * store, IPAM, published ports) is shared and never copied into a mode.
 */
import type { ClusterNetworkSpec } from '../core/cluster-spec.js'
import type { EdgeNetwork } from '../core/edge-plan.js'
import type { HostFacts } from '../core/host-facts.js'
import type { HostObject, LinkObject } from '../core/objects.js'
import type { CommonNetwork, EndpointRecord, ModeName, NetworkRecord } from '../core/records.js'

export interface PlanContext {
  /** MTU for a network without -o com.docker.network.driver.mtu. */
  defaultMtu: number
  facts: HostFacts
  /** The host links the mode asked about (NetworkMode.hostLinks) as they are now; a name not here does not exist. */
  links?: ReadonlyMap<string, LinkObject>
  /** The driver's scope: 'global' when it runs for a swarm (TSNET_SCOPE=global). */
  scope?: 'local' | 'global'
  /** Overlay networks: this node's data-path address, and the MTU of the interface that has it (when known). */
  underlay?: { address?: string; mtu?: number }
  /** Cluster networks: what the cluster agreed for the network, and this host's place in it. */
  cluster?: ClusterPlan
}

/** A cluster network as the cluster store agreed it, with this host's VTEP and underlay MTU. */
export interface ClusterPlan extends Pick<ClusterNetworkSpec, 'name' | 'subnet' | 'gateway' | 'ipv6Subnet' | 'ipv6Gateway' | 'vni' | 'mtu'> {
  port: number
  vtep: string
  /** The MTU of this host's underlay interface. */
  underlayMtu: number
  /** The smallest underlay MTU any registered host published (this one's included). */
  smallestUnderlayMtu: number
}

/** An endpoint of a cluster network on another host, as the cluster store says. */
export interface RemoteEndpoint {
  ip: string
  /** Its IPv6 address, on a network with IPv6. */
  ipv6?: string
  mac: string
  vtep: string
}

/** What cluster networks are rendered with: the endpoints other hosts registered, per cluster network name. */
export type ClusterView = (name: string) => readonly RemoteEndpoint[]

/** What overlay networks are rendered with: where this node sends from, and the other hosts of the swarm. */
export interface OverlayView {
  local?: string
  peers: readonly string[]
}
export const NO_OVERLAY: OverlayView = { peers: [] }

export interface RenderContext {
  facts: HostFacts
  /** Subnets of a Docker network by name, for policies (empty when unknown). */
  resolve: (name: string) => string[]
  overlay?: OverlayView
  cluster?: ClusterView
}

/** What Join answers (the wire shape, which core defines for itself). */
export interface JoinAnswer {
  InterfaceName: { SrcName: string; DstPrefix: string }
  Gateway?: string
  GatewayIPv6?: string
  DisableGatewayService?: boolean
}

export interface NetworkMode {
  readonly name: ModeName
  /** `-o` keys this mode reads, besides the common ones (listed in refusals of unknown keys). */
  readonly optionKeys: readonly string[]
  /** What the network edge can do for this mode; a mode without it refuses the options that need it. */
  readonly supports: { policy: boolean; publish: boolean }
  /** `-o` keys of other modes this one refuses, with why (instead of calling them unknown). */
  readonly refusedOptions?: Readonly<Record<string, string>>
  /** Host links planSpec needs to see (a parent interface); checks their names, reads nothing. */
  hostLinks?(generic: Readonly<Record<string, string>>): string[]
  /** Why `planned` cannot exist beside the network `other`, if it cannot (checked before subnet overlaps). */
  conflictWith?(planned: NetworkRecord, other: NetworkRecord, label: (n: NetworkRecord) => string): string | undefined
  /** The MAC every endpoint of `n` must have, when the mode fixes it (passthru macvlan takes its parent's). */
  fixedMac?(n: NetworkRecord): string | undefined
  /** Pure: the mode's part of a new network record. Every refusal happens here. */
  planSpec(generic: Readonly<Record<string, string>>, common: CommonNetwork, ctx: PlanContext): NetworkRecord
  /** Kernel names of an endpoint's links on network `n`. */
  linkNames(endpointId: string, n: NetworkRecord): { hostIf?: string; containerIf: string }
  /** Kernel names a network claims for itself: two networks may not share one. */
  claimedNames(n: NetworkRecord): string[]
  /** The objects of a network, given its endpoints (a policy and published ports depend on them). */
  renderNetwork(n: NetworkRecord, endpoints: readonly EndpointRecord[], ctx: RenderContext): HostObject[]
  /**
   * Whether renderNetwork may answer differently once endpoint `before` has become `after`
   * (undefined: absent), so the change must render the network again. Exact, not merely safe:
   * a false answer keeps the network's objects as they were rendered last.
   */
  networkDependsOnEndpoints(n: NetworkRecord, before: EndpointRecord | undefined, after: EndpointRecord | undefined): boolean
  renderEndpoint(e: EndpointRecord, n: NetworkRecord, ctx: RenderContext): HostObject[]
  join(n: NetworkRecord, e: EndpointRecord): JoinAnswer
  /** The host address ports published without one bind to ('' for every address). */
  defaultHostIp?(n: NetworkRecord): string
  /** What the edge firewall sees of the network; undefined when host netfilter never sees its traffic. */
  edge(n: NetworkRecord): EdgeNetwork | undefined
}
