/**
 * Store v2: what tsnet persists, as keys `<collection>/<id>` (store/keys.ts) holding JSON values,
 * with revisions, conditional transactions, watches and leases: enough for an IPAM that claims
 * addresses instead of trusting its memory, and for a cluster store (etcd) behind the same
 * interface. FileStore (store/file-store.ts) implements it for one host. Every implementation
 * passes the contract suite in test/unit/fixtures/store-contract.ts.
 *
 * Revisions. Every transaction that changes something gets a revision larger than any the store
 * has returned before; all of its writes share it. An entry's `rev` is the revision of the write
 * that left its value; a listing's `rev` is at least every entry's, and a watch from it sees every
 * later write (no gap between list and watch). etcd: the cluster's revision. FileStore: a counter
 * of the store object (it starts again at each open), see there for what that means.
 *
 * Transactions. `txn(when, then)` applies every write of `then` only if every condition of `when`
 * holds: `{ key, absent: true }` (create-if-absent) or `{ key, rev }` (unchanged since read).
 * When one does not, it writes nothing and answers ok=false. A key may be written once per call.
 *
 * Durability, per call (`WriteOptions.durable`, default true):
 * - durable: once the call resolves, the writes survive kill -9 of tsnet, a kernel crash and a
 *   power loss. FileStore: each file's data is fsynced before it is renamed or linked into place,
 *   and the directory is fsynced after. etcd: every write is durable (a quorum's WAL).
 * - not durable (FileStore only; etcd ignores it): once the call resolves, the writes are in the
 *   kernel's page cache. They survive kill -9 of tsnet, and any crash of tsnet, but not a power
 *   loss or a kernel crash: after one, such a record may be its old value, absent, or (if it was
 *   new) an empty file, which the store quarantines when it loads. For records whose subject dies
 *   with the machine too (endpoints: every veth and container is gone after a power loss).
 * - Either way a reader never sees a half-written value: records change by rename or link, atomically.
 * - Writes are visible to this process's readers and watchers as soon as they are applied, which
 *   for a durable write is shortly before its call resolves.
 *
 * Watches. `watch(prefix, afterRev, onEvents, onReset)` delivers, asynchronously and in revision
 * order, one batch per transaction of the put/delete events under `prefix` with a revision above
 * `afterRev`. When it cannot (those revisions are no longer kept: etcd compaction, a FileStore's
 * bounded history; a lost connection), it calls `onReset` once and stops: list again, watch from
 * the listing's revision.
 *
 * Leases. `lease(ttl)` grants one; a put may attach a key to it. etcd keeps it alive (keepalive
 * every ttl/3), deletes its keys when it expires, and settles `lost` when it could not be kept
 * alive. `revoke()` ends it and deletes its keys. FileStore leases never expire (`lost` never
 * settles); see there.
 *
 * `close()` ends watches and keepalives; it does not revoke leases (their keys stay until revoked
 * or, on etcd, until the TTL runs out). Later calls fail with kind 'unavailable'. A store that
 * cannot be reached (etcd) fails calls with kind 'unavailable' too.
 */
import { recordKey } from './keys.js'

export type Revision = bigint

/** Today's collections; FileStore makes their directories at open. Other collections are allowed. */
export type Collection = 'networks' | 'endpoints' | 'pools' | 'leases' | 'meta'

export const COLLECTIONS: readonly Collection[] = ['networks', 'endpoints', 'pools', 'leases', 'meta']

/** Version of the stored records' shapes; store/migrate.ts brings older directories up to it. */
export const STORE_SCHEMA = 2

export interface Entry<T = unknown> {
  /** `<collection>/<id>` */
  key: string
  /** The key after its collection. */
  id: string
  value: T
  rev: Revision
  /** The lease the key is attached to, when the store knows it. */
  lease?: string
}

/** Entries sorted by key, and the store's revision when they were read. */
export interface Listing<T> extends ReadonlyArray<Entry<T>> {
  readonly rev: Revision
}

export type Condition = { key: string; absent: true } | { key: string; rev: Revision }

export type Write = { put: string; value: unknown; lease?: string } | { delete: string }

export interface WriteOptions {
  /** Default true; see the module comment for what each guarantees. */
  durable?: boolean
}

export interface TxnResult {
  /** False: a condition did not hold (or a create lost to another writer) and nothing was written. */
  ok: boolean
  /** The transaction's revision; when nothing changed, the store's current one. */
  rev: Revision
}

export interface WatchEvent {
  type: 'put' | 'delete'
  key: string
  rev: Revision
  /** The new value (put only). */
  value?: unknown
}

export interface Lease {
  readonly id: string
  readonly ttlSeconds: number
  /** Settles when the lease ended without revoke(): expired, or kept alive by nobody for too long. */
  readonly lost: Promise<void>
  /** Ends the lease and deletes the keys attached to it; repeating it is fine. */
  revoke(): Promise<void>
}

export type Unwatch = () => void

export interface Store {
  get<T>(key: string): Promise<Entry<T> | undefined>
  /** Every entry whose key starts with `prefix` (`'pools/'`, `'leases/<pool>#'`; `''` is everything). */
  list<T>(prefix: string): Promise<Listing<T>>
  txn(when: readonly Condition[], then: readonly Write[], options?: WriteOptions): Promise<TxnResult>
  watch(prefix: string, afterRev: Revision, onEvents: (events: WatchEvent[]) => void, onReset: () => void): Unwatch
  lease(ttlSeconds: number): Promise<Lease>
  close(): Promise<void>

  /** Helper: writes one record unconditionally; resolves to its revision. */
  put(collection: string, id: string, value: unknown, options?: WriteOptions): Promise<Revision>
  /** Helper: removes one record unconditionally; removing a missing one is fine. */
  delete(collection: string, id: string, options?: WriteOptions): Promise<void>
}

/** The helpers, written once over txn for every implementation. */
export abstract class StoreBase implements Store {
  abstract get<T>(key: string): Promise<Entry<T> | undefined>
  abstract list<T>(prefix: string): Promise<Listing<T>>
  abstract txn(when: readonly Condition[], then: readonly Write[], options?: WriteOptions): Promise<TxnResult>
  abstract watch(prefix: string, afterRev: Revision, onEvents: (events: WatchEvent[]) => void, onReset: () => void): Unwatch
  abstract lease(ttlSeconds: number): Promise<Lease>
  abstract close(): Promise<void>

  async put(collection: string, id: string, value: unknown, options?: WriteOptions): Promise<Revision> {
    return (await this.txn([], [{ put: recordKey(collection, id), value }], options)).rev
  }

  async delete(collection: string, id: string, options?: WriteOptions): Promise<void> {
    await this.txn([], [{ delete: recordKey(collection, id) }], options)
  }
}

/** A Listing from sorted entries. */
export function listing<T>(entries: Array<Entry<T>>, rev: Revision): Listing<T> {
  return Object.assign(entries, { rev })
}
