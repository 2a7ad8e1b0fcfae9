/**
 * The host side of published ports: each host port held by a socket of tsnet's, and one DNAT
 * rule per mapping and address family, tagged with the endpoint. The network service keeps the
 * endpoint records (what is published); this keeps what holds it on the host.
 */
import type { Logger } from 'pino'
import { dnatRule, endpointTag } from '../core/edge-plan.js'
import { bindAddressOf, type PublishRequest } from '../core/ports.js'
import type { EndpointRecord, PublishedPort } from '../core/records.js'
import { conflict, withContext } from '../errors.js'
import type { Host } from '../host/host.js'
import type { Reservation } from '../host/port-reservations.js'

const short = (id: string) => id.slice(0, 12)
const isWildcard = (a: string) => a === '' || a === '0.0.0.0' || a === '::'

/** The DNAT rules of an endpoint's published ports. */
export const dnatRulesOf = (e: EndpointRecord) => (e.published ?? []).map((p) => ({ family: p.family, rule: dnatRule(e.id, p) }))

export class PortPublisher {
  /** Sockets holding published host ports, by endpoint. */
  private readonly held = new Map<string, Reservation[]>()

  constructor(private readonly host: Host) {}

  holds(endpointId: string): boolean {
    return this.held.has(endpointId)
  }

  /**
   * Holds a host port for each request and adds the DNAT rules. All or nothing: a port that
   * cannot be had undoes the others, and the error says whether the undo completed. `others`
   * are the endpoints whose published ports count as taken.
   */
  async publish(e: EndpointRecord, requests: PublishRequest[], others: Iterable<EndpointRecord>, log: Logger): Promise<PublishedPort[]> {
    const held: Reservation[] = []
    this.held.set(e.id, held)
    const published: PublishedPort[] = []
    const peers = [...others].filter((o) => o.id !== e.id)
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
      await this.host.addPortRules(published.map((p) => ({ family: p.family, rule: dnatRule(e.id, p) })), log)
    } catch (err) {
      throw withContext(err, `publishing ports of endpoint ${short(e.id)}${await this.rollback(e.id, log)}`)
    }
    return published
  }

  /** Undoes publish (it or its caller failed); the outcome, as the end of an error message. */
  async rollback(endpointId: string, log: Logger): Promise<string> {
    const held = this.held.get(endpointId) ?? []
    this.held.delete(endpointId)
    await Promise.all(held.map((h) => h.release()))
    return this.host.removePortRules((tag) => tag === endpointTag(endpointId), log, `endpoint ${short(endpointId)}`).then(
      () => ' (rolled back: nothing was published)',
      (err: unknown) => {
        log.error({ err, endpoint: endpointId }, 'rollback: DNAT rules not removed')
        return ' (rollback incomplete: see the tsnet log)'
      },
    )
  }

  /** Removes exactly what publish added: the DNAT rules, then the held ports (kept while a rule may still point at the container). */
  async withdraw(endpointId: string, log: Logger): Promise<void> {
    await this.host.removePortRules((tag) => tag === endpointTag(endpointId), log, `endpoint ${short(endpointId)}`)
    const held = this.held.get(endpointId) ?? []
    this.held.delete(endpointId)
    await Promise.all(held.map((h) => h.release()))
  }

  /** Lets every held port go, as the process's exit would (the DNAT rules stay for the next start). */
  async releaseAll(): Promise<void> {
    const all = [...this.held.values()].flat()
    this.held.clear()
    await Promise.all(all.map((h) => h.release()))
  }

  /** Puts the DNAT rules of ports already published back (a repeated Program). */
  reapply(e: EndpointRecord, log: Logger): Promise<void> {
    return this.host.addPortRules(dnatRulesOf(e), log)
  }

  /** Holds the stored host ports of an endpoint again (after a restart or reboot); all or none. */
  async rehold(e: EndpointRecord): Promise<void> {
    if (this.held.has(e.id)) return
    const held: Reservation[] = []
    const groups = new Map<string, PublishedPort[]>()
    for (const p of e.published ?? []) {
      const key = `${p.proto}/${p.hostPort}/${p.hostIp}`
      groups.set(key, [...(groups.get(key) ?? []), p])
    }
    try {
      for (const ports of groups.values()) {
        const first = ports[0] as PublishedPort
        held.push(await this.host.reservePort(first.proto, ports.map((p) => ({ family: p.family, address: bindAddressOf(p) })), [first.hostPort]))
      }
    } catch (err) {
      await Promise.all(held.map((h) => h.release()))
      throw err
    }
    this.held.set(e.id, held)
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
