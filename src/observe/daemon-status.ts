/**
 * What only the running daemon knows about its health, as `/Tsnet.Status` answers it and
 * `tsnet status` shows it. Plain data: the daemon fills it, the commands format it.
 */
import type { ReconcileReport } from '../core/reconcile-report.js'
import type { PeerEntry } from '../modes/overlay-peers.js'

export interface ReconcilePass extends ReconcileReport {
  /** When the pass ended (ISO). */
  at: string
  kind: 'boot' | 'periodic' | 'event' | 'request'
}

export type GcStatus =
  /** No --docker-host, or --gc-interval 0. */
  | { state: 'off'; reason: string }
  /** Started, no pass has ended yet. */
  | { state: 'starting'; since: string }
  | { state: 'running'; since: string; lastPass: { at: string; unexplained: number; collected: number } }
  | { state: 'waiting'; since: string; reason: string }
  | { state: 'refused'; since: string; reason: string }

export type DockerApiStatus =
  | { state: 'off' }
  | { state: 'answering'; dockerHost: string; lastAnswer?: string }
  | { state: 'silent'; dockerHost: string; since: string; reason?: string; lastAnswer?: string }

/** The hosts of the swarm as the daemon knows them now (overlay networks). */
export interface OverlayPeersStatus {
  /** This node's data-path address, once Docker said it. */
  self?: string
  peers: PeerEntry[]
}

export interface DaemonStatus {
  pid: number
  version: string
  startedAt: string
  socket: string
  stateDir: string
  reconcileIntervalSec: number
  /** The last pass (undefined before the boot reconcile ends), and the last one that changed something. */
  reconcile?: ReconcilePass
  lastRepair?: ReconcilePass
  gc: GcStatus
  docker: DockerApiStatus
  /** Absent from a daemon older than overlay status. */
  overlay?: OverlayPeersStatus
  /** Cluster networks on etcd (--etcd-endpoints); absent without them. */
  cluster?: ClusterStatus
}

/** This host in the cluster store: registered under a live lease, the elected reclaimer, remote endpoints known. */
export interface ClusterStatus {
  hostId: string
  registered: boolean
  leader: boolean
  remoteEndpoints: number
  /** Where the remote endpoints come from: etcd's listing, or the copy saved on disk until the first one. */
  remotesFrom?: 'etcd' | 'saved copy'
}
