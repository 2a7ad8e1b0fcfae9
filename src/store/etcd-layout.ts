/**
 * Where store keys live in etcd: `/tsnet/<cluster>/v1/<collection>/<id>`, one prefix per cluster
 * (several clusters can share one etcd) and per layout version (a later layout can be written
 * beside this one and switched to). Values are JSON text.
 */
import type { IKeyValue } from 'etcd3'
import { invalid, quote } from '../errors.js'
import type { Entry } from './store.js'

export const ETCD_LAYOUT_VERSION = 'v1'
export const DEFAULT_CLUSTER = 'default'
const CLUSTER_NAME = /^[a-z0-9][a-z0-9_.-]{0,62}$/

export function clusterRoot(cluster: string): string {
  if (!CLUSTER_NAME.test(cluster)) throw invalid(`cluster name ${quote(cluster)} is not 1 to 63 of a-z, 0-9, _, . and - (starting with a letter or digit)`)
  return `/tsnet/${cluster}/${ETCD_LAYOUT_VERSION}/`
}

/** A lease id as etcd writes it: "0" is no lease. */
const leaseOf = (lease: string | undefined) => (lease === undefined || lease === '0' ? undefined : lease)

/**
 * A key-value of etcd as an Entry, or a sentence saying why it is not one (a value that is not
 * JSON: written under tsnet's prefix by something else).
 */
export function entryOf<T>(kv: IKeyValue, root: string): Entry<T> | string {
  const key = kv.key.toString('utf8').slice(root.length)
  const id = key.slice(key.indexOf('/') + 1)
  let value: T
  try {
    value = JSON.parse(kv.value.toString('utf8')) as T
  } catch {
    return `etcd key ${root}${key} does not hold JSON`
  }
  const lease = leaseOf(kv.lease)
  return { key, id, value, rev: BigInt(kv.mod_revision), ...(lease ? { lease } : {}) }
}
