/**
 * The kernel against the store, which IS the engine's reconcile in dry run: the running daemon's
 * (`/Tsnet.Reconcile {"DryRun":true}`), or, when none answers, one built here exactly as serve
 * builds it, over a store opened read-only. A dry run only observes (netlink dumps, iptables -S,
 * ipset list, /proc/sys reads), so the state lock is not needed: nothing can change.
 */
import type { Config } from '../config.js'
import { systemClock } from '../engine/clock.js'
import { errorMessage } from '../errors.js'
import { LinuxHost } from '../host/linux-host.js'
import { createLogger, openServices } from '../main.js'
import type { ReconcileDrift } from '../observe/findings.js'
import type { DaemonView } from '../observe/status-view.js'
import { callDaemon } from './daemon-client.js'

export type KernelDrift =
  | { source: 'daemon'; drift: ReconcileDrift; ms: number }
  /** `note`: what a reconcile outside the daemon cannot judge. */
  | { source: 'command'; drift: ReconcileDrift; ms: number; note: string }
  | { source: 'none'; reason: string }

interface ReconcileAnswer {
  Changes: string[]
  Missing: string[]
  Foreign: string[]
  Ms: number
}

/** Published host ports are held by the daemon's own sockets: another process cannot see them. */
const isPortHold = (change: string) => change.split(' ')[1] === 'port'

export async function kernelDrift(config: Config, daemon: DaemonView): Promise<KernelDrift> {
  if (daemon.running) {
    try {
      const r = await callDaemon<ReconcileAnswer>(config.socket, '/Tsnet.Reconcile', { DryRun: true })
      return { source: 'daemon', drift: { changes: r.Changes, missing: r.Missing, foreign: r.Foreign }, ms: r.Ms }
    } catch (err) {
      return { source: 'none', reason: `the daemon did not compare (${errorMessage(err)})` }
    }
  }
  try {
    const host = new LinuxHost({ procSys: config.procSys })
    const services = await openServices(config, host, createLogger('silent'), systemClock, { readOnly: true })
    services.engine.seed(services.state.allChanges())
    const report = await services.reconciler.pass('request', true)
    return {
      source: 'command',
      drift: { changes: report.changes.filter((c) => !isPortHold(c)), missing: report.missing, foreign: report.foreign },
      ms: report.ms,
      note: 'published host ports are held by the daemon\'s sockets, so they are checked only while it runs',
    }
  } catch (err) {
    return { source: 'none', reason: `tsnet is not running and the host could not be read here (${errorMessage(err)}): start tsnet, it reconciles at boot` }
  }
}
