/**
 * What `tsnet status` shows, built purely from what the command read: the store's records,
 * Docker's names (fetched now, or as the daemon last cached them), and the daemon's own health
 * when it answers. `--json` prints this model; status-text.ts writes it for people.
 */
import { formatIp, parseCidr, parseIp } from '../core/addr.js'
import type { NamedNetwork } from '../core/docker-facts.js'
import type { EndpointRecord, LeaseRecord, NetworkRecord, PoolRecord } from '../core/records.js'
import { peerEntries, type PeerBook } from '../modes/overlay-peers.js'
import type { DaemonStatus, OverlayPeersStatus } from './daemon-status.js'
import type { Records } from './record-checks.js'

export type DaemonView =
  | { running: true; socket: string; status: DaemonStatus }
  /** `reason` says it whole: "not running (no socket file at …)", "not answering on … (…)". */
  | { running: false; socket: string; reason: string }

/** Where Docker's names came from: its API just now, the daemon's cached copy, or nowhere. */
export type NamesSource = 'docker' | 'cache' | 'none'

export interface StatusInput extends Records {
  stateDir: string
  names: { source: NamesSource; networks: NamedNetwork[]; error?: string }
  /** Container names by endpoint ID, from Docker's API. */
  containers: ReadonlyMap<string, string>
  daemon: DaemonView
  /** The Docker engine garbage collection is pinned to (store meta). */
  pinnedEngine?: string
  /** The peer book the daemon last wrote (meta/swarm-peers). */
  peerBook?: PeerBook
}

/**
 * The hosts of the swarm: the running daemon's book now, else the one it last wrote ("store":
 * as of its last run; it confirms them again with Docker when it starts).
 */
export type PeersView = OverlayPeersStatus & { from: 'daemon' | 'store' }

/** A network record with Docker's name, and (bridge mode) its bridge at the top for scripts. */
export type NetworkView = NetworkRecord & { name?: string; bridge?: string }

/** An endpoint record with its container's name, and where that came from. */
export type EndpointView = EndpointRecord & { container?: string; containerFrom?: 'docker' | 'lease' }

export interface StatusModel {
  stateDir: string
  daemon: DaemonView
  store: { kind: 'embedded'; path: string; reachable: true; networks: number; endpoints: number; pools: number; leases: number; pinnedEngine?: string }
  names: { source: NamesSource; error?: string }
  /** The records as stored, with Docker's names added. */
  networks: NetworkView[]
  endpoints: EndpointView[]
  pools: PoolRecord[]
  leases: LeaseRecord[]
  /** Present when tsnet has overlay networks or knows other hosts. */
  peers?: PeersView
}

const bare = (text: string | undefined): string | undefined => {
  if (!text) return undefined
  const ip = parseIp(text) ?? parseCidr(text)?.ip
  return ip ? formatIp(ip) : undefined
}

/** The link a network's endpoints hang on, by mode (bridge: its bridge; macvlan: its parent, whose LAN route is its own). */
export function linkOfNetwork(n: NetworkRecord): string | undefined {
  return n.mode === 'bridge' || n.mode === 'cluster' ? n.spec.bridge : n.mode === 'macvlan' ? n.spec.parent : undefined
}

/**
 * A container's name for each endpoint: Docker's, else the owner the lease of its address
 * records (Docker names the endpoint in RequestAddress), else none.
 */
export function containerNames(input: Pick<StatusInput, 'networks' | 'endpoints' | 'pools' | 'leases' | 'containers'>): Map<string, { name: string; from: 'docker' | 'lease' }> {
  const out = new Map<string, { name: string; from: 'docker' | 'lease' }>()
  const poolsOf = new Map<string, Set<string>>()
  for (const n of input.networks) {
    const subnets = new Set([...n.ipv4Subnets, ...n.ipv6Subnets].map((s) => s.pool))
    poolsOf.set(n.id, new Set(input.pools.filter((p) => subnets.has(p.pool)).map((p) => p.id)))
  }
  for (const e of input.endpoints) {
    const docker = input.containers.get(e.id)
    if (docker) {
      out.set(e.id, { name: docker.replace(/^\//, ''), from: 'docker' })
      continue
    }
    const pools = poolsOf.get(e.networkId) ?? new Set<string>()
    const addresses = new Set([bare(e.address), bare(e.addressV6)].filter((a): a is string => a !== undefined))
    const lease = input.leases.find((l) => l.owner && pools.has(l.poolId) && addresses.has(bare(l.address) ?? ''))
    if (lease?.owner) out.set(e.id, { name: lease.owner, from: 'lease' })
  }
  return out
}

export function peersView(input: Pick<StatusInput, 'daemon' | 'peerBook' | 'networks'>): PeersView | undefined {
  const live = input.daemon.running ? input.daemon.status.overlay : undefined
  const view: PeersView | undefined = live ? { ...live, from: 'daemon' }
    : input.peerBook ? { ...(input.peerBook.self !== undefined ? { self: input.peerBook.self } : {}), peers: peerEntries(input.peerBook), from: 'store' }
      : undefined
  const overlays = input.networks.some((n) => n.mode === 'overlay')
  if (view && (overlays || view.self !== undefined || view.peers.length > 0)) return view
  return overlays ? { peers: [], from: input.daemon.running && live ? 'daemon' : 'store' } : undefined
}

export function statusModel(input: StatusInput): StatusModel {
  const nameOf = new Map(input.names.networks.map((n) => [n.id, n.name]))
  const containers = containerNames(input)
  const networks = input.networks.map((n): NetworkView => {
    const name = nameOf.get(n.id)
    const bridge = n.mode === 'bridge' || n.mode === 'cluster' ? n.spec.bridge : undefined
    return { ...n, ...(name ? { name } : {}), ...(bridge ? { bridge } : {}) }
  })
  const endpoints = input.endpoints.map((e): EndpointView => {
    const c = containers.get(e.id)
    return { ...e, ...(c ? { container: c.name, containerFrom: c.from } : {}) }
  })
  return {
    stateDir: input.stateDir,
    daemon: input.daemon,
    store: {
      kind: 'embedded', path: `${input.stateDir}/store`, reachable: true,
      networks: input.networks.length, endpoints: input.endpoints.length, pools: input.pools.length, leases: input.leases.length,
      ...(input.pinnedEngine ? { pinnedEngine: input.pinnedEngine } : {}),
    },
    names: { source: input.names.source, ...(input.names.error ? { error: input.names.error } : {}) },
    networks,
    endpoints,
    pools: input.pools,
    leases: input.leases,
    ...((peers) => (peers ? { peers } : {}))(peersView(input)),
  }
}
