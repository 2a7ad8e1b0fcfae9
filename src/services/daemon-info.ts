/** The running daemon's health in one answer (`/Tsnet.Status`): reconcile, garbage collection, Docker's API. */
import type { ReconcileStatus, Reconciler } from '../engine/reconciler.js'
import type { ClusterStatus, DaemonStatus, GcStatus, OverlayPeersStatus, ReconcilePass } from '../observe/daemon-status.js'
import type { DockerContact } from './docker-contact.js'
import type { GcService } from './gc-service.js'

export type DaemonFacts = Pick<DaemonStatus, 'version' | 'startedAt' | 'socket' | 'stateDir' | 'reconcileIntervalSec'> & {
  /** Why garbage collection is off when it is (no Docker API, interval 0); undefined: it runs. */
  gcOff?: string
}

const passOf = (s: ReconcileStatus | undefined): ReconcilePass | undefined => s && {
  at: s.at, kind: s.kind, changes: s.report.changes, failed: s.report.failed, missing: s.report.missing, foreign: s.report.foreign, ms: s.report.ms,
}

export class DaemonInfo {
  /** Set once the background work against Docker has started (main.ts). */
  gc: GcService | undefined
  contact: DockerContact | undefined
  /** The swarm's hosts (services/swarm-service.ts), set by openServices. */
  overlay: (() => OverlayPeersStatus) | undefined
  /** Cluster networks on etcd (services/cluster-service.ts), set by serve. */
  cluster: (() => ClusterStatus) | undefined

  constructor(private readonly facts: DaemonFacts, private readonly reconciler: Reconciler) {}

  status(): DaemonStatus {
    const f = this.facts
    const gc: GcStatus = this.gc?.status() ?? (f.gcOff !== undefined ? { state: 'off', reason: f.gcOff } : { state: 'starting', since: f.startedAt })
    const reconcile = passOf(this.reconciler.last)
    const lastRepair = passOf(this.reconciler.lastRepair)
    return {
      pid: process.pid,
      version: f.version,
      startedAt: f.startedAt,
      socket: f.socket,
      stateDir: f.stateDir,
      reconcileIntervalSec: f.reconcileIntervalSec,
      ...(reconcile ? { reconcile } : {}),
      ...(lastRepair ? { lastRepair } : {}),
      gc,
      docker: this.contact?.status() ?? { state: 'off' },
      ...(this.overlay ? { overlay: this.overlay() } : {}),
      ...(this.cluster ? { cluster: this.cluster() } : {}),
    }
  }
}
