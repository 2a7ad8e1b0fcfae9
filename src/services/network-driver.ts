/**
 * Docker's NetworkDriver verbs, one pipeline for every mode: lock the network, plan purely (all
 * validation), let the engine bring the host to the plan (undoing on failure), persist, answer.
 * Creations change the host first and then the store (a crash in between leaves objects no
 * record explains, which the reconcile removes); removals change the store first (a crash in
 * between leaves objects no record wants, which the reconcile removes too), so no failure can
 * bring back what was removed.
 */
import type { Logger } from 'pino'
import { checkOptionKeys, checkSandboxKey, findSubnetOverlap, planEndpoint, planNetwork, sameEndpoint, sameNetwork } from '../core/network-plan.js'
import { checkPolicySize } from '../core/edge-plan.js'
import { flowsToForget } from '../core/flows.js'
import { genericOptions } from '../core/options.js'
import { DAEMON_KEYS, OPT } from '../core/docker-keys.js'
import { parseExposedPorts, parsePortMap } from '../core/ports.js'
import type { EndpointRecord, NetworkRecord, PublishedPort } from '../core/records.js'
import { conflict, withContext } from '../errors.js'
import type { Engine } from '../engine/engine.js'
import type { Host } from '../host/host.js'
import { modeFor, modeOf } from '../modes/index.js'
import type { PlanContext } from '../modes/mode.js'
import type { AllocateNetworkRequest, CreateEndpointRequest, CreateNetworkRequest, EndpointRef, JoinRequest, NetworkRef } from '../protocol/types.js'
import { type Changes, type NetworkState, epOwner, netOwner, short } from './network-state.js'
import { currentLinks } from './host-links.js'
import { KeyedLock } from '../util/keyed-lock.js'
import type { Clock } from '../engine/clock.js'
import type { WriteOptions } from '../store/store.js'
import { DIES_WITH_THE_MACHINE } from './write-durability.js'

export interface NetworkConfig {
  /** MTU for networks without -o com.docker.network.driver.mtu; undefined: the default route's, else 1500. */
  defaultMtu?: number
  /** 'global': a swarm's multi-host driver, whose networks are overlays by default. */
  scope?: 'local' | 'global'
  /** What overlay planning needs from the swarm service (this node's data-path address and its MTU). */
  underlay?: () => Promise<PlanContext['underlay']>
}

const FALLBACK_MTU = 1500
/** Removals write the store first: a store that cannot remove the record changes nothing. */
const UNCHANGED = 'nothing was changed, because its record could not be removed'

export class NetworkDriver {
  /** Per network: Docker sends calls concurrently, and a network's records change one call at a time. */
  readonly lock = new KeyedLock()
  /** Networks between their checks and their registration: a racing create sees them. */
  private readonly creating = new Map<string, NetworkRecord>()
  /** Cluster networks: what the cluster store agreed (the cluster service sets it). */
  clusterPlan: ((generic: Readonly<Record<string, string>>) => Promise<PlanContext['cluster']>) | undefined

  constructor(
    readonly state: NetworkState,
    readonly engine: Engine,
    readonly host: Host,
    private readonly config: NetworkConfig,
    private readonly clock: Clock,
  ) {}

  capabilities() {
    return { Scope: this.config.scope ?? 'local', ConnectivityScope: this.config.scope ?? 'local' }
  }

  private async defaultMtu(): Promise<number> {
    if (this.config.defaultMtu !== undefined) return this.config.defaultMtu
    try {
      return (await this.host.defaultRouteMtu()) ?? FALLBACK_MTU
    } catch {
      return FALLBACK_MTU
    }
  }

  createNetwork(req: CreateNetworkRequest, log: Logger) {
    return this.lock.run(req.NetworkID, async () => {
      const generic = genericOptions(req.Options ?? {})
      const facts = await this.host.facts()
      const mode = modeFor(generic, this.config.scope === 'global' ? 'overlay' : 'bridge', facts)
      checkOptionKeys(generic, mode, DAEMON_KEYS)
      const links = await currentLinks(this.host, mode.hostLinks?.(generic) ?? [])
      const ctx: PlanContext = { defaultMtu: await this.defaultMtu(), facts, links, scope: this.config.scope ?? 'local' }
      if (mode.name === 'overlay') ctx.underlay = await this.config.underlay?.()
      if (mode.name === 'cluster') ctx.cluster = await this.clusterPlan?.(generic)
      const planned = planNetwork(req, mode, generic, ctx, this.clock.iso())
      const existing = this.state.networks.get(req.NetworkID)
      if (existing && !sameNetwork(existing, planned)) {
        throw conflict(`network ${short(req.NetworkID)} already exists in tsnet with different settings`)
      }
      const record = existing ?? planned
      const edge = mode.edge(record)
      if (edge) checkPolicySize(edge, [], (name) => this.state.directory.resolve(name))
      const others = [...this.state.networks.values(), ...this.creating.values()].filter((n) => n.id !== record.id)
      const names = new Set(mode.claimedNames(record))
      const clash = others.find((n) => modeOf(n).claimedNames(n).some((x) => names.has(x)))
      if (clash) throw conflict(`bridge name ${[...names].join(', ')} is already used by network ${short(clash.id)}`)
      // A mode's own rule first (a macvlan parent shared with an overlapping subnet says so).
      const why = existing ? undefined : others.map((o) => mode.conflictWith?.(planned, o, (n) => this.state.label(n))).find(Boolean)
      if (why) throw conflict(why)
      // Checked and claimed with no await in between: two creates of overlapping networks cannot both pass.
      const overlap = existing ? undefined : findSubnetOverlap(planned, others)
      if (overlap) {
        throw conflict(`subnet ${overlap.mine} of network ${this.state.label(planned)} overlaps subnet ${overlap.theirs} of tsnet network ${this.state.label(overlap.other)}: ` +
          "tsnet networks may not share addresses, because the firewall tells networks apart by their subnets (give a free --subnet, or use --ipam-driver tsnet, which never hands out overlapping pools)")
      }
      this.creating.set(record.id, record)
      try {
        // A retry of a network that exists keeps what its containers want (policy entries, route_localnet).
        const objects = this.state.renderNetwork(record, existing ? this.state.endpointsOf(record.id) : [])
        await this.engine.change(new Map([[netOwner(record.id), objects]]), {
          doing: `creating network ${short(record.id)}`,
          verify: [netOwner(record.id)],
          persist: existing ? undefined : () => this.state.store.put('networks', record.id, record),
          log,
        })
      } finally {
        this.creating.delete(record.id)
      }
      this.state.networks.set(record.id, record)
      return {}
    })
  }

  deleteNetwork(req: NetworkRef, log: Logger) {
    return this.lock.run(req.NetworkID, async () => {
      const n = this.state.networks.get(req.NetworkID)
      if (!n) return {}
      const doing = `deleting network ${short(n.id)}`
      const removed: Changes = new Map()
      const gone: PublishedPort[] = []
      let failure: unknown
      try {
        for (const e of this.state.endpointsOf(n.id)) {
          await this.state.store.delete('endpoints', e.id)
          this.state.endpoints.delete(e.id)
          removed.set(epOwner(e.id), undefined)
          gone.push(...(e.published ?? []))
        }
        await this.state.store.delete('networks', n.id)
        this.state.networks.delete(n.id)
        removed.set(netOwner(n.id), undefined)
      } catch (err) {
        failure = withContext(err, removed.size === 0 ? `${doing}: ${UNCHANGED}` : `${doing}: stopped part way, because a record could not be removed (the endpoints removed so far are gone from the host too)`)
      }
      // What the store no longer holds goes from the host too, even when the store failed part way.
      if (this.state.networks.has(n.id)) removed.set(netOwner(n.id), this.state.renderNetwork(n))
      try {
        await this.engine.change(removed, { doing, removal: true, log })
      } finally {
        await this.forgetFlows(gone, log)
      }
      if (failure) throw failure
      log.info({ network: n.id }, 'network deleted')
      return {}
    })
  }

  createEndpoint(req: CreateEndpointRequest, log: Logger) {
    return this.lock.run(req.NetworkID, async () => {
      const n = this.state.knownNetwork(req.NetworkID)
      const mode = modeOf(n)
      const plan = planEndpoint(req, n, mode, this.clock.iso())
      const existing = this.state.endpoints.get(req.EndpointID)
      if (existing && !sameEndpoint(existing, plan.record)) {
        throw conflict(`endpoint ${short(req.EndpointID)} already exists in tsnet with different settings`)
      }
      const record = existing ?? plan.record
      const clash = this.state.endpoints.otherWithHostIf(record.hostIf, record.id)
      if (clash) throw conflict(`endpoint ${short(req.EndpointID)} would reuse interface ${clash.hostIf} of endpoint ${short(clash.id)}`)
      const doing = `creating endpoint ${short(record.id)}`
      let changes: Changes
      try {
        changes = this.state.endpointChanges(n, record.id, existing, record) // a policy too large for one more container is refused here
      } catch (err) {
        throw withContext(err, doing)
      }
      await this.state.whileCreating(record, () => this.engine.change(changes, {
        doing,
        verify: [epOwner(record.id)],
        persist: existing ? undefined : () => this.state.store.put('endpoints', record.id, record, DIES_WITH_THE_MACHINE),
        log,
      }))
      this.state.endpoints.set(record.id, record)
      return plan.response
    })
  }

  endpointOperInfo(req: EndpointRef) {
    const e = this.state.endpoints.get(req.EndpointID)
    if (!e) return { Value: {} }
    return { Value: { ...(e.hostIf ? { hostInterface: e.hostIf } : {}), macAddress: e.mac, ...(e.address ? { address: e.address } : {}), ...(e.addressV6 ? { addressIPv6: e.addressV6 } : {}) } }
  }

  /**
   * `answerNow` runs once the record is durably gone: Docker may have its answer then, and the
   * kernel's removal of the links (some 20 ms, mostly RCU) follows under the network's lock.
   */
  deleteEndpoint(req: EndpointRef, log: Logger, answerNow?: () => void) {
    return this.lock.run(req.NetworkID, async () => {
      const e = this.state.endpoints.get(req.EndpointID)
      if (!e || e.networkId !== req.NetworkID) return {}
      const n = this.state.knownNetwork(e.networkId)
      const doing = `deleting endpoint ${short(e.id)}`
      await this.state.store.delete('endpoints', e.id).catch((err: unknown) => { throw withContext(err, `${doing}: ${UNCHANGED}`) })
      this.state.endpoints.delete(e.id)
      answerNow?.()
      try {
        await this.engine.change(this.state.endpointChanges(n, e.id, e, undefined), { doing, removal: true, log })
      } finally {
        await this.forgetFlows(e.published ?? [], log)
      }
      return {}
    })
  }

  join(req: JoinRequest, log: Logger) {
    return this.lock.run(req.NetworkID, async () => {
      const n = this.state.knownNetwork(req.NetworkID)
      const e = this.state.knownEndpoint(req.NetworkID, req.EndpointID)
      const sandboxKey = checkSandboxKey(req.SandboxKey)
      // Docker repeats the container's ports here; Program publishes them, but bad ones are refused now.
      parsePortMap(req.Options?.[OPT.portMap])
      parseExposedPorts(req.Options?.[OPT.exposedPorts])
      const mode = modeOf(n)
      const response = mode.join(n, e)
      if (!e.joined || e.sandboxKey !== sandboxKey) {
        await this.updateEndpoint({ ...e, joined: true, sandboxKey }, `joining endpoint ${short(e.id)}`, log, { write: DIES_WITH_THE_MACHINE })
        log.info({ endpoint: e.id, sandboxKey, interface: e.containerIf }, 'endpoint joined')
      }
      return response
    })
  }

  /** `answerNow` runs before the write: nothing Docker does next needs it, and a record left "joined" is safe (write-durability.ts). */
  leave(req: EndpointRef, log: Logger, answerNow?: () => void) {
    return this.lock.run(req.NetworkID, async () => {
      const e = this.state.endpoints.get(req.EndpointID)
      if (!e || e.networkId !== req.NetworkID || !e.joined) return {}
      answerNow?.()
      const { sandboxKey: _gone, ...rest } = e
      // No verify: a macvlan endpoint's link is still in the container when Docker calls Leave, and
      // Docker moves it back right after; checking it now would make a second link under its name.
      await this.updateEndpoint({ ...rest, joined: false }, `leaving endpoint ${short(e.id)}`, log, { write: DIES_WITH_THE_MACHINE, verify: false })
      log.info({ endpoint: e.id }, 'endpoint left its sandbox')
      return {}
    })
  }

  /**
   * Writes a changed endpoint record and brings its objects along (host first); the caller holds the
   * network's lock. With `verify`, every object is checked: a repeat puts back a flushed DNAT rule.
   */
  async updateEndpoint(next: EndpointRecord, doing: string, log: Logger, { write, verify = true }: { write?: WriteOptions; verify?: boolean } = {}): Promise<void> {
    const n = this.state.knownNetwork(next.networkId)
    await this.engine.change(this.state.endpointChanges(n, next.id, this.state.endpoints.get(next.id), next), {
      doing, ...(verify ? { verify: [epOwner(next.id)] } : {}), persist: () => this.state.store.put('endpoints', next.id, next, write), log,
    })
    this.state.endpoints.set(next.id, next)
  }

  /**
   * Store first, for a change that removes something: a write that fails (a full disk) changes
   * nothing, and a record that no longer lists what went can never bring it back at a restart.
   */
  async saveEndpoint(next: EndpointRecord, doing: string): Promise<void> {
    await this.state.store.put('endpoints', next.id, next).catch((err: unknown) => {
      throw withContext(err, `${doing}: nothing was changed, because the endpoint's record could not be written`)
    })
    this.state.endpoints.set(next.id, next)
  }

  /** Brings the host from `before` to an endpoint record already saved (a failure is not undone: see ChangeOptions.removal). */
  async applyEndpoint(before: EndpointRecord, e: EndpointRecord, doing: string, log: Logger): Promise<void> {
    await this.engine.change(this.state.endpointChanges(this.state.knownNetwork(e.networkId), e.id, before, e), { doing, removal: true, log })
  }

  /**
   * UDP and SCTP clients that keep sending keep their conntrack entry, and with it the DNAT target
   * chosen for its first packet: forget those of ports that changed hands (moby#8795). Best effort,
   * as Docker's: the ports themselves are already right, so a failure is logged, not answered.
   */
  async forgetFlows(ports: readonly PublishedPort[], log: Logger): Promise<void> {
    const flows = flowsToForget(ports)
    if (flows.length === 0) return
    await this.host.forgetPortFlows(flows, log).catch((err: unknown) => log.error({ err, flows }, 'conntrack entries of published ports not forgotten'))
  }

  /** For status output and garbage collection. */
  snapshot = () => this.state.snapshot()

  /** Swarm managers call this for global-scope networks; workers' CreateNetwork receives these options back. */
  allocateNetwork(req: AllocateNetworkRequest) {
    return { Options: req.Options ?? {} }
  }
}
