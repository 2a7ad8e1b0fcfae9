/**
 * Published ports: ProgramExternalConnectivity and RevokeExternalConnectivity. Programming
 * chooses and holds a host port per mapping (a socket of tsnet's, so nothing else takes it),
 * then records them on the endpoint; the endpoint's objects (a DNAT rule per port and family,
 * the held ports) follow through the engine like everything else.
 */
import type { Logger } from 'pino'
import { bindAddressOf, parseExposedPorts, parsePortMap, planPublish, type PublishRequest } from '../core/ports.js'
import { OPT } from '../core/docker-keys.js'
import type { EndpointRecord, PublishedPort } from '../core/records.js'
import { conflict, invalid, withContext } from '../errors.js'
import type { Host } from '../host/host.js'
import type { Reservation } from '../host/port-reservations.js'
import { modeOf } from '../modes/index.js'
import type { ConnectivityRequest, EndpointRef } from '../protocol/types.js'
import type { NetworkDriver } from './network-driver.js'
import { short } from './network-state.js'

const isWildcard = (a: string) => a === '' || a === '0.0.0.0' || a === '::'

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
      const mappings = parsePortMap(options[OPT.portMap])
      parseExposedPorts(options[OPT.exposedPorts])
      if (n.internal || !modeOf(n).supports.publish) {
        if (mappings.some((m) => m.hostPort !== 0 || m.hostIp !== '')) {
          throw invalid(n.internal ? `network ${short(n.id)} is internal: it publishes no ports` : `a ${n.mode} network publishes no ports: host netfilter never sees its traffic`)
        }
        return {}
      }
      // Most containers publish nothing: nothing to hold, program or write.
      if (mappings.length === 0 && !e.published?.length) return {}
      const requests = planPublish(e, mappings)
      const doing = `publishing ports of endpoint ${short(e.id)}`
      if (e.published && JSON.stringify(e.portMappings) === JSON.stringify(mappings)) {
        // Repeated (also after a restart): make sure the rules and holds are there.
        await this.driver.updateEndpoint(e, doing, log)
        return {}
      }
      if (e.published?.length) await this.withdraw(e, log)
      const current = state.endpoints.get(e.id) ?? e
      const peers = [...state.endpoints.values()].filter((o) => o.id !== e.id)
      const published = await this.hold(requests, peers).catch((err: unknown) => {
        throw withContext(err, `${doing} (rolled back: the host is as it was)`)
      })
      // The holds are on the host now; if this change fails, the engine's undo releases them.
      await this.driver.updateEndpoint({ ...current, portMappings: mappings, published }, doing, log)
      for (const p of published) {
        log.info({ endpoint: e.id, network: n.id, proto: p.proto, hostIp: bindAddressOf(p), hostPort: p.hostPort, to: `${p.containerIp}:${p.containerPort}` }, 'port published')
      }
      return {}
    })
  }

  /** Holds a port for each request: all or none. */
  private async hold(requests: PublishRequest[], peers: EndpointRecord[]): Promise<PublishedPort[]> {
    const held: Reservation[] = []
    const published: PublishedPort[] = []
    try {
      for (const r of requests) {
        const binds = r.targets.map((t) => t.bind)
        const candidates = r.candidates?.filter((port) => !publishedBy(peers, r.mapping.proto, port, binds))
        if (candidates && candidates.length === 0) {
          const [first, last] = [r.candidates?.[0], r.candidates?.[r.candidates.length - 1]]
          const other = publishedBy(peers, r.mapping.proto, first ?? 0, binds)
          throw conflict(`host port ${r.mapping.proto}/${first === last ? first : `${first}-${last}`} is already published by ${other}`)
        }
        const reservation = await this.host.reservePort(r.mapping.proto, r.targets.map((t) => ({ family: t.family, address: t.bind })), candidates)
        held.push(reservation)
        for (const t of r.targets) {
          published.push({ family: t.family, proto: r.mapping.proto, hostIp: r.mapping.hostIp, hostPort: reservation.port, containerIp: t.containerIp, containerPort: r.mapping.containerPort })
        }
      }
    } catch (err) {
      await Promise.all(held.map((h) => h.release()))
      throw err
    }
    return published
  }

  /** Removes exactly what program added: the record first, then the rules and the held ports. */
  private async withdraw(e: EndpointRecord, log: Logger): Promise<void> {
    const { published: gone, ...rest } = e
    await this.driver.updateEndpoint(rest, `unpublishing ports of endpoint ${short(e.id)}`, log, true)
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

/** Names the endpoint among `peers` that publishes `proto/port` on one of `binds`, if one does. */
function publishedBy(peers: EndpointRecord[], proto: string, port: number, binds: string[]): string | undefined {
  for (const other of peers) {
    const hit = other.published?.find((p) => p.proto === proto && p.hostPort === port && binds.some((b) => isWildcard(b) || isWildcard(p.hostIp) || b === p.hostIp))
    if (hit) return `endpoint ${short(other.id)} of network ${short(other.networkId)}`
  }
  return undefined
}
