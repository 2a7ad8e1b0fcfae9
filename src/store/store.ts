/**
 * The persistence interface: collections of JSON records addressed by ID. The embedded file
 * store implements it; a cluster store (etcd) can implement the same shape later.
 */
export type Collection = 'networks' | 'endpoints' | 'pools' | 'leases' | 'meta'

export const COLLECTIONS: readonly Collection[] = ['networks', 'endpoints', 'pools', 'leases', 'meta']

export interface Store {
  /** Every record of a collection; used once at start to build in-memory indexes. */
  list<T>(collection: Collection): Promise<Array<{ id: string; value: T }>>
  /** Writes one record durably (it survives a crash once this resolves). */
  put(collection: Collection, id: string, value: unknown): Promise<void>
  /** Removes one record durably; removing a missing record is fine. */
  delete(collection: Collection, id: string): Promise<void>
}

export const STORE_SCHEMA = 1
