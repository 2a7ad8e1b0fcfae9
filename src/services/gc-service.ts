/**
 * Garbage collection against Docker's view: endpoints, networks, leases and pools whose
 * DeleteEndpoint/DeleteNetwork/Release* never reached tsnet (it was down, or Docker gave up).
 * Runs in the background only. It refuses to collect against an engine other than the one it
 * recorded, and does nothing while Docker does not answer.
 */
import type { Logger } from 'pino'
import { confirm, createdAtOf, findUnexplained, needsInspection, olderThan, staleKey, type Stale } from '../core/gc-plan.js'
import type { DockerView } from '../docker/docker-view.js'
import { type Clock, systemClock } from '../engine/clock.js'
import { errorMessage } from '../errors.js'
import type { GcStatus } from '../observe/daemon-status.js'
import type { Store } from '../store/store.js'
import type { IpamService } from './ipam-service.js'
import type { NetworkDriver } from './network-driver.js'

export interface GcOptions {
  intervalMs: number
  /** A record must stay unexplained this long (across two passes) before it goes. */
  minAgeMs: number
}

export type GcOutcome =
  | { ran: false; reason: string }
  | { ran: true; unexplained: number; collected: Stale[] }

/**
 * `tsnet doctor --fix` collects at once what Docker does not explain, instead of waiting for a
 * second pass, but only records at least this old: nothing Docker is still creating is that young.
 */
export const ASKED_MIN_AGE_MS = 60_000

export class GcService {
  private suspects = new Map<string, number>()
  private engineId: string | undefined
  private timer: NodeJS.Timeout | undefined
  private running: Promise<GcOutcome> | undefined
  private state: GcStatus
  /** Told of every pass that was not a dry run (metrics). */
  onPass: ((o: GcOutcome) => void) | undefined

  constructor(
    private readonly store: Store,
    private readonly docker: DockerView,
    private readonly network: NetworkDriver,
    private readonly ipam: IpamService,
    private readonly options: GcOptions,
    private readonly log: Logger,
    private readonly clock: Clock = systemClock,
  ) {
    this.state = { state: 'starting', since: clock.iso() }
  }

  /** Running, waiting for Docker (since when) or refused (why), for `tsnet status`. */
  status(): GcStatus {
    return this.state
  }

  private become(next: GcStatus): void {
    const prev = this.state
    // "since" is when the state began: another pass, or another reason to wait, continues it.
    const continues = prev.state === next.state && (next.state !== 'refused' || (prev.state === 'refused' && prev.reason === next.reason))
    this.state = continues && 'since' in prev && 'since' in next ? { ...next, since: prev.since } : next
  }

  async load(): Promise<void> {
    this.engineId = (await this.store.get<{ id: string }>('meta/engine'))?.value.id
  }

  /** One pass; concurrent callers share it. */
  pass(): Promise<GcOutcome> {
    this.running ??= this.runPass().then((o) => this.told(o)).finally(() => { this.running = undefined })
    return this.running
  }

  /**
   * One pass now, asked for by an operator (`tsnet doctor --fix`): what Docker does not explain
   * is collected at once when its record is at least ASKED_MIN_AGE_MS old. A dry run only says what.
   */
  async collectNow(dryRun: boolean): Promise<GcOutcome> {
    while (this.running) await this.running.catch(() => undefined)
    const asked = this.runPass({ dryRun }).then((o) => (dryRun ? o : this.told(o)))
    this.running = asked.finally(() => { this.running = undefined })
    return this.running
  }

  private told(o: GcOutcome): GcOutcome {
    this.onPass?.(o)
    return o
  }

  private async runPass(asked?: { dryRun: boolean }): Promise<GcOutcome> {
    const view = { ...this.network.snapshot(), pools: this.ipam.poolsWithLeases() }
    let docker
    try {
      docker = await this.docker.snapshot(needsInspection(view))
    } catch (err) {
      this.log.debug({ gc: 'skipped', reason: errorMessage(err) }, 'garbage collection waits for Docker')
      const reason = `Docker does not answer: ${errorMessage(err)}`
      this.become({ state: 'waiting', since: this.clock.iso(), reason })
      return { ran: false, reason }
    }
    if (this.engineId === undefined) {
      // A store that already holds networks is pinned only to an engine that knows one of them:
      // a wrong socket must never make every network look deleted.
      const known = new Set(docker.networks.map((n) => n.id))
      if (view.networks.length > 0 && !view.networks.some((n) => known.has(n.id))) {
        const reason = `the engine at the Docker host (${docker.engineId}) knows none of tsnet's ${view.networks.length} networks; is --docker-host right?`
        this.log.error({ gc: 'refused', seen: docker.engineId }, `garbage collection refused: ${reason}`)
        this.become({ state: 'refused', since: this.clock.iso(), reason })
        return { ran: false, reason }
      }
      if (!asked?.dryRun) {
        await this.store.put('meta', 'engine', { id: docker.engineId })
        this.engineId = docker.engineId
        this.log.info({ engine: docker.engineId }, 'serving this Docker engine')
      }
    } else if (this.engineId !== docker.engineId) {
      const reason = `the store belongs to Docker engine ${this.engineId}, but the engine at the Docker host is ${docker.engineId}`
      this.log.error({ gc: 'refused', stored: this.engineId, seen: docker.engineId }, `garbage collection refused: ${reason}`)
      this.become({ state: 'refused', since: this.clock.iso(), reason })
      return { ran: false, reason }
    }
    // The store may have moved on while Docker answered: judge against a fresh view of it.
    const fresh = { ...this.network.snapshot(), pools: this.ipam.poolsWithLeases() }
    const unexplained = findUnexplained(fresh, docker)
    const now = this.clock.now()
    let collect: Stale[]
    if (asked) {
      collect = unexplained.filter((s) => olderThan(createdAtOf(s, fresh), now, ASKED_MIN_AGE_MS))
      if (asked.dryRun) return { ran: true, unexplained: unexplained.length, collected: collect }
    } else {
      const confirmed = confirm(unexplained, this.suspects, now, this.options.minAgeMs)
      this.suspects = confirmed.suspects
      collect = confirmed.collect
    }
    const collected: Stale[] = []
    for (const s of order(collect)) {
      try {
        await this.collect(s)
        this.suspects.delete(staleKey(s))
        collected.push(s)
      } catch (err) {
        this.log.error({ gc: 'failed', item: s, err }, 'garbage collection could not remove an item')
      }
    }
    if (collected.length) this.log.info({ gc: 'collected', items: collected, ...(asked ? { asked: true } : {}) }, 'removed what Docker no longer knows')
    this.become({ state: 'running', since: this.clock.iso(), lastPass: { at: this.clock.iso(), unexplained: unexplained.length, collected: collected.length } })
    return { ran: true, unexplained: unexplained.length, collected }
  }

  private async collect(s: Stale): Promise<void> {
    const log = this.log.child({ gc: staleKey(s) })
    switch (s.kind) {
      case 'endpoint': await this.network.deleteEndpoint({ NetworkID: s.networkId, EndpointID: s.endpointId }, log); break
      case 'network': await this.network.deleteNetwork({ NetworkID: s.networkId }, log); break
      case 'lease': await this.ipam.releaseStaleAddress(s.poolId, s.address, s.createdAt, log); break
      case 'pool': await this.ipam.releaseStalePool(s.poolId, s.createdAt, log); break
    }
  }

  /** First pass as soon as Docker answers, then every interval. */
  start(): void {
    const tick = async () => {
      const outcome = await this.pass().catch((err) => ({ ran: false as const, reason: errorMessage(err) }))
      // Until Docker has answered once, look again soon; then keep the configured pace.
      const delay = outcome.ran ? this.options.intervalMs : Math.min(this.options.intervalMs, 2000)
      this.timer = setTimeout(() => void tick(), delay)
      this.timer.unref()
    }
    this.timer = setTimeout(() => void tick(), 0)
    this.timer.unref()
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer)
  }
}

/** Endpoints before networks, leases before pools: each removal finds its parent still there. */
function order(items: Stale[]): Stale[] {
  const rank = { endpoint: 0, network: 1, lease: 2, pool: 3 } as const
  return [...items].sort((a, b) => rank[a.kind] - rank[b.kind])
}
