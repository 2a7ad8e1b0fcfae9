/**
 * The host side of published ports: each host port held by a socket of tsnet's, and one DNAT
 * rule per mapping and address family, tagged with the endpoint. The network service keeps the
 * endpoint records (what is published); this keeps what holds it on the host.
 */
import type { Logger } from 'pino'
import { dnatRule, endpointTag } from '../core/edge-plan.js'
import {
  MAX_PORT_TRIES, PortHolders, bindAddressOf, endpointOverlap, kernelOverlap, type PublishRequest,
} from '../core/ports.js'
import type { EndpointRecord, PublishedPort } from '../core/records.js'
import { TsnetError, conflict, invalid, withContext } from '../errors.js'
import type { Host } from '../host/host.js'
import type { Binding, Reservation } from '../host/port-reservations.js'
import { yieldToLoop } from '../util/yield.js'

const short = (id: string) => id.slice(0, 12)
/**
 * Free host ports of a range are handed to the host in growing chunks, the loop yielding in
 * between: the first free port usually binds, and a range in use elsewhere is still walked fast.
 */
const MAX_CHUNK = 32

/** The ports other endpoints publish, by (protocol, port). */
function holdersOf(endpoints: Iterable<EndpointRecord>, except: string): PortHolders {
  const holders = new PortHolders(endpointOverlap)
  for (const o of endpoints) {
    if (o.id === except) continue
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
    const taken = holdersOf(others, e.id)
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
      await this.host.addPortRules(published.map((p) => ({ family: p.family, rule: dnatRule(e.id, p) })), log)
    } catch (err) {
      throw withContext(err, `publishing ports of endpoint ${short(e.id)}${await this.rollback(e.id, log)}`)
    }
    return published
  }

  /**
   * Holds one host port of the request's range: ports other endpoints or earlier mappings hold
   * are skipped by lookup, the rest are tried on the host in order, a chunk at a time, the event
   * loop running between chunks (and before each mapping, so thousands of single mappings do
   * not hold the daemon either). Every port looked at is spent from the request's budget.
   */
  private async reserve(r: PublishRequest, index: number, bindings: Binding[], taken: PortHolders, mine: PortHolders, budget: PortBudget): Promise<Reservation> {
    const proto = r.mapping.proto
    await yieldToLoop()
    if (!r.hostPorts) {
      budget.spend(r, index)
      return this.host.reservePort(proto, bindings, undefined)
    }
    const { from, to } = r.hostPorts
    const wanted = r.targets
    let holder: string | undefined
    let busy: TsnetError | undefined
    let size = 1
    for (let port = from; port <= to;) {
      const chunk: number[] = []
      for (; port <= to && chunk.length < size; port++) {
        budget.spend(r, index)
        const h = taken.holder(proto, port, wanted) ?? mine.holder(proto, port, wanted)
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
