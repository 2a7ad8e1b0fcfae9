/**
 * Cluster networks on this host (issue 14), put together: the cluster store, this host's identity
 * and liveness, the agreed specs and address claims (IPAM), endpoint locations, and the
 * re-rendering of each cluster network when another host's endpoints change.
 *
 * The last known remote endpoints are also kept in the host's own store, so a restart (of tsnet,
 * or with etcd unreachable) renders the same FDB and neighbour entries the kernel has instead of
 * removing them until etcd answers.
 */
import type { Logger } from 'pino'
import { randomBytes } from 'node:crypto'
import type { Config } from '../config.js'
import { parseCidr, parseIp } from '../core/addr.js'
import { checkNetworkName } from '../core/cluster-spec.js'
import type { ClusterNetwork } from '../core/records.js'
import { TsnetError, errorMessage, invalid, quote } from '../errors.js'
import type { Host } from '../host/host.js'
import { CLUSTER_OPTION } from '../modes/cluster.js'
import type { ClusterPlan } from '../modes/mode.js'
import { DEFAULT_VXLAN_PORT, VXLAN_OVERHEAD, overlayMtu } from '../modes/overlay-options.js'
import { COMMON_OPTION } from '../core/docker-keys.js'
import { parseMtu } from '../core/options.js'
import type { Store } from '../store/store.js'
import { KeyedLock } from '../util/keyed-lock.js'
import { ClusterIpam } from './cluster-ipam.js'
import { ClusterLiveness } from './cluster-liveness.js'
import { ClusterLocations, type LocalEndpoint } from './cluster-locations.js'
import { agreeMtu } from './cluster-mtu.js'
import { ClusterNetworks } from './cluster-networks.js'
import { checkMember, collectStale, reassert } from './cluster-upkeep.js'
import { type ClusterStore, openClusterStore } from './cluster-store.js'
import type { NetworkDriver } from './network-driver.js'
import { CLUSTER_REMOTES_META, netOwner, short } from './network-state.js'

const HOST_META = 'cluster-host'
/** How often the elected tsnet looks for dead hosts. */
const RECLAIM_EVERY_MS = 5000
/** A failed re-render is tried again after this long (the periodic reconcile also repairs). */
const RETRY_MS = 2000
const FALLBACK_UNDERLAY_MTU = 1500
const SAVE_EVERY_MS = 2000
const UPKEEP_EVERY_MS = 60_000

export class ClusterService {
  readonly ipam: ClusterIpam
  private locations: ClusterLocations | undefined
  private readonly liveness: ClusterLiveness
  private readonly networks: ClusterNetworks
  private readonly renders = new KeyedLock()
  private pending = new Set<string>()
  private pendingAll = false
  private renderQueued = false
  private timer: NodeJS.Timeout | undefined
  private underlayMtu: number | undefined
  private lastSave = 0
  private saveTimer: NodeJS.Timeout | undefined
  private upkeepTimer: NodeJS.Timeout | undefined

  private constructor(
    private readonly cluster: ClusterStore,
    private readonly local: Store,
    private readonly driver: NetworkDriver,
    private readonly host: Host,
    readonly hostId: string,
    private readonly graceMs: number,
    private readonly log: Logger,
  ) {
    this.networks = new ClusterNetworks(cluster.store, { hostId })
    this.liveness = new ClusterLiveness(cluster.store, { hostId, log, info: {}, onRegistered: () => this.registered() })
    this.ipam = new ClusterIpam(cluster.store, this.networks, async () => (await host.routedPrefixes()).flatMap((r) => parseCidr(r)?.prefix ?? []))
  }

  /** Opens the cluster store (without waiting for etcd) when --etcd-endpoints is set; undefined otherwise. */
  static async open(config: Config, local: Store, driver: NetworkDriver, host: Host, log: Logger): Promise<ClusterService | undefined> {
    const cluster = openClusterStore(config, log)
    if (!cluster) return undefined
    let hostId = (await local.get<{ id: string }>(`meta/${HOST_META}`))?.value.id
    if (!hostId) {
      hostId = `h-${randomBytes(8).toString('hex')}`
      await local.put('meta', HOST_META, { id: hostId })
    }
    const service = new ClusterService(cluster, local, driver, host, hostId, (config.clusterGraceSec ?? 300) * 1000, log)
    const saved = driver.state.cluster // the copy NetworkState loaded
    driver.state.cluster = (name) => (service.locations?.listed ? service.locations.view(name) : saved(name))
    driver.clusterPlan = (generic) => service.plan(generic)
    return service
  }

  /** Starts liveness, the reclaim campaign and the locations once this host's VTEP address is known. */
  async start(): Promise<void> {
    const vtep = await this.cluster.vtep
    if (vtep === undefined) {
      this.log.error('cluster networks are off: this host\'s address on them is unknown (give --advertise-address)')
      return
    }
    this.underlayMtu = (await this.host.underlayOf?.(vtep).catch(() => undefined))?.mtu ?? FALLBACK_UNDERLAY_MTU
    this.liveness.setInfo({ vtep, underlayMtu: this.underlayMtu })
    void this.liveness.start()
    this.liveness.runReclaim(RECLAIM_EVERY_MS, this.graceMs)
    this.locations = new ClusterLocations(this.cluster.store, this.liveness, vtep, () => this.localEndpoints(), (names) => this.changed(names), this.log)
    this.locations.start()
    this.upkeep()
  }

  /** After each registration: the locations under the new lease, and this host's networks and addresses put back where missing. */
  private registered(): void {
    this.locations?.changed()
    const names = this.clusterNames()
    reassert(this.cluster.store, this.networks, names, this.localEndpoints(), this.log)
      .catch((err: unknown) => this.log.warn({ error: errorMessage(err) }, 'this host\'s networks and addresses not checked in the cluster store; at the next registration'))
  }

  /** Every few minutes: claims of this host no container holds (their ReleaseAddress was lost) are released. */
  private upkeep(): void {
    const round = () => {
      collectStale(this.cluster.store, this.networks, this.clusterNames(), this.localEndpoints(), Date.now(), this.log)
        .catch((err: unknown) => this.log.warn({ error: errorMessage(err) }, 'stale addresses not collected; next round'))
        .finally(() => { this.upkeepTimer = setTimeout(round, UPKEEP_EVERY_MS).unref() })
    }
    this.upkeepTimer = setTimeout(round, UPKEEP_EVERY_MS).unref()
  }

  private clusterNames(): string[] {
    return [...new Set([...this.driver.state.networks.values()].flatMap((n) => (n.mode === 'cluster' ? [n.spec.cluster] : [])))]
  }

  /** The host's endpoints changed (CreateEndpoint, DeleteEndpoint): registrations follow at once. */
  endpointsChanged(): void {
    this.locations?.changed()
  }

  /** For CreateNetwork: what the cluster agreed for `-o tsnet.overlay=<name>`, or undefined without it. */
  async plan(generic: Readonly<Record<string, string>>): Promise<ClusterPlan | undefined> {
    const text = generic[CLUSTER_OPTION.name]
    if (text === undefined) return undefined
    const name = checkNetworkName(text)
    const vtep = await this.cluster.vtep
    if (vtep === undefined) throw invalid(`cluster network ${quote(name)}: this host's address on cluster networks is unknown; give tsnet --advertise-address`)
    let spec
    try {
      spec = await this.networks.spec(name)
      await checkMember(this.cluster.store, name, this.hostId)
    } catch (err) {
      if (err instanceof TsnetError && err.kind === 'notfound') {
        throw invalid(`cluster network ${quote(name)} is not in the cluster store: create it with --ipam-driver tsnet --ipam-opt ${CLUSTER_OPTION.name}=${name}`)
      }
      if (err instanceof TsnetError && err.kind === 'unavailable') throw new TsnetError('unavailable', `cluster network ${quote(name)} needs etcd, which is unreachable (${err.message})`)
      throw err
    }
    const own = this.underlayMtu ?? (await this.host.underlayOf?.(vtep).catch(() => undefined))?.mtu ?? FALLBACK_UNDERLAY_MTU
    const others = (await this.cluster.store.list<{ underlayMtu?: unknown }>('cluster-hosts/').catch(() => []))
      .flatMap((e) => (typeof e.value.underlayMtu === 'number' && e.id !== this.hostId ? [e.value.underlayMtu] : []))
    const smallest = Math.min(own, ...others)
    const mtu = await this.agreedMtu(name, generic[COMMON_OPTION.mtu], vtep, smallest, own)
    const v6 = spec.ipv6Subnet && spec.ipv6Gateway ? { ipv6Subnet: spec.ipv6Subnet, ipv6Gateway: spec.ipv6Gateway } : {}
    return { name, subnet: spec.subnet, gateway: spec.gateway, ...v6, vni: spec.vni, mtu, port: DEFAULT_VXLAN_PORT, vtep, underlayMtu: own, smallestUnderlayMtu: smallest }
  }

  /**
   * The network's MTU as the cluster stored it (the first creator's choice), warning when this
   * host's own underlay cannot carry it: the remedy is on the operator's side (a larger underlay
   * here, or the same smaller MTU option on every host before the network exists).
   */
  private async agreedMtu(name: string, option: string | undefined, vtep: string, smallest: number, own: number): Promise<number> {
    const family = parseIp(vtep)?.family ?? 4
    const proposed = option !== undefined ? parseMtu(option, COMMON_OPTION.mtu) : overlayMtu(smallest, family, false)
    const mtu = await agreeMtu(this.cluster.store, this.networks, name, proposed, option !== undefined).catch((err: unknown) => {
      if (err instanceof TsnetError && err.kind === 'unavailable') throw new TsnetError('unavailable', `cluster network ${quote(name)} needs etcd, which is unreachable (${err.message})`)
      throw err
    })
    const carried = own - VXLAN_OVERHEAD[family]
    if (mtu > carried) {
      this.log.warn({ network: name, mtu, underlayMtu: own, carried },
        'the cluster network\'s agreed MTU is larger than this host\'s underlay carries: larger packets between containers here and on other hosts are dropped; give this host a larger underlay MTU, or recreate the network everywhere with -o com.docker.network.driver.mtu')
    }
    return mtu
  }

  /** A line for `tsnet status`. */
  status() {
    // Until the first listing, the entries come from the copy saved on disk: count those.
    const listed = this.locations?.listed === true
    const remoteEndpoints = listed ? this.locations?.size ?? 0 : this.clusterNames().reduce((sum, name) => sum + this.driver.state.cluster(name).length, 0)
    return { hostId: this.hostId, registered: this.liveness.currentLease() !== undefined, leader: this.liveness.isLeader, remoteEndpoints, remotesFrom: listed ? 'etcd' as const : 'saved copy' as const }
  }

  async stop(): Promise<void> {
    clearTimeout(this.timer)
    clearTimeout(this.saveTimer)
    clearTimeout(this.upkeepTimer)
    this.locations?.stop()
    await this.liveness.stop()
    await this.cluster.close()
  }

  private localEndpoints(): LocalEndpoint[] {
    const out: LocalEndpoint[] = []
    for (const n of this.driver.state.networks.values()) {
      if (n.mode !== 'cluster') continue
      for (const e of this.driver.state.endpointsOf(n.id)) {
        const ip = e.address ? parseIp(e.address.split('/')[0] ?? '') : undefined
        const ipv6 = e.addressV6?.split('/')[0]
        if (ip) out.push({ network: n.spec.cluster, endpointId: e.id, ip: e.address?.split('/')[0] ?? '', ...(ipv6 ? { ipv6 } : {}), mac: e.mac })
      }
    }
    return out
  }

  /** Renders the local networks of the changed cluster networks again, one pass at a time. */
  private changed(names: Set<string>): void {
    // An empty set (the first listing) means every cluster network.
    if (names.size === 0) this.pendingAll = true
    for (const n of names) this.pending.add(n)
    // One pass queued at most: the changes that arrive while a pass runs wait for the next one
    // (before, each watch event queued a pass of its own, and 5,000 events kept tsnet busy for minutes).
    if (this.renderQueued) return
    this.renderQueued = true
    void this.renders.run('render', async () => {
      this.renderQueued = false
      const todo = this.pending
      const all = this.pendingAll
      this.pending = new Set()
      this.pendingAll = false
      const failed = new Set<string>()
      for (const n of [...this.driver.state.networks.values()].filter((x): x is ClusterNetwork => x.mode === 'cluster')) {
        if (!all && !todo.has(n.spec.cluster)) continue
        await this.driver.lock.run(n.id, async () => {
          const current = this.driver.state.networks.get(n.id)
          if (!current) return
          await this.driver.engine.change(new Map([[netOwner(n.id), this.driver.state.renderNetwork(current)]]),
            { doing: `cluster network ${n.spec.cluster}: other hosts' endpoints changed on network ${short(n.id)}`, log: this.log })
        }).catch((err: unknown) => {
          failed.add(n.spec.cluster)
          this.log.warn({ network: n.id, error: errorMessage(err) }, 'remote endpoints not programmed; retrying')
        })
      }
      if (failed.size > 0) this.timer = setTimeout(() => this.changed(failed), RETRY_MS).unref()
      await this.saveRemotes()
    })
  }

  /**
   * The host's copy of the remote endpoints, for the next start: at most every SAVE_EVERY_MS under
   * churn, and not synced (a reboot lists again anyway).
   */
  private async saveRemotes(): Promise<void> {
    if (!this.locations?.listed || this.saveTimer) return
    const wait = this.lastSave + SAVE_EVERY_MS - Date.now()
    if (wait > 0) {
      this.saveTimer = setTimeout(() => {
        this.saveTimer = undefined
        void this.renders.run('render', () => this.saveRemotes())
      }, wait).unref()
      return
    }
    this.lastSave = Date.now()
    await this.local.put('meta', CLUSTER_REMOTES_META, this.locations.all(), { durable: false }).catch((err: unknown) => {
      this.log.warn({ error: errorMessage(err) }, 'remote endpoints not copied to the state directory')
    })
  }
}
