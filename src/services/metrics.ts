/**
 * Prometheus metrics (prom-client), each on its own registry so tests and a second daemon in one
 * process never share counters. Events are counted where they happen (Docker calls, host changes,
 * reconcile and GC passes); sizes (networks, endpoints, ports, pool usage) are read at scrape time.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'
import { parseCidr, prefixSize } from '../core/addr.js'
import type { Op } from '../core/objects.js'
import type { ReconcileReport } from '../core/reconcile-report.js'
import type { EndpointRecord, LeaseRecord, NetworkRecord, PoolRecord } from '../core/records.js'
import type { GcOutcome } from './gc-service.js'

/** What the gauges are read from at scrape time. */
export interface MetricsSource {
  networks(): NetworkRecord[]
  endpoints(): EndpointRecord[]
  pools(): Array<PoolRecord & { leases: LeaseRecord[] }>
  /** Docker's name for a network ID, when known. */
  nameOf(id: string): string | undefined
  /** The other hosts of the swarm tsnet knows (overlay networks); absent: none. */
  overlayPeers?(): number
}

const SECONDS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]

export class Metrics {
  readonly registry = new Registry()
  private readonly requestSeconds = new Histogram({ name: 'tsnet_request_duration_seconds', help: 'Time to answer one plugin API call, by call (e.g. NetworkDriver.Join)', labelNames: ['call'], buckets: SECONDS, registers: [this.registry] })
  private readonly requestErrors = new Counter({ name: 'tsnet_request_errors_total', help: 'Plugin API calls answered with {"Err"}, by call and error kind', labelNames: ['call', 'kind'], registers: [this.registry] })
  private readonly hostSeconds = new Histogram({ name: 'tsnet_host_apply_duration_seconds', help: 'Time to apply one batch of host changes', buckets: SECONDS, registers: [this.registry] })
  private readonly hostChanges = new Counter({ name: 'tsnet_host_changes_total', help: 'Host changes tsnet made or tried (a failed batch counts what it held), by object kind (link, addr, setEntry, dnat, ...) and operation', labelNames: ['kind', 'op'], registers: [this.registry] })
  private readonly hostErrors = new Counter({ name: 'tsnet_host_apply_errors_total', help: 'Batches of host changes that failed', registers: [this.registry] })
  private readonly reconcileRuns = new Counter({ name: 'tsnet_reconcile_runs_total', help: 'Reconcile passes, by what started them (boot, periodic, event, request)', labelNames: ['trigger'], registers: [this.registry] })
  private readonly reconcileRepairs = new Counter({ name: 'tsnet_reconcile_repairs_total', help: 'Changes reconcile made to put the host back as tsnet wants it', registers: [this.registry] })
  private readonly reconcileFailures = new Counter({ name: 'tsnet_reconcile_failures_total', help: 'Changes reconcile could not make', registers: [this.registry] })
  private readonly reconcileDrift = new Gauge({ name: 'tsnet_reconcile_drift_objects', help: 'What the last reconcile pass found out of place, by state (repaired, failed, missing, foreign)', labelNames: ['state'], registers: [this.registry] })
  private readonly reconcileSeconds = new Histogram({ name: 'tsnet_reconcile_duration_seconds', help: 'Time of one reconcile pass', buckets: SECONDS, registers: [this.registry] })
  private readonly gcRuns = new Counter({ name: 'tsnet_gc_runs_total', help: 'Garbage collection passes, by result (ran, waiting)', labelNames: ['result'], registers: [this.registry] })
  private readonly peerChanges = new Counter({ name: 'tsnet_overlay_peer_changes_total', help: 'Hosts of the swarm added to or removed from the peer book (overlay networks), by change (added, removed)', labelNames: ['change'], registers: [this.registry] })
  private readonly gcCollected = new Counter({ name: 'tsnet_gc_collected_total', help: 'Records garbage collection removed because Docker no longer knows them, by kind', labelNames: ['kind'], registers: [this.registry] })

  constructor(source: MetricsSource, opts: { process?: boolean } = {}) {
    if (opts.process !== false) collectDefaultMetrics({ register: this.registry })
    const r = [this.registry]
    new Gauge({ name: 'tsnet_networks', help: 'tsnet networks in the store', registers: r, collect() { this.set(source.networks().length) } })
    new Gauge({ name: 'tsnet_endpoints', help: 'tsnet endpoints in the store, by whether a container has joined', labelNames: ['joined'], registers: r, collect() {
      const all = source.endpoints()
      const joined = all.filter((e) => e.joined).length
      this.set({ joined: 'true' }, joined)
      this.set({ joined: 'false' }, all.length - joined)
    } })
    new Gauge({ name: 'tsnet_published_ports', help: 'Host ports published to containers, by protocol', labelNames: ['proto'], registers: r, collect() {
      this.reset()
      for (const proto of ['tcp', 'udp', 'sctp']) this.set({ proto }, 0)
      for (const e of source.endpoints()) for (const p of e.published ?? []) this.inc({ proto: p.proto })
    } })
    new Gauge({ name: 'tsnet_overlay_peers', help: 'Other hosts of the swarm tsnet knows and floods overlay traffic to', registers: r, collect() { this.set(source.overlayPeers?.() ?? 0) } })
    const usage = (g: Gauge, value: (p: PoolRecord & { leases: LeaseRecord[] }) => number) => {
      g.reset()
      const nets = source.networks()
      for (const p of source.pools()) {
        const n = nets.find((x) => [...x.ipv4Subnets, ...x.ipv6Subnets].some((s) => s.pool === p.pool))
        g.set({ pool: p.pool, network: n ? (source.nameOf(n.id) ?? n.id.slice(0, 12)) : '' }, value(p))
      }
    }
    new Gauge({ name: 'tsnet_ipam_pool_addresses', help: 'Addresses in each IPAM pool (its size), by pool and network', labelNames: ['pool', 'network'], registers: r, collect() {
      usage(this, (p) => { const c = parseCidr(p.subPool ?? p.pool); return c ? Number(prefixSize(c.prefix)) : 0 })
    } })
    new Gauge({ name: 'tsnet_ipam_pool_leased_addresses', help: 'Addresses leased in each IPAM pool (gateways and containers), by pool and network', labelNames: ['pool', 'network'], registers: r, collect() {
      usage(this, (p) => p.leases.length)
    } })
  }

  /** One plugin API call answered; `errorKind` when it was refused or failed. */
  request(call: string, seconds: number, errorKind?: string): void {
    this.requestSeconds.observe({ call }, seconds)
    if (errorKind !== undefined) this.requestErrors.inc({ call, kind: errorKind })
  }

  hostApplied(ops: readonly Op[], seconds: number, failed: boolean): void {
    this.hostSeconds.observe(seconds)
    if (failed) this.hostErrors.inc()
    for (const o of ops) this.hostChanges.inc({ kind: o.obj.kind, op: o.op })
  }

  reconciled(trigger: string, r: ReconcileReport): void {
    this.reconcileRuns.inc({ trigger })
    this.reconcileRepairs.inc(r.changes.length)
    this.reconcileFailures.inc(r.failed.length)
    this.reconcileSeconds.observe(r.ms / 1000)
    for (const [state, n] of [['repaired', r.changes.length], ['failed', r.failed.length], ['missing', r.missing.length], ['foreign', r.foreign.length]] as const) this.reconcileDrift.set({ state }, n)
  }

  gcPassed(o: GcOutcome): void {
    this.gcRuns.inc({ result: o.ran ? 'ran' : 'waiting' })
    if (o.ran) for (const s of o.collected) this.gcCollected.inc({ kind: s.kind })
  }

  /** The peer book changed: `added` hosts came, `removed` went. */
  peersChanged(added: number, removed: number): void {
    if (added > 0) this.peerChanges.inc({ change: 'added' }, added)
    if (removed > 0) this.peerChanges.inc({ change: 'removed' }, removed)
  }

  text(): Promise<string> {
    return this.registry.metrics()
  }
}
