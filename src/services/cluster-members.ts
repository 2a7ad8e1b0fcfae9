/**
 * Which hosts have a cluster network, so the last one to remove it takes the cluster's keys
 * along (spec, index entry, address claims) and nothing stays behind in etcd.
 *
 * `cluster-members/<name>`: `{ hosts: { <hostId>: <since> } }`, one record per network, changed
 * only by compare-and-swap. Joining is conditioned on the spec too, and the teardown on the
 * members record and the index, so a host joining while the last one leaves either joins before
 * (and the teardown does not happen) or finds no spec and agrees a new one. A dead host's
 * membership goes when the elected tsnet reclaims its addresses (cluster-reclaim.ts).
 */
import type { ClusterIndex } from '../core/cluster-spec.js'
import { conflict, quote } from '../errors.js'
import type { Condition, Store, Write } from '../store/store.js'
import { INDEX_KEY, addressPrefix, networkKey } from './cluster-networks.js'

export const membersKey = (name: string) => `cluster-members/${name}`
export interface Members {
  hosts: Record<string, string>
}

const ATTEMPTS = 16
/** Deletes per transaction: under etcd's default limit of 128 operations. */
const BATCH = 100

/** Adds `hostId` to the network's members (done already: nothing). False: the spec is gone (agree again). */
export async function joinMembers(store: Store, name: string, hostId: string): Promise<boolean> {
  for (let attempt = 1; attempt <= ATTEMPTS; attempt++) {
    const spec = await store.get(networkKey(name))
    if (!spec) return false
    const members = await store.get<Members>(membersKey(name))
    if (members?.value.hosts[hostId] !== undefined) return true
    const next: Members = { hosts: { ...(members?.value.hosts ?? {}), [hostId]: new Date().toISOString() } }
    const when: Condition[] = [{ key: networkKey(name), rev: spec.rev }, members ? { key: membersKey(name), rev: members.rev } : { key: membersKey(name), absent: true }]
    if ((await store.txn(when, [{ put: membersKey(name), value: next }])).ok) return true
  }
  throw conflict(`cluster network ${quote(name)}: other hosts changed its members ${ATTEMPTS} times first; try again`)
}

/**
 * Removes `hostId` from the network's members; when none is left, removes the network from the
 * cluster. `fence`: extra conditions on every write (the elected tsnet's leadership). Returns
 * whether the network was removed from the cluster.
 */
export async function leaveMembers(store: Store, name: string, hostId: string, fence: Condition[] = []): Promise<boolean> {
  for (let attempt = 1; attempt <= ATTEMPTS; attempt++) {
    const members = await store.get<Members>(membersKey(name))
    const hosts = { ...(members?.value.hosts ?? {}) }
    if (members && hosts[hostId] === undefined) return false
    delete hosts[hostId]
    if (members && Object.keys(hosts).length > 0) {
      if ((await store.txn([...fence, { key: membersKey(name), rev: members.rev }], [{ put: membersKey(name), value: { hosts } }])).ok) return false
      continue
    }
    const membersCond: Condition = members ? { key: membersKey(name), rev: members.rev } : { key: membersKey(name), absent: true }
    // The claims first (in batches), each batch conditioned on nobody having joined meanwhile.
    const claims = await store.list(addressPrefix(name))
    let joined = false
    for (let i = 0; i < claims.length && !joined; i += BATCH) {
      const batch = claims.slice(i, i + BATCH)
      joined = !(await store.txn([...fence, membersCond], batch.map((e): Write => ({ delete: e.key })))).ok
    }
    if (joined) continue
    const index = await store.get<ClusterIndex>(INDEX_KEY)
    const networks = { ...(index?.value.networks ?? {}) }
    delete networks[name]
    const when: Condition[] = [...fence, membersCond, index ? { key: INDEX_KEY, rev: index.rev } : { key: INDEX_KEY, absent: true }]
    const then: Write[] = [{ delete: networkKey(name) }, ...(members ? [{ delete: membersKey(name) }] : []), { put: INDEX_KEY, value: { networks } }]
    if ((await store.txn(when, then)).ok) return true
  }
  throw conflict(`cluster network ${quote(name)}: other hosts changed its members ${ATTEMPTS} times first; try again`)
}

/** The networks `hostId` is a member of (for the elected tsnet removing a dead host). */
export async function membershipsOf(store: Store, hostId: string): Promise<string[]> {
  return (await store.list<Members>('cluster-members/')).filter((e) => e.value.hosts?.[hostId] !== undefined).map((e) => e.id)
}
