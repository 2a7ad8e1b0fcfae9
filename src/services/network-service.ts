/**
 * Docker's NetworkDriver verbs. Each one: lock the network, plan purely (all validation), bring
 * the host to the plan (undoing its own changes on failure), persist, answer.
 */
import type { Logger } from 'pino'
import {
  OPTION, bridgeAddresses, checkSandboxKey, defaultHostIp, findSubnetOverlap, planEndpoint, planJoin, planNetwork, sameEndpoint, sameNetwork, withDefaultHostIp,
} from '../core/network-plan.js'
import { flowsToForget } from '../core/flows.js'
import {
  FOREIGN_TAG, checkPolicySize, deviceGroupOf, endpointTag, entriesOfNetwork, foreignEntries, heirsOf, needsRouteLocalnet,
} from '../core/edge-plan.js'
import { endpointAlias, macFromSeed, networkAlias, networkTag } from '../core/names.js'
import { canonicalPolicy, parsePolicy, policyNetworkNames } from '../core/policy.js'
import { bindAddressOf, parseExposedPorts, parsePortMap, planPublish } from '../core/ports.js'
import type { EndpointRecord, NetworkRecord, PublishedPort } from '../core/records.js'
import { conflict, invalid, notFound, quote, withContext } from '../errors.js'
import type { Host } from '../host/host.js'
import { bridgeKey } from '../host/sysctl.js'
import { PortPublisher, dnatRulesOf } from './port-publisher.js'
import {
  OPT, type AllocateNetworkRequest, type ConnectivityRequest, type CreateEndpointRequest, type CreateNetworkRequest,
  type EndpointRef, type JoinRequest, type NetworkRef,
} from '../protocol/types.js'
import type { Store } from '../store/store.js'
import { KeyedLock } from '../util/keyed-lock.js'

export interface NetworkConfig {
  /** MTU for networks without -o com.docker.network.driver.mtu; undefined: the default route's, else 1500. */
  defaultMtu?: number
}

/** Docker's network names and subnets as last seen (services/docker-names.ts); none in unit tests. */
export interface NetworkDirectory {
  resolve(name: string): string[]
  foreignSubnets(): string[]
  lookup(ref: string): { id: string; name: string } | undefined
  nameOf(id: string): string | undefined
}

const NO_DIRECTORY: NetworkDirectory = { resolve: () => [], foreignSubnets: () => [], lookup: () => undefined, nameOf: () => undefined }

const FALLBACK_MTU = 1500
const short = (id: string) => id.slice(0, 12)

export class NetworkService {
  private readonly networks = new Map<string, NetworkRecord>()
  private readonly endpoints = new Map<string, EndpointRecord>()
  private readonly lock = new KeyedLock()
  /**
   * Kernel names claimed by creates still in progress. Locks are per network, so two networks
   * (or endpoints of two networks) whose names collide could otherwise race for one link.
   */
  private readonly claimed = new Map<string, string>()
  /** Networks whose CreateNetwork is between its first host change and its registration, by ID. */
  private readonly creating = new Map<string, NetworkRecord>()
  /** tsnet's chains and sets are known to be in place (set by ensureEdge, cleared by removeEdge). */
  private edgeReady = false
  private readonly ports: PortPublisher

  constructor(
    private readonly store: Store,
    private readonly host: Host,
    private readonly config: NetworkConfig,
    private readonly directory: NetworkDirectory = NO_DIRECTORY,
  ) {
    this.ports = new PortPublisher(host)
  }

  async load(): Promise<void> {
    for (const { value } of await this.store.list<NetworkRecord>('networks')) this.networks.set(value.id, value)
    for (const { value } of await this.store.list<EndpointRecord>('endpoints')) this.endpoints.set(value.id, value)
  }

  /**
   * Boot reconcile: brings the kernel in line with the store. Stored networks get their bridge
   * and rules back (a reboot or a lost namespace removes them, and Docker never sends
   * CreateNetwork again); links and rules that carry tsnet's tag but that no record explains
   * (a crash between a host change and its store write) are removed. Objects without tsnet's
   * tag are never touched. Failures are logged per object and do not stop the others.
   */
  async restoreHost(log: Logger): Promise<void> {
    const started = Date.now()
    let failed = 0
    const note = (what: Record<string, unknown>) => (err: unknown) => {
      failed++
      log.error({ err, ...what }, 'boot reconcile: could not fix an object')
    }
    const known = new Set([...this.networks.keys()].map(networkAlias).concat([...this.endpoints.keys()].map(endpointAlias)))
    const owned = await this.host.listOwnedLinks().catch((err) => { note({ step: 'list links' })(err); return [] })
    // Endpoints first: deleting a bridge takes its ports along, but an orphan veth may sit on a kept bridge.
    const orphans = owned.filter((l) => !known.has(l.alias)).sort((a, b) => Number(a.alias.startsWith('tsnet:net:')) - Number(b.alias.startsWith('tsnet:net:')))
    for (const l of orphans) {
      await this.host.deleteOwnedLink(l.name, l.alias, log).catch(note({ link: l.name }))
    }
    if (this.networks.size === 0) {
      await this.removeEdge(log).catch(note({ step: 'remove firewall' }))
    } else {
      // Batched: a handful of host commands whatever the number of networks (a managed plugin
      // has seconds to answer, and requests wait for this).
      const nets = [...this.networks.values()]
      await this.ensureEdge(log, true).catch(note({ step: 'firewall chains' }))
      const failedBridges = await this.host.ensureBridges(nets.map((n) => this.bridgeSpec(n)), log).catch((err) => {
        note({ step: 'bridges' })(err)
        return new Map(nets.map((n) => [n.bridge, err]))
      })
      for (const [bridge, err] of failedBridges) note({ bridge })(err)
      const ready = nets.filter((n) => !failedBridges.has(n.bridge))
      await this.applyHostSysctls(ready, log).catch(note({ step: 'kernel settings' }))
      for (const n of ready) await this.applyBridgeSysctls(n, log).catch(note({ network: n.id, step: 'bridge settings' }))
      const entries = ready.flatMap((n) => {
        try {
          return this.networkSetEntries(n)
        } catch (err) {
          note({ network: n.id, step: 'policy' })(err)
          return []
        }
      })
      await this.host.syncSetEntries((c) => c !== FOREIGN_TAG, entries, log, 'every network').catch(note({ step: 'ipsets' }))
      await this.syncForeign(log).catch(note({ step: "Docker's networks" }))
      const published = [...this.endpoints.values()].filter((e) => e.published?.length)
      const tags = new Set(published.map((e) => endpointTag(e.id)))
      await this.host.removePortRules((tag) => !tags.has(tag), log, 'endpoints without published ports').catch(note({ step: 'prune DNAT rules' }))
      const rules: Array<{ family: 4 | 6; rule: string }> = []
      for (const e of published) {
        await this.ports.rehold(e).then(() => rules.push(...dnatRulesOf(e)), note({ endpoint: e.id, step: 'published ports' }))
      }
      await this.host.addPortRules(rules, log).catch(note({ step: 'DNAT rules' }))
    }
    log.info({ networks: this.networks.size, endpoints: this.endpoints.size, orphanLinks: orphans.length, failed, ms: Date.now() - started }, 'boot reconcile done')
  }

  /** The chains and sets once per process (and at every boot reconcile): they do not go away by themselves. */
  private async ensureEdge(log: Logger, force = false): Promise<void> {
    if (this.edgeReady && !force) return
    await this.host.ensureEdge(log)
    this.edgeReady = true
  }

  private async removeEdge(log: Logger): Promise<void> {
    this.edgeReady = false
    await this.host.removeEdge(log)
  }

  private bridgeSpec(n: NetworkRecord) {
    return { name: n.bridge, alias: networkAlias(n.id), mtu: n.mtu, mac: macFromSeed(n.id), addresses: bridgeAddresses(n), group: deviceGroupOf(n) }
  }

  /**
   * Settings of a network's own bridge (after the bridge exists: they live in its conf
   * directory). accept_ra off: a container's Router Advertisement would otherwise give the host a
   * default route and addresses (absent on a kernel without IPv6, which is fine). route_localnet
   * only while a published port needs it.
   */
  private async applyBridgeSysctls(n: NetworkRecord, log: Logger): Promise<void> {
    await this.host.setSysctl(bridgeKey(n.bridge, 'accept_ra', 6), '0', log)
    await this.syncRouteLocalnet(n, log)
  }

  /**
   * route_localnet on a network's bridge: on while the published ports of its endpoints (and
   * `planned` ones) need it, off otherwise. tsnet owns its bridges' setting (earlier versions
   * turned it on for every bridge); the raw-table drop keeps everyone but the host off 127.0.0.0/8.
   */
  private async syncRouteLocalnet(n: NetworkRecord, log: Logger, planned: Array<Pick<PublishedPort, 'family' | 'hostIp'>> = []): Promise<void> {
    const published = [...this.endpoints.values()].filter((e) => e.networkId === n.id).flatMap((e) => e.published ?? [])
    await this.host.setSysctl(bridgeKey(n.bridge, 'route_localnet'), needsRouteLocalnet([...published, ...planned]) ? '1' : '0', log)
  }

  /** syncRouteLocalnet after ports went: a failure leaves it on, which is safe, and is logged (boot reconcile settles it). */
  private settleRouteLocalnet(networkId: string, log: Logger): Promise<void> {
    const n = this.networks.get(networkId)
    if (!n) return Promise.resolve()
    return this.syncRouteLocalnet(n, log).catch((err: unknown) => log.warn({ err, bridge: n.bridge }, 'route_localnet not turned off (harmless: loopback traffic from outside is dropped)'))
  }

  /** Host-wide settings the networks need; forwarding turned on by tsnet closes FORWARD by default, as Docker does. */
  private async applyHostSysctls(nets: NetworkRecord[], log: Logger): Promise<void> {
    // First what may refuse the request, so a refusal leaves forwarding as it was.
    const v4 = await this.host.setSysctl('net/bridge/bridge-nf-call-iptables', '1', log)
    const v6 = await this.host.setSysctl('net/bridge/bridge-nf-call-ip6tables', '1', log)
    // ICC off relies on frames inside a bridge meeting iptables.
    if (nets.some((n) => !n.enableIcc) && (v4 === 'absent' || v6 === 'absent')) {
      throw invalid('enable_icc=false needs the br_netfilter kernel module, which is not loaded (modprobe br_netfilter; Docker loads it when it starts)')
    }
    const routed = nets.filter((n) => !n.internal)
    if (routed.length && (await this.host.setSysctl('net/ipv4/ip_forward', '1', log)) === 'changed') await this.host.dropForwardingByDefault(4, log)
    if (routed.some((n) => n.ipv6) && (await this.host.setSysctl('net/ipv6/conf/all/forwarding', '1', log)) === 'changed') await this.host.dropForwardingByDefault(6, log)
  }

  /** The ipset entries of one network, with one endpoint added or left out (a change in progress). */
  private networkSetEntries(n: NetworkRecord, extraEndpoint?: EndpointRecord, without?: string) {
    const eps = [...this.endpoints.values()].filter((e) => e.networkId === n.id && e.id !== without && e.id !== extraEndpoint?.id)
    if (extraEndpoint) eps.push(extraEndpoint)
    return entriesOfNetwork(n, eps, (name) => this.directory.resolve(name))
  }

  private syncNetworkEntries(n: NetworkRecord, log: Logger, entries = this.networkSetEntries(n)): Promise<void> {
    const tag = networkTag(n.id)
    return this.host.syncSetEntries((c) => c === tag, entries, log, `network ${short(n.id)}`, heirsOf(n, this.networks.values()))
  }

  private syncForeign(log: Logger): Promise<void> {
    return this.host.syncSetEntries((c) => c === FOREIGN_TAG, foreignEntries(this.directory.foreignSubnets()), log, "Docker's bridge networks")
  }

  /** After Docker's names changed: policies that name networks, and the set of Docker's own subnets. */
  async namesChanged(log: Logger): Promise<void> {
    if (this.networks.size === 0) return
    await this.syncForeign(log)
    for (const n of this.networks.values()) {
      if (!n.policy || policyNetworkNames(parsePolicy(n.policy)).length === 0) continue
      await this.lock.run(n.id, () => this.syncNetworkEntries(n, log))
    }
  }

  private async applyNetwork(n: NetworkRecord, log: Logger): Promise<void> {
    await this.host.ensureBridge(this.bridgeSpec(n), log)
    await this.applyBridgeSysctls(n, log)
    await this.applyHostSysctls([n], log)
    await this.ensureEdge(log)
    await this.syncNetworkEntries(n, log)
  }

  capabilities() {
    return { Scope: 'local', ConnectivityScope: 'local' }
  }

  private async defaultMtu(): Promise<number> {
    if (this.config.defaultMtu !== undefined) return this.config.defaultMtu
    try {
      return (await this.host.defaultRouteMtu()) ?? FALLBACK_MTU
    } catch {
      return FALLBACK_MTU
    }
  }

  /** Claims a kernel name for `owner` until the returned function is called; refuses a name claimed by another. */
  private claim(name: string, owner: string, busy: string): () => void {
    const holder = this.claimed.get(name)
    if (holder !== undefined && holder !== owner) throw conflict(busy)
    this.claimed.set(name, owner)
    return () => {
      if (this.claimed.get(name) === owner) this.claimed.delete(name)
    }
  }

  private knownNetwork(id: string): NetworkRecord {
    const n = this.networks.get(id)
    if (!n) throw notFound(`network ${short(id)} is unknown to tsnet (was it created with another driver, or was tsnet's state directory lost?)`)
    return n
  }

  private knownEndpoint(networkId: string, endpointId: string): EndpointRecord {
    const e = this.endpoints.get(endpointId)
    if (!e || e.networkId !== networkId) throw notFound(`endpoint ${short(endpointId)} of network ${short(networkId)} is unknown to tsnet`)
    return e
  }

  createNetwork(req: CreateNetworkRequest, log: Logger) {
    return this.lock.run(req.NetworkID, async () => {
      const planned = planNetwork(req, { mtu: await this.defaultMtu() }, new Date().toISOString())
      const existing = this.networks.get(req.NetworkID)
      if (existing && !sameNetwork(existing, planned)) {
        throw conflict(`network ${short(req.NetworkID)} already exists in tsnet with different settings`)
      }
      const clash = [...this.networks.values()].find((n) => n.id !== planned.id && n.bridge === planned.bridge)
      if (clash) throw conflict(`bridge name ${planned.bridge} is already used by network ${short(clash.id)}`)
      // Checked and claimed with no await in between: two creates of overlapping networks cannot both pass.
      const overlap = existing ? undefined : findSubnetOverlap(planned, [...this.networks.values(), ...this.creating.values()])
      if (overlap) {
        throw conflict(`subnet ${overlap.mine} of network ${this.label(planned)} overlaps subnet ${overlap.theirs} of tsnet network ${this.label(overlap.other)}: ` +
          "tsnet networks may not share addresses, because the firewall tells networks apart by their subnets (give a free --subnet, or use --ipam-driver tsnet, which never hands out overlapping pools)")
      }
      const record = existing ?? planned
      // Counted, not expanded, and before the host is touched: a policy no container could take is refused now.
      checkPolicySize(record, [...this.endpoints.values()].filter((e) => e.networkId === record.id), (name) => this.directory.resolve(name))
      const release = this.claim(record.bridge, record.id, `bridge name ${record.bridge} is being claimed by another network right now`)
      this.creating.set(record.id, record)
      try {
        await this.applyNetwork(record, log)
        if (!existing) await this.store.put('networks', record.id, record)
      } catch (err) {
        const outcome = existing ? '' : (await this.undoNetwork(record, log)) ? ' (rolled back: nothing was left on the host)' : ' (rollback incomplete: see the tsnet log)'
        throw withContext(err, `creating network ${short(record.id)}${outcome}`)
      } finally {
        release()
        this.creating.delete(record.id)
      }
      this.networks.set(record.id, record)
      return {}
    })
  }

  /** No network registered and none being created (but `self`): the chains and sets can go. */
  private noNetworkLeft(self?: string): boolean {
    return this.networks.size === 0 && [...this.creating.keys()].every((id) => id === self)
  }

  /** Removes what createNetwork may have made; true when everything went. */
  private async undoNetwork(record: NetworkRecord, log: Logger): Promise<boolean> {
    let clean = true
    await this.syncNetworkEntries(record, log, []).catch((e) => {
      clean = false
      log.error({ err: e, bridge: record.bridge }, 'rollback: ipset entries not removed')
    })
    await this.host.deleteOwnedLink(record.bridge, networkAlias(record.id), log).catch((e) => {
      clean = false
      log.error({ err: e, bridge: record.bridge }, 'rollback: bridge not removed')
    })
    if (this.noNetworkLeft(record.id)) {
      await this.removeEdge(log).catch((e) => {
        clean = false
        log.error({ err: e }, "rollback: tsnet's chains not removed")
      })
    }
    return clean
  }

  deleteNetwork(req: NetworkRef, log: Logger) {
    return this.lock.run(req.NetworkID, async () => {
      const n = this.networks.get(req.NetworkID)
      if (!n) return {}
      try {
        for (const e of [...this.endpoints.values()].filter((x) => x.networkId === n.id)) await this.removeEndpoint(e, n, log, false)
        await this.syncNetworkEntries(n, log, [])
        await this.host.deleteOwnedLink(n.bridge, networkAlias(n.id), log)
        await this.store.delete('networks', n.id)
        this.networks.delete(n.id)
        if (this.noNetworkLeft()) await this.removeEdge(log)
      } catch (err) {
        throw withContext(err, `deleting network ${short(n.id)}`)
      }
      log.info({ network: n.id, bridge: n.bridge }, 'network deleted')
      return {}
    })
  }

  createEndpoint(req: CreateEndpointRequest, log: Logger) {
    return this.lock.run(req.NetworkID, async () => {
      const n = this.knownNetwork(req.NetworkID)
      const plan = planEndpoint(req, n, new Date().toISOString())
      const existing = this.endpoints.get(req.EndpointID)
      if (existing && !sameEndpoint(existing, plan.record)) {
        throw conflict(`endpoint ${short(req.EndpointID)} already exists in tsnet with different settings`)
      }
      const clash = [...this.endpoints.values()].find((e) => e.id !== plan.record.id && e.hostIf === plan.record.hostIf)
      if (clash) throw conflict(`endpoint ${short(req.EndpointID)} would reuse interface ${clash.hostIf} of endpoint ${short(clash.id)}`)
      const record = existing ?? plan.record
      const release = this.claim(record.hostIf, record.id, `interface ${record.hostIf} is being claimed by another endpoint right now`)
      try {
        await this.host.ensureVeth({
          hostName: record.hostIf, peerName: record.containerIf, alias: endpointAlias(record.id), mtu: record.mtu, mac: record.mac, bridge: n.bridge,
        }, log)
        if (n.policy) await this.syncNetworkEntries(n, log, this.networkSetEntries(n, record))
        if (!existing) await this.store.put('endpoints', record.id, record)
      } catch (err) {
        let outcome = ''
        if (!existing) {
          const undoEntries = n.policy ? this.syncNetworkEntries(n, log, this.networkSetEntries(n, undefined, record.id)) : Promise.resolve()
          outcome = await undoEntries.then(() => this.host.deleteOwnedLink(record.hostIf, endpointAlias(record.id), log)).then(
            () => ' (rolled back: veth removed)',
            (e) => {
              log.error({ err: e, veth: record.hostIf }, 'rollback: veth not removed')
              return ' (rollback incomplete: see the tsnet log)'
            },
          )
        }
        throw withContext(err, `creating endpoint ${short(record.id)}${outcome}`)
      } finally {
        release()
      }
      this.endpoints.set(record.id, record)
      return plan.response
    })
  }

  endpointOperInfo(req: EndpointRef) {
    const e = this.endpoints.get(req.EndpointID)
    if (!e) return { Value: {} }
    return { Value: { hostInterface: e.hostIf, macAddress: e.mac, ...(e.address ? { address: e.address } : {}), ...(e.addressV6 ? { addressIPv6: e.addressV6 } : {}) } }
  }

  /**
   * The record goes first: a store that cannot be changed changes nothing, and a record that is
   * gone can never publish a port again at a restart (the boot reconcile removes whatever of the
   * endpoint is left on the host). The endpoint stays known in memory until the host is clean, so
   * Docker's retry finishes the job.
   */
  private async removeEndpoint(e: EndpointRecord, n: NetworkRecord | undefined, log: Logger, syncEntries = true): Promise<void> {
    await this.store.delete('endpoints', e.id).catch((err: unknown) => {
      throw withContext(err, 'nothing was changed, because its record could not be removed')
    })
    await this.unpublish(e, log, false)
    if (n?.policy && syncEntries) await this.syncNetworkEntries(n, log, this.networkSetEntries(n, undefined, e.id))
    await this.host.deleteOwnedLink(e.hostIf, endpointAlias(e.id), log)
    this.endpoints.delete(e.id)
  }

  deleteEndpoint(req: EndpointRef, log: Logger) {
    return this.lock.run(req.NetworkID, async () => {
      const e = this.endpoints.get(req.EndpointID)
      if (!e || e.networkId !== req.NetworkID) return {}
      try {
        await this.removeEndpoint(e, this.networks.get(e.networkId), log)
      } catch (err) {
        throw withContext(err, `deleting endpoint ${short(e.id)}`)
      }
      return {}
    })
  }

  join(req: JoinRequest, log: Logger) {
    return this.lock.run(req.NetworkID, async () => {
      const n = this.knownNetwork(req.NetworkID)
      const e = this.knownEndpoint(req.NetworkID, req.EndpointID)
      const sandboxKey = checkSandboxKey(req.SandboxKey)
      const options = req.Options ?? {}
      parsePortMap(options[OPT.portMap])
      parseExposedPorts(options[OPT.exposedPorts])
      const response = planJoin(n, e)
      if (!e.joined || e.sandboxKey !== sandboxKey) {
        const updated = { ...e, joined: true, sandboxKey }
        await this.store.put('endpoints', e.id, updated)
        this.endpoints.set(e.id, updated)
        log.info({ endpoint: e.id, sandboxKey, interface: e.containerIf }, 'endpoint joined')
      }
      return response
    })
  }

  leave(req: EndpointRef, log: Logger) {
    return this.lock.run(req.NetworkID, async () => {
      const e = this.endpoints.get(req.EndpointID)
      if (!e || e.networkId !== req.NetworkID || !e.joined) return {}
      const { sandboxKey: _gone, ...rest } = e
      const updated: EndpointRecord = { ...rest, joined: false }
      await this.store.put('endpoints', e.id, updated)
      this.endpoints.set(e.id, updated)
      log.info({ endpoint: e.id }, 'endpoint left its sandbox')
      return {}
    })
  }

  /**
   * Publishes the container's ports (Docker calls this for its gateway endpoint only): a host
   * port held by a socket of tsnet's and one DNAT rule per mapping and address family. All or
   * nothing: a port that cannot be had undoes the others.
   */
  programExternalConnectivity(req: ConnectivityRequest, log: Logger) {
    return this.lock.run(req.NetworkID, async () => {
      const n = this.knownNetwork(req.NetworkID)
      const e = this.knownEndpoint(req.NetworkID, req.EndpointID)
      const options = req.Options ?? {}
      const mappings = parsePortMap(options[OPT.portMap])
      parseExposedPorts(options[OPT.exposedPorts])
      if (n.internal) {
        if (mappings.some((m) => m.hostPort !== 0 || m.hostIp !== '')) throw invalid(`network ${short(n.id)} is internal: it publishes no ports`)
        return {}
      }
      // Most containers publish nothing: nothing to hold, program or write.
      if (mappings.length === 0 && !e.published?.length && !this.ports.holds(e.id)) return {}
      // The network's default host address first: planPublish then binds those mappings to it alone.
      const requests = planPublish(e, withDefaultHostIp(n, mappings))
      // Repeated (also after a restart, whose reconcile held the ports again): the rules only.
      if (e.published && this.ports.holds(e.id) && JSON.stringify(e.portMappings) === JSON.stringify(mappings)) {
        await this.ports.reapply(e, log)
        return {}
      }
      if (e.published?.length) await this.unpublish(e, log)
      const current = this.endpoints.get(e.id) ?? e
      // Before the DNAT rules, so the host's own path through 127.0.0.1 works as soon as they do.
      await this.syncRouteLocalnet(n, log, requests.flatMap((r) => r.targets.map((x) => ({ family: x.family, hostIp: x.bind }))))
      const published = await this.ports.publish(e, requests, this.endpoints.values(), log).catch(async (err: unknown) => {
        await this.settleRouteLocalnet(n.id, log)
        const hostIp = defaultHostIp(n)
        throw hostIp && mappings.some((m) => m.hostIp === '') ? withContext(err, `network ${this.label(n)} publishes on ${hostIp} (${OPTION.hostBinding})`) : err
      })
      const updated: EndpointRecord = { ...current, portMappings: mappings, published }
      try {
        await this.store.put('endpoints', e.id, updated)
      } catch (err) {
        const outcome = await this.ports.rollback(e.id, log)
        await this.settleRouteLocalnet(n.id, log)
        throw withContext(err, `publishing ports of endpoint ${short(e.id)}${outcome}`)
      }
      this.endpoints.set(e.id, updated)
      for (const p of published) {
        log.info({ endpoint: e.id, network: n.id, proto: p.proto, hostIp: bindAddressOf(p), hostPort: p.hostPort, to: `${p.containerIp}:${p.containerPort}` }, 'port published')
      }
      // Packets that arrived while no rule held the port started flows of their own (not NATed): forget them too.
      await this.forgetFlows(published, log)
      return {}
    })
  }

  /**
   * Removes exactly what programExternalConnectivity added for the endpoint. The record is written
   * first (unless `persist` is false: the caller removed it): a write that fails (a full disk)
   * changes nothing, and a record that no longer lists the ports can never publish them again at a
   * restart, whatever happens to the host change after it.
   */
  private async unpublish(e: EndpointRecord, log: Logger, persist = true): Promise<void> {
    const current = this.endpoints.get(e.id) ?? e
    const gone = current.published ?? []
    if (!gone.length && !this.ports.holds(e.id)) return
    if (gone.length && this.endpoints.has(e.id)) {
      const { published: _gone, ...rest } = current
      if (persist) {
        await this.store.put('endpoints', e.id, rest).catch((err: unknown) => {
          throw withContext(err, 'nothing was changed (the ports stay published), because their record could not be written')
        })
      }
      this.endpoints.set(e.id, rest)
    }
    try {
      await this.ports.withdraw(e.id, log)
    } finally {
      // Also when the withdraw failed: a retry no longer knows the ports (the record forgot them).
      await this.forgetFlows(gone, log)
    }
    for (const p of gone) log.info({ endpoint: e.id, proto: p.proto, hostPort: p.hostPort }, 'port unpublished')
    await this.settleRouteLocalnet(e.networkId, log)
  }

  /**
   * UDP and SCTP clients that keep sending keep their conntrack entry, and with it the DNAT target
   * chosen for its first packet: forget those of ports that changed hands (moby#8795). Best effort,
   * as Docker's: the ports themselves are already right, so a failure is logged, not answered.
   */
  private async forgetFlows(ports: readonly PublishedPort[], log: Logger): Promise<void> {
    const flows = flowsToForget(ports)
    if (flows.length === 0) return
    await this.host.forgetPortFlows(flows, log).catch((err: unknown) => log.error({ err, flows }, 'conntrack entries of published ports not forgotten'))
  }

  revokeExternalConnectivity(req: EndpointRef, log: Logger) {
    return this.lock.run(req.NetworkID, async () => {
      const e = this.endpoints.get(req.EndpointID)
      if (!e || e.networkId !== req.NetworkID) return {}
      try {
        await this.unpublish(e, log)
      } catch (err) {
        throw withContext(err, `unpublishing ports of endpoint ${short(e.id)}`)
      }
      return {}
    })
  }

  /** `tsnet policy set`: replaces a network's policy (the empty text removes it) and applies it at once. */
  setPolicy(ref: string, text: string, log: Logger) {
    const n = this.findNetwork(ref)
    const policy = canonicalPolicy(text)
    if (n.internal && policy !== '') throw invalid(`network ${this.label(n)} is internal: it accepts no traffic from other networks, so it takes no policy`)
    return this.lock.run(n.id, async () => {
      const current = this.knownNetwork(n.id)
      const { policy: _old, ...rest } = current
      const updated: NetworkRecord = policy === '' ? rest : { ...rest, policy }
      try {
        await this.syncNetworkEntries(updated, log, this.networkSetEntries(updated))
        await this.store.put('networks', n.id, updated)
      } catch (err) {
        await this.syncNetworkEntries(current, log).catch((undoErr) => log.error({ err: undoErr }, 'rollback: old policy not restored'))
        throw withContext(err, `changing the policy of network ${this.label(n)}`)
      }
      this.networks.set(n.id, updated)
      log.info({ network: n.id, policy }, 'network policy changed')
      return this.policyOf(updated)
    })
  }

  /** Policies of one network or all, with the names they resolve to right now. */
  policies(ref?: string) {
    const list = ref ? [this.findNetwork(ref)] : [...this.networks.values()]
    return list.map((n) => this.policyOf(n))
  }

  private policyOf(n: NetworkRecord) {
    const rules = n.policy ? parsePolicy(n.policy) : []
    const resolved = Object.fromEntries(policyNetworkNames(rules).map((name) => [name, this.directory.resolve(name)]))
    return { network: n.id, name: this.directory.nameOf(n.id) ?? '', internal: n.internal, allow: n.policy ?? '', resolved }
  }

  private label(n: NetworkRecord): string {
    return this.directory.nameOf(n.id) ?? short(n.id)
  }

  /** A tsnet network by Docker name, full ID, or unique ID prefix. */
  private findNetwork(ref: string): NetworkRecord {
    if (typeof ref !== 'string' || ref === '' || ref.length > 128) throw invalid('name a network by its Docker name or ID')
    const byName = this.directory.lookup(ref)
    if (byName && this.networks.has(byName.id)) return this.networks.get(byName.id) as NetworkRecord
    const byId = [...this.networks.values()].filter((n) => n.id.startsWith(ref))
    if (byId.length === 1) return byId[0] as NetworkRecord
    if (byId.length > 1) throw invalid(`${quote(ref)} matches ${byId.length} tsnet networks; give more of the ID`)
    throw notFound(`no tsnet network is called ${quote(ref)} (names come from Docker's API in the background: is Docker reachable, and is the network a tsnet one?)`)
  }

  /** Swarm managers call this for global-scope networks; workers' CreateNetwork receives these options back. */
  allocateNetwork(req: AllocateNetworkRequest) {
    return { Options: req.Options ?? {} }
  }

  /** Shutdown: lets the held host ports go, as the process's exit would; records and rules stay. */
  close(): Promise<void> {
    return this.ports.releaseAll()
  }

  /** For status output and tests. */
  snapshot() {
    return { networks: [...this.networks.values()], endpoints: [...this.endpoints.values()] }
  }
}
