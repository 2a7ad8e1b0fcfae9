/**
 * Keeping this host's share of the cluster store true to what it runs:
 *
 * - `checkMember`: a cluster network is created only by a host that joined it through tsnet's
 *   IPAM (`--ipam-opt tsnet.overlay=<name>`). Another IPAM with the same subnet would hand out
 *   addresses other hosts' containers hold.
 * - `reassert`: after each registration, this host's networks and addresses are put back where
 *   they are missing: a host the elected tsnet declared dead (gone for the whole grace period)
 *   and that came back must not leave its running containers' addresses free for others. An
 *   address another host claimed meanwhile is a duplicate, said loudly in the log.
 * - `collectStale`: claims of this host that no local endpoint holds, older than a few minutes,
 *   are released (Docker sends ReleaseAddress once, and only logs it when etcd is down).
 */
import type { Logger } from 'pino'
import { type AddressClaim } from '../core/cluster-addresses.js'
import { invalid, quote } from '../errors.js'
import type { Store } from '../store/store.js'
import type { LocalEndpoint } from './cluster-locations.js'
import { type Members, joinMembers, membersKey } from './cluster-members.js'
import { type ClusterNetworks, addressKey, addressPrefix } from './cluster-networks.js'

/** A claim younger than this may belong to a container Docker is still creating. */
export const STALE_CLAIM_MS = 5 * 60_000

export async function checkMember(store: Store, name: string, hostId: string): Promise<void> {
  const members = await store.get<Members>(membersKey(name))
  if (members?.value.hosts?.[hostId] === undefined) {
    throw invalid(`cluster network ${quote(name)} must take its addresses from the cluster store: create it with --ipam-driver tsnet --ipam-opt tsnet.overlay=${name} (another IPAM would hand out addresses other hosts' containers hold)`)
  }
}

/** Rejoins each network this host has, and claims again each address its endpoints hold. */
export async function reassert(store: Store, networks: ClusterNetworks, names: readonly string[], local: readonly LocalEndpoint[], log: Logger): Promise<void> {
  for (const name of names) {
    if (!(await joinMembers(store, name, networks.hostId))) {
      log.error({ network: name }, 'cluster network is gone from the cluster store (its other hosts removed it while this one was away): its containers here reach no other host; remove and create the network again')
    }
  }
  for (const e of local) {
    for (const ip of [e.ip, ...(e.ipv6 ? [e.ipv6] : [])]) {
      const key = addressKey(e.network, ip)
      const held = await store.get<AddressClaim>(key)
      if (held?.value.hostId === networks.hostId) continue
      if (held) {
        log.error({ network: e.network, address: ip, holder: held.value.hostId, endpoint: e.endpointId },
          'DUPLICATE ADDRESS: another host claimed an address a container here holds (this host was declared dead while it ran); restart this container to get a new address')
        continue
      }
      const value: AddressClaim = { hostId: networks.hostId, endpointId: e.endpointId, claimedAt: new Date().toISOString() }
      if ((await store.txn([{ key, absent: true }], [{ put: key, value }])).ok) log.warn({ network: e.network, address: ip }, 'address claimed again for a running container')
    }
  }
}

/** Releases this host's claims that no local endpoint holds and that are older than STALE_CLAIM_MS. */
export async function collectStale(store: Store, networks: ClusterNetworks, names: readonly string[], local: readonly LocalEndpoint[], nowMs: number, log: Logger): Promise<number> {
  const held = new Set(local.flatMap((e) => [`${e.network}/${e.ip}`, ...(e.ipv6 ? [`${e.network}/${e.ipv6}`] : [])]))
  let released = 0
  for (const name of names) {
    for (const entry of await store.list<AddressClaim>(addressPrefix(name))) {
      const c = entry.value
      if (c.hostId !== networks.hostId || held.has(entry.id) || !(nowMs - Date.parse(c.claimedAt) > STALE_CLAIM_MS)) continue
      // Conditioned on the claim as listed: one made again meanwhile is left alone.
      if ((await store.txn([{ key: entry.key, rev: entry.rev }], [{ delete: entry.key }])).ok) {
        released++
        log.info({ network: name, address: entry.id.slice(name.length + 1), claimedAt: c.claimedAt }, 'stale address released: no container here holds it (its ReleaseAddress was lost)')
      }
    }
  }
  return released
}
