/**
 * Host liveness on the cluster store, and the one elected tsnet that frees dead hosts' addresses.
 *
 * - `cluster-hosts/<hostId>`: this host's registration, attached to its lease (TTL at most 10 s;
 *   the store keeps it alive). When the lease is lost (etcd unreachable past the TTL), a new one is
 *   granted and the registration written again as soon as the store answers.
 * - `cluster-leader/reclaim`: created if absent, attached to the holder's lease. Its holder is the
 *   elected tsnet; when that lease ends, etcd deletes the key and the next campaign wins it. Every
 *   write of a sweep is conditioned on this key's revision, so a deposed leader frees nothing.
 * - `cluster-gone/<hostId>`: see cluster-reclaim.ts.
 */
import type { Logger } from 'pino'
import { checkHostId } from '../core/cluster-spec.js'
import { errorMessage, invalid, quote } from '../errors.js'
import type { Lease, Revision, Store } from '../store/store.js'
import { type SweepReport, sweepDeadHosts } from './cluster-reclaim.js'
import { RepeatedFailure } from '../util/repeated-failure.js'

export const hostKey = (hostId: string) => `cluster-hosts/${hostId}`
export const LEADER_KEY = 'cluster-leader/reclaim'

/** The Store promise for a host's lease: etcd removes a dead host's keys within this, plus a keepalive's slack. */
export const MAX_HOST_TTL_SECONDS = 10

export interface LivenessSettings {
  hostId: string
  /** 1 to 10 seconds (default 10). */
  ttlSeconds?: number
  /** Published with the registration (VTEP address, underlay MTU...). */
  info?: Record<string, unknown>
  /** Pause before registering again after the store failed (default 1000 ms). */
  retryMs?: number
  log?: Logger
  /** Called after each registration (the first, and each after a lost lease): keys riding the lease can be written again. */
  onRegistered?: () => void
}

export class ClusterLiveness {
  readonly hostId: string
  private readonly ttlSeconds: number
  private lease: Lease | undefined
  private leaderRev: Revision | undefined
  private stopped = false
  private registered: Promise<void> | undefined
  private settleFirst: () => void = () => undefined
  private timer: NodeJS.Timeout | undefined
  private readonly registerFailures: RepeatedFailure

  constructor(private readonly store: Store, private settings: LivenessSettings) {
    this.hostId = checkHostId(settings.hostId)
    this.registerFailures = new RepeatedFailure(settings.log, 'registering this host in the cluster failed; trying again')
    const ttl = settings.ttlSeconds ?? MAX_HOST_TTL_SECONDS
    if (!Number.isInteger(ttl) || ttl < 1 || ttl > MAX_HOST_TTL_SECONDS) throw invalid(`a host lease lives 1 to ${MAX_HOST_TTL_SECONDS} seconds, not ${quote(ttl)}`)
    this.ttlSeconds = ttl
  }

  /** Registers this host and keeps it registered until stop(); resolves once first registered. */
  start(): Promise<void> {
    if (!this.registered) {
      this.registered = new Promise((resolve) => { this.settleFirst = resolve })
      void this.keepRegistered()
    }
    return this.registered
  }

  /** What the next registration publishes besides the host ID (its VTEP address, its underlay MTU). */
  setInfo(info: Record<string, unknown>): void {
    this.settings = { ...this.settings, info }
  }

  /** The lease this host's keys ride on now (undefined while none is live). */
  currentLease(): Lease | undefined {
    return this.lease
  }

  get isLeader(): boolean {
    return this.leaderRev !== undefined
  }

  /**
   * Tries to be (or checks that this host still is) the elected tsnet: creates the leader key
   * under this host's lease if nobody holds it. False while this host is not registered.
   */
  async campaign(tries = 3): Promise<boolean> {
    const lease = this.lease
    if (!lease || this.stopped) return (this.leaderRev = undefined, false)
    const held = await this.store.get<{ hostId: string; lease: string }>(LEADER_KEY)
    if (held || tries <= 0) {
      const mine = held !== undefined && held.value.hostId === this.hostId && held.value.lease === lease.id
      if (mine && this.leaderRev === undefined) this.settings.log?.info({ hostId: this.hostId }, 'this tsnet is the elected one: it frees the addresses of dead hosts')
      this.leaderRev = held && mine ? held.rev : undefined
      return mine
    }
    const { ok, rev } = await this.store.txn([{ key: LEADER_KEY, absent: true }], [{ put: LEADER_KEY, value: { hostId: this.hostId, lease: lease.id, since: new Date().toISOString() }, lease: lease.id }])
    if (!ok) return this.campaign(tries - 1) // someone else won just now (or our retried create did): read who
    this.leaderRev = rev
    this.settings.log?.info({ hostId: this.hostId }, 'this tsnet is the elected one: it frees the addresses of dead hosts')
    return true
  }

  /**
   * One sweep, on the elected tsnet only (others return undefined): frees the addresses of hosts
   * whose registration has been gone for `graceMs` or longer (cluster-reclaim.ts).
   */
  async reclaimDead(graceMs: number, nowMs: number = Date.now()): Promise<SweepReport | undefined> {
    if (!(await this.campaign()) || this.leaderRev === undefined) return undefined
    const report = await sweepDeadHosts(this.store, { leaderKey: LEADER_KEY, leaderRev: this.leaderRev, hostId: this.hostId, hostKey }, graceMs, nowMs)
    if (report.deposed) this.leaderRev = undefined
    for (const r of report.reclaimed) this.settings.log?.warn({ hostId: r.hostId, addresses: r.addresses, graceMs }, 'a dead host\'s addresses were freed: its registration was gone for the whole grace period')
    return report
  }

  /** Campaigns and sweeps every `everyMs` until stop(); failures are logged and the next round tries again. */
  runReclaim(everyMs: number, graceMs: number): void {
    const round = async () => {
      try {
        await this.reclaimDead(graceMs)
      } catch (err) {
        this.settings.log?.warn({ err: errorMessage(err) }, 'reclaiming dead hosts\' addresses failed; trying again next round')
      }
      if (!this.stopped) this.timer = setTimeout(() => void round(), everyMs)
    }
    this.timer = setTimeout(() => void round(), 0)
  }

  /** Stops keepalives and sweeps; with `revoke`, also ends the lease (its registration and leadership go at once). */
  async stop(revoke = false): Promise<void> {
    this.stopped = true
    clearTimeout(this.timer)
    this.leaderRev = undefined
    this.settleFirst()
    if (revoke) await this.lease?.revoke()
    this.lease = undefined
  }

  private async keepRegistered(): Promise<void> {
    while (!this.stopped) {
      try {
        const lease = await this.store.lease(this.ttlSeconds)
        if (this.stopped) return void (await lease.revoke().catch(() => undefined))
        const value = { hostId: this.hostId, registeredAt: new Date().toISOString(), ...(this.settings.info ?? {}) }
        await this.store.txn([], [{ put: hostKey(this.hostId), value, lease: lease.id }])
        this.lease = lease
        this.registerFailures.succeeded('registering this host in the cluster works again')
        this.settings.log?.info({ hostId: this.hostId, lease: lease.id, ttlSeconds: this.ttlSeconds }, 'host registered in the cluster')
        this.settleFirst()
        this.settings.onRegistered?.()
        await lease.lost
        if (this.lease === lease) this.lease = undefined
        this.leaderRev = undefined
        this.settings.log?.warn({ hostId: this.hostId }, 'host lease lost (the cluster store did not answer in time): registering again')
      } catch (err) {
        if (this.stopped) return
        this.registerFailures.failed(errorMessage(err))
        await new Promise((r) => setTimeout(r, this.settings.retryMs ?? 1000))
      }
    }
  }
}
