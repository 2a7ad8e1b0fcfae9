/**
 * Docker's NetworkDriver verbs. Each one: lock the network, plan purely (all validation), bring
 * the host to the plan (undoing its own changes on failure), persist, answer.
 */
import type { Logger } from 'pino'
import {
  bridgeAddresses, checkSandboxKey, planEndpoint, planJoin, planNetwork, sameEndpoint, sameNetwork,
} from '../core/network-plan.js'
import { endpointAlias, macFromSeed, networkAlias, networkTag } from '../core/names.js'
import { parseExposedPorts, parsePortMap } from '../core/ports.js'
import type { EndpointRecord, NetworkRecord } from '../core/records.js'
import { conflict, notFound, withContext } from '../errors.js'
import type { Host } from '../host/host.js'
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

  constructor(private readonly store: Store, private readonly host: Host, private readonly config: NetworkConfig) {}

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
    const keep = [...this.networks.values()].map((n) => ({ bridge: n.bridge, tag: networkTag(n.id) }))
    await this.host.pruneIntraBridge(keep, log).catch(note({ step: 'prune firewall' }))
    for (const n of this.networks.values()) {
      await this.lock.run(n.id, () => this.applyNetwork(n, log)).catch(note({ network: n.id, bridge: n.bridge }))
    }
    log.info({ networks: this.networks.size, endpoints: this.endpoints.size, orphanLinks: orphans.length, failed, ms: Date.now() - started }, 'boot reconcile done')
  }

  private async applyNetwork(n: NetworkRecord, log: Logger): Promise<void> {
    await this.host.ensureBridge({ name: n.bridge, alias: networkAlias(n.id), mtu: n.mtu, mac: macFromSeed(n.id), addresses: bridgeAddresses(n) }, log)
    await this.host.allowIntraBridge(n.bridge, networkTag(n.id), log)
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
      const record = existing ?? planned
      const release = this.claim(record.bridge, record.id, `bridge name ${record.bridge} is being claimed by another network right now`)
      try {
        await this.applyNetwork(record, log)
        if (!existing) await this.store.put('networks', record.id, record)
      } catch (err) {
        const outcome = existing ? '' : (await this.undoNetwork(record, log)) ? ' (rolled back: nothing was left on the host)' : ' (rollback incomplete: see the tsnet log)'
        throw withContext(err, `creating network ${short(record.id)}${outcome}`)
      } finally {
        release()
      }
      this.networks.set(record.id, record)
      return {}
    })
  }

  /** Removes what createNetwork may have made; true when everything went. */
  private async undoNetwork(record: NetworkRecord, log: Logger): Promise<boolean> {
    let clean = true
    await this.host.revokeIntraBridge(record.bridge, networkTag(record.id), log).catch((e) => {
      clean = false
      log.error({ err: e, bridge: record.bridge }, 'rollback: firewall rules not removed')
    })
    await this.host.deleteOwnedLink(record.bridge, networkAlias(record.id), log).catch((e) => {
      clean = false
      log.error({ err: e, bridge: record.bridge }, 'rollback: bridge not removed')
    })
    return clean
  }

  deleteNetwork(req: NetworkRef, log: Logger) {
    return this.lock.run(req.NetworkID, async () => {
      const n = this.networks.get(req.NetworkID)
      if (!n) return {}
      try {
        for (const e of [...this.endpoints.values()].filter((x) => x.networkId === n.id)) await this.removeEndpoint(e, log)
        await this.host.revokeIntraBridge(n.bridge, networkTag(n.id), log)
        await this.host.deleteOwnedLink(n.bridge, networkAlias(n.id), log)
        await this.store.delete('networks', n.id)
      } catch (err) {
        throw withContext(err, `deleting network ${short(n.id)}`)
      }
      this.networks.delete(n.id)
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
        if (!existing) await this.store.put('endpoints', record.id, record)
      } catch (err) {
        let outcome = ''
        if (!existing) {
          outcome = await this.host.deleteOwnedLink(record.hostIf, endpointAlias(record.id), log).then(
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

  private async removeEndpoint(e: EndpointRecord, log: Logger): Promise<void> {
    await this.host.deleteOwnedLink(e.hostIf, endpointAlias(e.id), log)
    await this.store.delete('endpoints', e.id)
    this.endpoints.delete(e.id)
  }

  deleteEndpoint(req: EndpointRef, log: Logger) {
    return this.lock.run(req.NetworkID, async () => {
      const e = this.endpoints.get(req.EndpointID)
      if (!e || e.networkId !== req.NetworkID) return {}
      try {
        await this.removeEndpoint(e, log)
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

  /** Published ports arrive here for the container's gateway endpoint; validated now, programmed by the edge layer. */
  programExternalConnectivity(req: ConnectivityRequest) {
    const options = req.Options ?? {}
    parsePortMap(options[OPT.portMap])
    parseExposedPorts(options[OPT.exposedPorts])
    return {}
  }

  revokeExternalConnectivity(_req: EndpointRef) {
    return {}
  }

  /** Swarm managers call this for global-scope networks; workers' CreateNetwork receives these options back. */
  allocateNetwork(req: AllocateNetworkRequest) {
    return { Options: req.Options ?? {} }
  }

  /** For status output and tests. */
  snapshot() {
    return { networks: [...this.networks.values()], endpoints: [...this.endpoints.values()] }
  }
}
