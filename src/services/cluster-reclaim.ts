/**
 * One sweep of the elected tsnet: frees the addresses of hosts whose registration has been gone
 * for the whole grace period (the decisions: core/cluster-addresses.ts planSweep).
 *
 * The clock: `cluster-gone/<hostId>` records when the elected tsnet first saw a host that holds
 * addresses unregistered, by its own wall clock. It lives in the store (not in memory) so a new
 * leader keeps counting where the old one was, instead of starting the grace period again (or,
 * worse, never finishing it when leaders change often). A store revision carries no time, so the
 * absence's revision could not tell how long ago it was; hosts' clocks differ by seconds at most
 * under NTP, against a grace of minutes. A host seen registered again loses its record: its clock
 * starts again at its next absence.
 *
 * Safety: every write is conditioned on the leader key's revision (a deposed leader frees
 * nothing), and each batch of frees also on the host's registration being absent and on each
 * claim being unchanged, so a host that comes back during a sweep keeps its addresses.
 */
import { type AddressClaim, type GoneRecord, planSweep } from '../core/cluster-addresses.js'
import type { Condition, Entry, Revision, Store } from '../store/store.js'
import { type Members, leaveMembers } from './cluster-members.js'

export const goneKey = (hostId: string) => `cluster-gone/${hostId}`

/** Frees per transaction: well under etcd's default limit of 128 operations. */
const BATCH = 50

export interface Fence {
  leaderKey: string
  leaderRev: Revision
  /** The elected host. */
  hostId: string
  hostKey: (hostId: string) => string
}

export interface SweepReport {
  /** Hosts whose clock started in this sweep. */
  started: string[]
  reclaimed: Array<{ hostId: string; addresses: number }>
  /** Hosts seen registered again (or holding nothing any more): their clock was dropped. */
  forgotten: string[]
  /** True when the leader key changed under the sweep: this host is not the elected one any more. */
  deposed: boolean
}

export async function sweepDeadHosts(store: Store, fence: Fence, graceMs: number, nowMs: number): Promise<SweepReport> {
  const report: SweepReport = { started: [], reclaimed: [], forgotten: [], deposed: false }
  const alive = new Set((await store.list('cluster-hosts/')).map((e) => e.id))
  const gone = new Map((await store.list<GoneRecord>('cluster-gone/')).map((e) => [e.id, e.value] as const))
  // Every claim of the cluster, paged by the store: one listing per sweep, only on the elected tsnet.
  const byHost = new Map<string, Array<Entry<AddressClaim>>>()
  for (const e of await store.list<AddressClaim>('cluster-addresses/')) {
    const list = byHost.get(e.value.hostId) ?? []
    list.push(e)
    byHost.set(e.value.hostId, list)
  }
  // Members of a network hold it in the cluster even without addresses: a dead one is removed the same way.
  const memberships = new Map<string, string[]>()
  for (const e of await store.list<Members>('cluster-members/')) {
    for (const hostId of Object.keys(e.value.hosts ?? {})) memberships.set(hostId, [...(memberships.get(hostId) ?? []), e.id])
  }
  const plan = planSweep({ alive, claimants: new Set([...byHost.keys(), ...memberships.keys()]), gone, nowMs, graceMs })
  const leader: Condition = { key: fence.leaderKey, rev: fence.leaderRev }
  const fenced = async (when: Condition[], then: Parameters<Store['txn']>[1]) => {
    const { ok } = await store.txn([leader, ...when], then)
    if (!ok) report.deposed = (await store.get(fence.leaderKey))?.rev !== fence.leaderRev
    return ok
  }

  for (const hostId of plan.startClock) {
    const record: GoneRecord = { sinceMs: nowMs, seenBy: fence.hostId }
    if (await fenced([{ key: goneKey(hostId), absent: true }], [{ put: goneKey(hostId), value: record }])) report.started.push(hostId)
    if (report.deposed) return report
  }
  for (const hostId of plan.forget) {
    if (await fenced([], [{ delete: goneKey(hostId) }])) report.forgotten.push(hostId)
    if (report.deposed) return report
  }
  for (const hostId of plan.reclaim) {
    const claims = byHost.get(hostId) ?? []
    let freed = 0
    for (let i = 0; i < claims.length; i += BATCH) {
      const batch = claims.slice(i, i + BATCH)
      const ok = await fenced([{ key: fence.hostKey(hostId), absent: true }, ...batch.map((e) => ({ key: e.key, rev: e.rev }))], batch.map((e) => ({ delete: e.key })))
      if (report.deposed) return report
      if (ok) freed += batch.length // else: back, or a claim changed: the next sweep decides again
    }
    if (freed === claims.length) {
      for (const name of memberships.get(hostId) ?? []) await leaveMembers(store, name, hostId, [leader, { key: fence.hostKey(hostId), absent: true }])
      await fenced([], [{ delete: goneKey(hostId) }])
    }
    if (freed > 0) report.reclaimed.push({ hostId, addresses: freed })
    if (report.deposed) return report
  }
  return report
}
