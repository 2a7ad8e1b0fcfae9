/**
 * Published ports: ProgramExternalConnectivity and RevokeExternalConnectivity. Programming
 * chooses and holds a host port per mapping (a socket of tsnet's, so nothing else takes it),
 * then records them on the endpoint; the endpoint's objects (a DNAT rule per port and family,
 * the held ports) follow through the engine like everything else.
 */
import type { Logger } from 'pino'
import {
  MAX_PORT_TRIES, PortHolders, bindAddressOf, endpointOverlap, kernelOverlap, parseExposedPorts, parsePortMap, planPublish, type PublishRequest,
} from '../core/ports.js'
import { OPT } from '../core/docker-keys.js'
import type { EndpointRecord, PublishedPort } from '../core/records.js'
import { TsnetError, conflict, invalid, withContext } from '../errors.js'
import type { Host } from '../host/host.js'
import type { Binding, Reservation } from '../host/port-reservations.js'
import { yieldToLoop } from '../util/yield.js'
import { modeOf } from '../modes/index.js'
import { BRIDGE_OPTION } from '../modes/bridge.js'
import type { ConnectivityRequest, EndpointRef } from '../protocol/types.js'
import type { NetworkDriver } from './network-driver.js'
import { short } from './network-state.js'

/**
 * Free host ports of a range are handed to the host in growing chunks, the loop yielding in
 * between: the first free port usually binds, and a range in use elsewhere is still walked fast.
 */
const MAX_CHUNK = 32

export class PortPublisher {
  constructor(private readonly driver: NetworkDriver, private readonly host: Host) {}

  /**
   * Publishes the container's ports (Docker calls this for its gateway endpoint only). All or
   * nothing: a port that cannot be had undoes the others.
   */
  program(req: ConnectivityRequest, log: Logger) {
    const state = this.driver.state
    return this.driver.lock.run(req.NetworkID, async () => {
      const n = state.knownNetwork(req.NetworkID)
      const e = state.knownEndpoint(req.NetworkID, req.EndpointID)
      const options = req.Options ?? {}
      const mode = modeOf(n)
      const hostIp = mode.defaultHostIp?.(n) ?? ''
      // As Docker sent them (and as they are stored); a mapping without a HostIP then takes the
      // network's default host address (-o host_binding_ipv4).
      const sent = parsePortMap(options[OPT.portMap])
      const defaulted = hostIp !== '' && sent.some((m) => m.hostIp === '')
      const mappings = sent.map((m) => (m.hostIp === '' && hostIp !== '' ? { ...m, hostIp } : m))
      parseExposedPorts(options[OPT.exposedPorts])
      if (n.internal || !mode.supports.publish) {
        // -p 80 (any host port) asks for publishing too; only an internal network lets it pass quietly, as before.
        if (sent.some((m) => !n.internal || m.hostPort !== 0 || m.hostIp !== '')) {
          throw invalid(n.internal ? `network ${short(n.id)} is internal: it publishes no ports` : `a ${n.mode} network publishes no ports: host netfilter never sees its traffic`)
        }
        return {}
      }
      // Most containers publish nothing: nothing to hold, program or write.
      if (mappings.length === 0 && !e.published?.length) return {}
      const requests = planPublish(e, mappings)
      const doing = `publishing ports of endpoint ${short(e.id)}`
      if (e.published && JSON.stringify(e.portMappings) === JSON.stringify(sent)) {
        // Repeated (also after a restart): make sure the rules and holds are there.
        await this.driver.updateEndpoint(e, doing, log)
        return {}
      }
      if (e.published?.length) await this.withdraw(e, log)
      const current = state.endpoints.get(e.id) ?? e
      const peers = [...state.endpoints.values()].filter((o) => o.id !== e.id)
      const published = await this.hold(requests, peers).catch((err: unknown) => {
        const where = defaulted ? `network ${state.label(n)} publishes on ${hostIp} (${BRIDGE_OPTION.hostBinding})` : undefined
        const failed = withContext(err, `${doing} (rolled back: the host is as it was)`)
        throw where ? withContext(failed, where) : failed
      })
      // The holds are on the host now; if this change fails, the engine's undo releases them.
      await this.driver.updateEndpoint({ ...current, portMappings: sent, published }, doing, log)
      // Packets that arrived while no rule held these ports started flows of their own.
      await this.driver.forgetFlows(published, log)
      for (const p of published) {
        log.info({ endpoint: e.id, network: n.id, proto: p.proto, hostIp: bindAddressOf(p), hostPort: p.hostPort, to: `${p.containerIp}:${p.containerPort}` }, 'port published')
      }
      return {}
    })
  }

  /**
   * Holds a port for each request: all or none. Ports other endpoints or earlier mappings hold
   * are skipped by lookup, the rest are tried on the host in order, a chunk at a time, the event
   * loop running between chunks (and before each mapping, so thousands of single mappings do not
   * hold the daemon either). Every port looked at is spent from the request's budget.
   */
  private async hold(requests: PublishRequest[], peers: Iterable<EndpointRecord>): Promise<PublishedPort[]> {
    const held: Reservation[] = []
    const published: PublishedPort[] = []
    const taken = holdersOf(peers)
    // This request's own earlier mappings: the kernel would refuse their ports, so skip them without asking it.
    const mine = new PortHolders(kernelOverlap)
    const budget = new PortBudget()
    try {
      for (const [i, r] of requests.entries()) {
        const bindings: Binding[] = r.targets.map((t) => ({ family: t.family, address: t.bind }))
        const reservation = await this.reserve(r, i, bindings, taken, mine, budget)
        held.push(reservation)
        for (const t of r.targets) {
          mine.add(r.mapping.proto, reservation.port, t, `port mapping #${i + 1} of the same request`)
          published.push({ family: t.family, proto: r.mapping.proto, hostIp: r.mapping.hostIp, hostPort: reservation.port, containerIp: t.containerIp, containerPort: r.mapping.containerPort })
        }
      }
    } catch (err) {
      await Promise.all(held.map((h) => h.release()))
      throw err
    }
    return published
  }

  /** Holds one host port of the request's range (see hold). */
  private async reserve(r: PublishRequest, index: number, bindings: Binding[], taken: PortHolders, mine: PortHolders, budget: PortBudget): Promise<Reservation> {
    const proto = r.mapping.proto
    await yieldToLoop()
    if (!r.hostPorts) {
      budget.spend(r, index)
      return this.host.reservePort(proto, bindings, undefined)
    }
    const { from, to } = r.hostPorts
    let holder: string | undefined
    let busy: TsnetError | undefined
    let size = 1
    for (let port = from; port <= to;) {
      const chunk: number[] = []
      for (; port <= to && chunk.length < size; port++) {
        budget.spend(r, index)
        const h = taken.holder(proto, port, r.targets) ?? mine.holder(proto, port, r.targets)
        if (h === undefined) chunk.push(port)
        else holder ??= h
      }
      if (chunk.length === 0) continue
      try {
        return await this.host.reservePort(proto, bindings, chunk)
      } catch (err) {
        if (!(err instanceof TsnetError) || err.kind !== 'conflict') throw err
        busy = err
      }
      size = Math.min(size * 2, MAX_CHUNK)
      await yieldToLoop()
    }
    const range = from === to ? `${proto}/${from}` : `${proto}/${from}-${to}`
    if (busy === undefined) throw conflict(`host port ${range} is already published by ${holder}`)
    if (from === to) throw busy
    throw conflict(`host port ${range}: every port of the range is already in use on this host${holder ? ` or published by tsnet (the first by ${holder})` : ''}`)
  }

  /** Removes exactly what program added: the record first, then the rules and the held ports. */
  private async withdraw(e: EndpointRecord, log: Logger): Promise<void> {
    const { published: gone, ...rest } = e
    const doing = `unpublishing ports of endpoint ${short(e.id)}`
    await this.driver.saveEndpoint(rest, doing)
    try {
      await this.driver.applyEndpoint(e, rest, doing, log)
    } finally {
      // Also when the host change failed: a retry no longer knows the ports (the record forgot them).
      await this.driver.forgetFlows(gone ?? [], log)
    }
    for (const p of gone ?? []) log.info({ endpoint: e.id, proto: p.proto, hostPort: p.hostPort }, 'port unpublished')
  }

  revoke(req: EndpointRef, log: Logger) {
    const state = this.driver.state
    return this.driver.lock.run(req.NetworkID, async () => {
      const e = state.endpoints.get(req.EndpointID)
      if (!e || e.networkId !== req.NetworkID || !e.published?.length) return {}
      await this.withdraw(e, log)
      return {}
    })
  }
}

/** The ports other endpoints publish, by (protocol, port). */
function holdersOf(endpoints: Iterable<EndpointRecord>): PortHolders {
  const holders = new PortHolders(endpointOverlap)
  for (const o of endpoints) {
    for (const p of o.published ?? []) holders.add(p.proto, p.hostPort, { family: p.family, bind: bindAddressOf(p) }, `endpoint ${short(o.id)} of network ${short(o.networkId)}`)
  }
  return holders
}

/** What one publish may still spend (MAX_PORT_TRIES), and the refusal when it is spent. */
class PortBudget {
  private left = MAX_PORT_TRIES

  spend(r: PublishRequest, index: number): void {
    if (this.left-- > 0) return
    const m = r.mapping
    const ports = m.hostPort === 0 ? 'an ephemeral port' : m.hostPort === m.hostPortEnd ? `${m.hostPort}` : `${m.hostPort}-${m.hostPortEnd}`
    throw invalid(`publishing this port map would look at more than ${MAX_PORT_TRIES} host ports, the most tsnet looks at for one request (reached at port mapping #${index + 1}, ${m.proto} host ${ports} to container port ${m.containerPort}): publish fewer mappings or narrower host port ranges`)
  }
}
