/**
 * When the whole host is compared with what tsnet wants: at boot (a reboot or a crash left the
 * kernel behind the store, or ahead of it), every interval (a firewall reload flushed tsnet's
 * chains, someone deleted a bridge), and soon after the kernel reports that a tsnet link went.
 * Each pass is the engine's reconcile; every repair is logged with the object it changed.
 */
import type { Logger } from 'pino'
import type { HostObject } from '../core/objects.js'
import type { Clock } from './clock.js'
import type { Engine, ReconcileReport } from './engine.js'

export interface ReconcileStatus {
  /** When the last pass ended (ISO), and what it found and did. */
  at: string
  /** `request`: asked for on the socket (`tsnet doctor --fix`). */
  kind: 'boot' | 'periodic' | 'event' | 'request'
  report: ReconcileReport
}

/** A link event arrives in a burst (a bridge takes its ports along): one pass a moment later covers it. */
const EVENT_DELAY_MS = 200

export class Reconciler {
  private timer: NodeJS.Timeout | undefined
  private soon: NodeJS.Timeout | undefined
  private running: Promise<ReconcileReport> | undefined
  /** The missing objects last logged: a container's lost veth stays missing until Docker removes it, say so once. */
  private missingLogged = ''
  last: ReconcileStatus | undefined
  /** The last pass that changed something on the host (`tsnet status` shows what was repaired). */
  lastRepair: ReconcileStatus | undefined
  /** Told of every pass that was not a dry run (metrics). */
  onPass: ((kind: ReconcileStatus['kind'], report: ReconcileReport) => void) | undefined

  constructor(
    private readonly engine: Engine,
    private readonly everything: () => Map<string, HostObject[] | undefined>,
    private readonly clock: Clock,
    private readonly log: Logger,
  ) {}

  /** Boot: the index from every record, then one pass. Failures are logged per object; the rest carry on. */
  async boot(): Promise<ReconcileReport> {
    this.engine.seed(this.everything())
    return this.pass('boot')
  }

  /** One pass; concurrent callers share it. */
  pass(kind: ReconcileStatus['kind'], dryRun = false): Promise<ReconcileReport> {
    if (dryRun) return this.engine.reconcile({ dryRun: true, log: this.log })
    this.running ??= this.engine.reconcile({ log: this.log }).then((report) => {
      this.last = { at: this.clock.iso(), kind, report }
      if (report.changes.length > 0) this.lastRepair = this.last
      this.record(kind, report)
      this.onPass?.(kind, report)
      return report
    }).finally(() => { this.running = undefined })
    return this.running
  }

  private record(kind: ReconcileStatus['kind'], r: ReconcileReport): void {
    const summary = { reconcile: kind, changes: r.changes.length, failed: r.failed.length, missing: r.missing.length, foreign: r.foreign.length, ms: r.ms }
    if (kind === 'boot') this.log.info(summary, 'boot reconcile done')
    if (r.changes.length > 0 && kind !== 'boot') this.log.warn({ ...summary, repaired: r.changes }, 'reconcile repaired drift on the host')
    if (r.failed.length > 0) this.log.error({ ...summary, failedChanges: r.failed }, 'reconcile could not fix some objects')
    if (r.foreign.length > 0) this.log.warn({ ...summary, foreignObjects: r.foreign }, 'objects tsnet wants are held by something else')
    const missing = r.missing.join('\n')
    if (missing !== '' && missing !== this.missingLogged) this.log.warn({ ...summary, missingObjects: r.missing }, 'wanted objects are gone and are not made again')
    this.missingLogged = missing
  }

  /** Every `intervalMs` (0: never). */
  start(intervalMs: number): void {
    if (intervalMs <= 0) return
    const tick = () => {
      void this.pass('periodic').catch((err: unknown) => this.log.error({ err }, 'reconcile failed')).finally(() => {
        this.timer = setTimeout(tick, intervalMs)
        this.timer.unref()
      })
    }
    this.timer = setTimeout(tick, intervalMs)
    this.timer.unref()
  }

  /** A pass shortly (the kernel reported a tsnet link deleted or renamed). */
  trigger(): void {
    if (this.soon) return
    this.soon = setTimeout(() => {
      this.soon = undefined
      void this.pass('event').catch((err: unknown) => this.log.error({ err }, 'reconcile failed'))
    }, EVENT_DELAY_MS)
    this.soon.unref()
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer)
    if (this.soon) clearTimeout(this.soon)
  }
}
