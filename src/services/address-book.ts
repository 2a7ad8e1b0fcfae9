/**
 * IPAM's pools and leases as the store holds them, with a cache in memory. The store decides who
 * holds what: a pool or an address is claimed with a create-if-absent transaction, so two writers
 * (two processes on one state directory, hosts sharing a cluster store) never both get one, and a
 * lost claim is answered by reading that part of the store again. IpamService serialises the
 * calls that read the cache to decide; claims and deletes finish outside its lock, and each
 * carries the revision that lets a later refresh tell newer local news from an older listing.
 */
import { type Prefix, parseCidr, parseIp, prefixesOverlap } from '../core/addr.js'
import type { LeaseRecord, PoolRecord } from '../core/records.js'
import { invalid } from '../errors.js'
import type { Condition, Revision, Store } from '../store/store.js'

export const poolKey = (poolId: string) => `pools/${poolId}`
export const leaseKey = (poolId: string, address: string) => `leases/${poolId}#${address}`
const leasesOf = (poolId: string) => `leases/${poolId}#`

export interface LeaseEntry {
  record: LeaseRecord
  /** Unset while the claim is in flight. */
  rev?: Revision
}

export interface PoolEntry {
  record: PoolRecord
  rev: Revision
  prefix: Prefix
  range?: Prefix
  leases: Map<bigint, LeaseEntry>
  /** Addresses this process deleted, and at which revision: an older listing must not bring them back. */
  deleted: Map<bigint, Revision>
}

/** What became of a pool claim. */
export type PoolClaim = 'claimed' | 'taken' | 'overlaps'

export class AddressBook {
  readonly pools = new Map<string, PoolEntry>()

  constructor(private readonly store: Store) {}

  /** Reads every pool and lease; removes leases whose pool is gone (a crash between the two deletes). */
  async load(): Promise<void> {
    this.pools.clear()
    for (const e of await this.store.list<PoolRecord>('pools/')) this.pools.set(e.value.id, entryOf(e.value, e.rev))
    const orphans: string[] = []
    for (const e of await this.store.list<LeaseRecord>('leases/')) {
      const ip = parseIp(e.value.address)
      const pool = this.pools.get(e.value.poolId)
      if (ip && pool) pool.leases.set(ip.value, { record: e.value, rev: e.rev })
      else orphans.push(e.key)
    }
    if (orphans.length > 0) await this.store.txn([], orphans.map((key) => ({ delete: key })))
  }

  /** Reads the pools again: pools another writer added, changed or removed. */
  async refreshPools(): Promise<void> {
    const listed = await this.store.list<PoolRecord>('pools/')
    const ids = new Set(listed.map((e) => e.value.id))
    for (const id of this.pools.keys()) if (!ids.has(id)) this.pools.delete(id)
    for (const e of listed) {
      if (this.pools.get(e.value.id)?.rev === e.rev) continue
      const pool = entryOf(e.value, e.rev)
      this.pools.set(e.value.id, pool)
      await this.refreshLeases(pool)
    }
  }

  /**
   * Reads one pool's leases again. What this process did after the listing was taken stays as
   * it did it: claims in flight or newer, deletes newer. `releasing` addresses stay out.
   */
  async refreshLeases(pool: PoolEntry, releasing: ReadonlySet<bigint> = new Set()): Promise<void> {
    const listed = await this.store.list<LeaseRecord>(leasesOf(pool.record.id))
    const next = new Map<bigint, LeaseEntry>()
    for (const e of listed) {
      const ip = parseIp(e.value.address)
      if (!ip || releasing.has(ip.value) || (pool.deleted.get(ip.value) ?? -1n) > listed.rev) continue
      next.set(ip.value, { record: e.value, rev: e.rev })
    }
    for (const [v, lease] of pool.leases) if (lease.rev === undefined || lease.rev > listed.rev) next.set(v, lease)
    for (const [v, rev] of pool.deleted) if (rev <= listed.rev) pool.deleted.delete(v)
    pool.leases = next
  }

  /**
   * Claims a pool: its key must be absent, and no other pool of its space and family may overlap
   * it once it is written (two writers claiming overlapping subnets at once both see the other
   * and both withdraw; never both keep theirs).
   */
  async claimPool(record: PoolRecord): Promise<PoolClaim> {
    const { ok, rev } = await this.store.txn([{ key: poolKey(record.id), absent: true }], [{ put: poolKey(record.id), value: record }])
    if (!ok) return 'taken'
    const mine = entryOf(record, rev)
    const others = await this.store.list<PoolRecord>('pools/')
    const clash = others.find((e) => e.value.id !== record.id && e.value.addressSpace === record.addressSpace && e.value.v6 === record.v6 &&
      overlaps(e.value.pool, mine.prefix))
    if (clash) {
      await this.store.txn([{ key: poolKey(record.id), rev }], [{ delete: poolKey(record.id) }])
      return 'overlaps'
    }
    this.pools.set(record.id, mine)
    return 'claimed'
  }

  /** Claims an address the caller put in the cache as `lease` (no rev); false when another writer holds it. */
  async claimLease(pool: PoolEntry, value: bigint, lease: LeaseEntry): Promise<boolean> {
    const key = leaseKey(pool.record.id, lease.record.address)
    let ok: boolean
    let rev: Revision
    try {
      ({ ok, rev } = await this.store.txn([{ key, absent: true }], [{ put: key, value: lease.record }]))
    } catch (err) {
      if (pool.leases.get(value) === lease) pool.leases.delete(value)
      throw err
    }
    if (ok) lease.rev = rev
    else if (pool.leases.get(value) === lease) pool.leases.delete(value)
    return ok
  }

  /**
   * Deletes a lease the caller took out of the cache; with its revision known, only if it is still
   * that one. False when it had changed (someone else's now).
   */
  async deleteLease(pool: PoolEntry, value: bigint, lease: LeaseEntry): Promise<boolean> {
    const key = leaseKey(pool.record.id, lease.record.address)
    const when: Condition[] = lease.rev === undefined ? [] : [{ key, rev: lease.rev }]
    const { ok, rev } = await this.store.txn(when, [{ delete: key }])
    if (ok) pool.deleted.set(value, rev)
    return ok
  }

  /**
   * Deletes a pool and every lease of it in the store (other writers' too), pool first: a crash
   * part-way leaves leases without a pool, which load() removes. With `rev`, only if the pool is
   * still that one.
   */
  async dropPool(pool: PoolEntry, rev?: Revision): Promise<boolean> {
    const leases = await this.store.list<LeaseRecord>(leasesOf(pool.record.id))
    const key = poolKey(pool.record.id)
    const { ok } = await this.store.txn(rev === undefined ? [] : [{ key, rev }], [{ delete: key }, ...leases.map((e) => ({ delete: e.key }))])
    if (ok) this.pools.delete(pool.record.id)
    return ok
  }
}

function entryOf(record: PoolRecord, rev: Revision): PoolEntry {
  const pool = parseCidr(record.pool)
  if (!pool) throw invalid(`stored pool ${record.id} has an unreadable subnet ${record.pool}`)
  const range = record.subPool ? parseCidr(record.subPool)?.prefix : undefined
  return { record, rev, prefix: pool.prefix, ...(range ? { range } : {}), leases: new Map(), deleted: new Map() }
}

const overlaps = (text: string, prefix: Prefix) => {
  const other = parseCidr(text)
  return other !== undefined && other.prefix.family === prefix.family && prefixesOverlap(other.prefix, prefix)
}
