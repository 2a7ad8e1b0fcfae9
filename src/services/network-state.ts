/**
 * The networks and endpoints tsnet keeps, and what each wants on the host. Records are the
 * truth (the store holds them; these maps are their copy); owners in the engine's index are
 * `net:<id>` (a network with its policy entries) and `ep:<id>` (an endpoint with its ports).
 */
import { foreignEntries, setEntryObject } from '../core/edge-plan.js'
import type { HostFacts } from '../core/host-facts.js'
import type { HostObject } from '../core/objects.js'
import type { EndpointRecord, NetworkRecord } from '../core/records.js'
import { upgradeNetwork } from '../core/record-upgrade.js'
import { notFound } from '../errors.js'
import { modeOf } from '../modes/index.js'
import { type ClusterView, NO_OVERLAY, type OverlayView, type RemoteEndpoint, type RenderContext } from '../modes/mode.js'
import type { Store } from '../store/store.js'
import { EndpointMap } from './endpoint-map.js'

/** Docker's network names and subnets as last seen (services/docker-names.ts); none in unit tests. */
export interface NetworkDirectory {
  resolve(name: string): string[]
  foreignSubnets(): string[]
  lookup(ref: string): { id: string; name: string } | undefined
  nameOf(id: string): string | undefined
}

export const NO_DIRECTORY: NetworkDirectory = { resolve: () => [], foreignSubnets: () => [], lookup: () => undefined, nameOf: () => undefined }

export const netOwner = (id: string) => `net:${id}`
/** Where the cluster service keeps its copy of the other hosts' endpoints (meta/<this>). */
export const CLUSTER_REMOTES_META = 'cluster-remotes'
export const epOwner = (id: string) => `ep:${id}`
export const short = (id: string) => id.slice(0, 12)

export type Changes = Map<string, HostObject[] | undefined>

export class NetworkState {
  readonly networks = new Map<string, NetworkRecord>()
  readonly endpoints = new EndpointMap()
  /** Endpoints between the start and the end of their CreateEndpoint: their addresses are taken. */
  private readonly creatingEndpoints = new Map<string, EndpointRecord>()
  /** Where this node sends overlay traffic from and to (the swarm service sets it). */
  overlay: () => OverlayView = () => NO_OVERLAY
  /**
   * Cluster networks: the other hosts' endpoints. Until the cluster service lists etcd (and in
   * `tsnet doctor`), the copy the daemon last kept in the state directory.
   */
  cluster: ClusterView = () => []

  constructor(
    readonly store: Store,
    readonly directory: NetworkDirectory,
    private readonly facts: () => HostFacts,
  ) {}

  async load(): Promise<void> {
    for (const { value } of await this.store.list<NetworkRecord>('networks/')) this.networks.set(value.id, upgradeNetwork(value))
    for (const { value } of await this.store.list<EndpointRecord>('endpoints/')) this.endpoints.set(value.id, value)
    const saved = (await this.store.get<Record<string, RemoteEndpoint[]>>(`meta/${CLUSTER_REMOTES_META}`))?.value ?? {}
    this.cluster = (name) => (Object.hasOwn(saved, name) && Array.isArray(saved[name]) ? saved[name] : [])
  }

  endpointsOf(networkId: string): EndpointRecord[] {
    return this.endpoints.ofNetwork(networkId)
  }

  knownNetwork(id: string): NetworkRecord {
    const n = this.networks.get(id)
    if (!n) throw notFound(`network ${short(id)} is unknown to tsnet (was it created with another driver, or was tsnet's state directory lost?)`)
    return n
  }

  knownEndpoint(networkId: string, endpointId: string): EndpointRecord {
    const e = this.endpoints.get(endpointId)
    if (!e || e.networkId !== networkId) throw notFound(`endpoint ${short(endpointId)} of network ${short(networkId)} is unknown to tsnet`)
    return e
  }

  /** A network's name for messages: Docker's, else the short ID. */
  label(n: NetworkRecord): string {
    return this.directory.nameOf(n.id) ?? short(n.id)
  }

  renderContext(): RenderContext {
    return { facts: this.facts(), resolve: (name) => this.directory.resolve(name), overlay: this.overlay(), cluster: this.cluster }
  }

  /**
   * What a network wants, with `endpoints` as its endpoints. Every network with an edge also keeps Docker's
   * own bridge subnets in the set its containers may not reach (the same members for all, so
   * they stay while any network does).
   */
  renderNetwork(n: NetworkRecord, endpoints: readonly EndpointRecord[] = this.endpointsOf(n.id)): HostObject[] {
    const ctx = this.renderContext()
    const mode = modeOf(n)
    // Members of tsnet's sets, which only networks with an edge bring along.
    const foreign = mode.edge(n) ? foreignEntries(this.directory.foreignSubnets()).map(setEntryObject) : []
    return [...mode.renderNetwork(n, endpoints, ctx), ...foreign]
  }

  renderEndpoint(e: EndpointRecord, n: NetworkRecord = this.knownNetwork(e.networkId)): HostObject[] {
    return modeOf(n).renderEndpoint(e, n, this.renderContext())
  }

  /**
   * The changes for an endpoint that was `before` and becomes `next` (undefined: absent): its own
   * objects, and its network's when this change can alter them (`before` is what the host was
   * last brought to, which the caller knows: the map may already hold `next`, or nothing).
   */
  endpointChanges(n: NetworkRecord, id: string, before: EndpointRecord | undefined, next: EndpointRecord | undefined): Changes {
    const changes: Changes = new Map([[epOwner(id), next ? this.renderEndpoint(next, n) : undefined]])
    if (modeOf(n).networkDependsOnEndpoints(n, before, next)) {
      const others = this.endpointsOf(n.id).filter((x) => x.id !== id)
      changes.set(netOwner(n.id), this.renderNetwork(n, next ? [...others, next] : others))
    }
    return changes
  }

  /** Everything every record wants (the boot reconcile's index). */
  allChanges(): Changes {
    const changes: Changes = new Map()
    for (const n of this.networks.values()) changes.set(netOwner(n.id), this.renderNetwork(n))
    for (const e of this.endpoints.values()) {
      const n = this.networks.get(e.networkId)
      if (n) changes.set(epOwner(e.id), this.renderEndpoint(e, n))
    }
    return changes
  }

  /** Runs a CreateEndpoint's host change with the endpoint counted as being created. */
  async whileCreating<T>(e: EndpointRecord, change: () => Promise<T>): Promise<T> {
    this.creatingEndpoints.set(e.id, e)
    try {
      return await change()
    } finally {
      this.creatingEndpoints.delete(e.id)
    }
  }

  /** For status output and garbage collection; `creating`: endpoints whose CreateEndpoint is still running. */
  snapshot() {
    return { networks: [...this.networks.values()], endpoints: [...this.endpoints.values()], creating: [...this.creatingEndpoints.values()] }
  }
}
