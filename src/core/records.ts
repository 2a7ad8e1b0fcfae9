/** What tsnet persists (store schema 2). These are the source of truth; kernel objects are derived from them. */

export interface SubnetRecord {
  /** Canonical CIDR of the pool Docker gave the network. */
  pool: string
  /** Gateway as CIDR (address/pool length), absent when IPAM allocated none. */
  gateway?: string
  auxAddresses?: Record<string, string>
}

export type ModeName = 'bridge' | 'overlay' | 'macvlan' | 'cluster'

/** What a bridge-mode network adds: the Linux bridge its endpoints sit on. */
export interface BridgeSpec {
  bridge: string
  /** The bridge name came from -o com.docker.network.bridge.name. */
  bridgeNamedByUser: boolean
}

/** The part of a network record every mode shares. */
export interface CommonNetwork {
  id: string
  mtu: number
  internal: boolean
  ipv6: boolean
  ipv4Subnets: SubnetRecord[]
  ipv6Subnets: SubnetRecord[]
  /** Parsed network options (the edge reads these; modes without an edge refuse them). */
  enableIpMasquerade: boolean
  enableIcc: boolean
  /** The -o options exactly as given, for status output. */
  genericOptions: Record<string, string>
  /** The tsnet.allow policy in canonical form ('' = none); `tsnet policy set` changes it later. */
  policy?: string
  createdAt: string
}

export interface BridgeNetwork extends CommonNetwork {
  mode: 'bridge'
  spec: BridgeSpec
}

export type MacvlanMode = 'bridge' | 'private' | 'vepa' | 'passthru'

/** What a macvlan network adds: the host link its endpoints' links hang on, and how. */
export interface MacvlanSpec {
  /** The parent link (-o parent), e.g. eth0 or eth0.10. */
  parent: string
  macvlanMode: MacvlanMode
  /**
   * The parent is an 802.1Q sub-interface tsnet made (for this network or another): the network
   * wants it, so it stays while any network does and goes with the last (never a user's link).
   */
  parentCreated: boolean
  /** The sub-interface as tsnet makes it, when parentCreated: its link, VLAN ID and MTU. */
  vlan?: { link: string; id: number; mtu: number }
  /** passthru only: the parent's MAC, which the one container's interface takes (the kernel gives it the parent's). */
  parentMac?: string
}

export interface MacvlanNetwork extends CommonNetwork {
  mode: 'macvlan'
  spec: MacvlanSpec
}

/**
 * What an overlay-mode network adds: the VXLAN device that joins it to the other hosts, whose
 * macvlan children its endpoints are. The VNI and port come from AllocateNetwork on the Swarm
 * leader; this node's source address is not stored (it is Docker's current data-path address).
 */
export interface OverlaySpec {
  /** Networks made before 2026-12-05 only: their bridge (no address on it), the VXLAN device a port of it, veth endpoints. */
  bridge?: string
  vxlan: string
  vni: number
  port: number
  /** The underlay MTU the network's MTU was derived from (option or the interface's). */
  underlayMtu: number
}

export interface OverlayNetwork extends CommonNetwork {
  mode: 'overlay'
  spec: OverlaySpec
}

/**
 * What a cluster network adds (issue 14: hosts sharing an etcd, no Swarm): a bridge with the
 * cluster's gateway, as in bridge mode, and a VXLAN port whose FDB and neighbour entries come from
 * the cluster store. `cluster` is its tsnet.overlay name; `local` this host's VTEP address when
 * the network was created.
 */
export interface ClusterSpec extends BridgeSpec {
  cluster: string
  vxlan: string
  vni: number
  port: number
  local: string
  underlayMtu: number
}

export interface ClusterNetwork extends CommonNetwork {
  mode: 'cluster'
  spec: ClusterSpec
}

/** Every mode's record; `mode` says which spec it carries. */
export type NetworkRecord = BridgeNetwork | MacvlanNetwork | OverlayNetwork | ClusterNetwork

/** A published port as programmed: the host port actually chosen, and where it leads. */
export interface PublishedPort {
  family: 4 | 6
  proto: 'tcp' | 'udp' | 'sctp'
  /** '' or 0.0.0.0 / :: for every host address, else the one address given with -p IP:... */
  hostIp: string
  hostPort: number
  containerIp: string
  containerPort: number
}

export interface PortMapping {
  proto: 'tcp' | 'udp' | 'sctp'
  containerPort: number
  hostIp: string
  hostPort: number
  hostPortEnd: number
}

export interface EndpointRecord {
  id: string
  networkId: string
  /** Host end of the veth pair, attached to the bridge (modes whose endpoint is one link have none). */
  hostIf?: string
  /** The link Docker moves into the sandbox and renames. */
  containerIf: string
  mac: string
  /** True when the MAC came from Docker (--mac-address); false when tsnet chose it. */
  macFromDocker: boolean
  mtu: number
  address?: string
  addressV6?: string
  portMappings: PortMapping[]
  exposedPorts: Array<{ proto: PortMapping['proto']; port: number }>
  /** Ports programmed by ProgramExternalConnectivity and not yet revoked. */
  published?: PublishedPort[]
  sandboxKey?: string
  joined: boolean
  createdAt: string
}

export interface PoolRecord {
  id: string
  addressSpace: string
  pool: string
  subPool?: string
  v6: boolean
  options: Record<string, string>
  createdAt: string
}

export type LeaseKind = 'gateway' | 'aux' | 'endpoint'

export interface LeaseRecord {
  poolId: string
  address: string
  kind: LeaseKind
  /** Container name when Docker sent one. */
  owner?: string
  createdAt: string
}
