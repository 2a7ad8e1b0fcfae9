/**
 * Store v2 on etcd (3.4 and later), for a cluster of tsnet hosts. Keys live under one prefix per
 * cluster (store/etcd-layout.ts); an entry's `rev` is its key's mod_revision, a listing's and a
 * transaction's `rev` the response header's revision: the cluster's revision, so every host sees
 * the same numbers. `txn` is one etcd transaction: `{ absent }` compares create_revision with 0,
 * `{ rev }` compares mod_revision. Every write is durable (a quorum's WAL); `durable: false` is
 * ignored. Watches and leases: store/etcd-watch.ts, store/etcd-lease.ts.
 *
 * Reachability: constructing the store does not connect. Every call answers or fails within
 * `timeoutMs` (store/etcd-client.ts); an unreachable etcd fails it with kind 'unavailable' and a
 * sentence naming the endpoints. The same object works again once etcd is back.
 *
 * An `unavailable` failure of `txn` does not say whether it was applied (the answer may be what
 * was lost), and the client retries a call whose connection failed, so a create that did apply
 * can come back ok=false: callers that must know put their own identity in the value and read
 * the key back.
 */
import type { Etcd3, IKeyValue, IRequestOp, ICompare } from 'etcd3'
import { Range } from 'etcd3'
import type { Logger } from 'pino'
import { TsnetError, invalid, quote, unavailable } from '../errors.js'
import { type EtcdTls, createEtcdClient, etcdFailure, lastFailureOf } from './etcd-client.js'
import { DEFAULT_CLUSTER, clusterRoot, entryOf } from './etcd-layout.js'
import { type GrantedLease, grantEtcdLease } from './etcd-lease.js'
import { watchEtcd } from './etcd-watch.js'
import { parseKey } from './keys.js'
import { checkWrites } from './txn-prepare.js'
import {
  type Condition, type Entry, type Lease, type Listing, type Revision, StoreBase, type TxnResult, type Unwatch, type WatchEvent,
  type Write, listing,
} from './store.js'

export interface EtcdStoreOptions {
  /** http(s)://host:port of the etcd members. */
  endpoints: readonly string[]
  /** The cluster's name: its keys' prefix (default "default"). */
  cluster?: string
  tls?: EtcdTls
  /** Every call answers or fails within this many milliseconds (default 5000). */
  timeoutMs?: number
  /** Where troubles that are not a call's failure are said (a value that is not JSON, a watcher's exception). */
  log?: Logger
}

/** Keys a listing reads per request: bounded messages, all at one revision. */
const LIST_PAGE = 1000

export class EtcdStore extends StoreBase {
  readonly endpoints: readonly string[]
  readonly root: string
  private readonly client: Etcd3
  private readonly leases = new Map<string, GrantedLease>()
  private readonly watches = new Set<Unwatch>()
  private readonly log: Logger | undefined
  private closed = false

  constructor(options: EtcdStoreOptions) {
    super()
    if (!Array.isArray(options.endpoints) || options.endpoints.length === 0) throw invalid('an etcd store needs at least one endpoint')
    this.endpoints = [...options.endpoints]
    this.root = clusterRoot(options.cluster ?? DEFAULT_CLUSTER)
    this.log = options.log
    this.client = createEtcdClient({ endpoints: this.endpoints, ...(options.tls ? { tls: options.tls } : {}), ...(options.timeoutMs ? { timeoutMs: options.timeoutMs } : {}) })
  }

  async get<T>(key: string): Promise<Entry<T> | undefined> {
    parseKey(key)
    this.assertOpen()
    const res = await this.call(`reading ${key}`, () => this.client.kv.range({ key: this.etcdKey(key) }))
    const kv = res.kvs[0]
    return kv === undefined ? undefined : this.entry<T>(kv, true)
  }

  async list<T>(prefix: string): Promise<Listing<T>> {
    if (typeof prefix !== 'string') throw invalid(`a store prefix must be a string, not ${quote(prefix)}`)
    this.assertOpen()
    try {
      return await this.listPages<T>(prefix)
    } catch (err) {
      // A compaction between two pages took the revision they are read at: read again, once.
      if (!(err instanceof TsnetError && /compacted/.test(err.message))) throw err
      return this.listPages<T>(prefix)
    }
  }

  private async listPages<T>(prefix: string): Promise<Listing<T>> {
    const range = Range.prefix(Buffer.from(this.root + prefix, 'utf8'))
    const entries: Array<Entry<T>> = []
    let rev: string | undefined // later pages read at the first page's revision
    let from = range.start
    for (;;) {
      const res = await this.call(`listing ${prefix || 'every key'}`, () => this.client.kv.range({
        key: from, range_end: range.end, limit: LIST_PAGE, sort_order: 'Ascend', sort_target: 'Key', ...(rev ? { revision: rev } : {}),
      }))
      rev ??= res.header.revision
      for (const kv of res.kvs) {
        const entry = this.entry<T>(kv, false)
        if (entry) entries.push(entry)
      }
      const last = res.kvs.at(-1)
      if (!res.more || last === undefined) break
      from = Buffer.concat([last.key, Buffer.from([0])])
    }
    return listing(entries, BigInt(rev))
  }

  async txn(when: readonly Condition[], then: readonly Write[]): Promise<TxnResult> {
    this.assertOpen()
    const compare = this.conditions(when)
    const success = this.writes(then)
    const what = then.length === 0 ? 'checking conditions' : `writing ${then.map((w) => ('put' in w ? w.put : `delete ${w.delete}`)).join(', ')}`
    const res = await this.call(what, () => this.client.kv.txn({ compare, success, failure: [] }))
    return { ok: res.succeeded, rev: BigInt(res.header.revision) }
  }

  watch(prefix: string, afterRev: Revision, onEvents: (events: WatchEvent[]) => void, onReset: () => void): Unwatch {
    if (typeof prefix !== 'string') throw invalid(`a store prefix must be a string, not ${quote(prefix)}`)
    if (typeof afterRev !== 'bigint' || afterRev < 0n) throw invalid(`a watch starts after a revision (a bigint of 0 or more), not ${quote(String(afterRev))}`)
    this.assertOpen()
    const stop = watchEtcd(this.client, this.root, prefix, afterRev, {
      onEvents,
      onReset: () => {
        this.watches.delete(stop)
        onReset()
      },
      onTrouble: (what, err) => this.log?.warn({ err, prefix }, what),
    })
    this.watches.add(stop)
    return () => {
      this.watches.delete(stop)
      stop()
    }
  }

  async lease(ttlSeconds: number): Promise<Lease> {
    if (!Number.isInteger(ttlSeconds) || ttlSeconds < 1 || ttlSeconds > 2 ** 31) {
      throw invalid(`a lease's time to live is a whole number of seconds from 1, not ${quote(ttlSeconds)}`)
    }
    this.assertOpen()
    const lease = await grantEtcdLease(this.client, ttlSeconds, (err) => etcdFailure(err, this.endpoints, `granting a lease of ${ttlSeconds} s`, lastFailureOf(this.client)))
    if (this.closed) {
      lease.release()
      throw unavailable('the store is closed')
    }
    this.leases.set(lease.id, lease)
    void lease.lost.then(() => this.leases.delete(lease.id))
    return {
      id: lease.id, ttlSeconds, lost: lease.lost,
      revoke: async () => {
        this.assertOpen()
        this.leases.delete(lease.id)
        await lease.revoke()
      },
    }
  }

  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    for (const stop of this.watches) stop()
    this.watches.clear()
    for (const lease of this.leases.values()) lease.release()
    this.leases.clear()
    this.client.close()
  }

  private assertOpen(): void {
    if (this.closed) throw unavailable('the store is closed')
  }

  private etcdKey(key: string): Buffer {
    return Buffer.from(this.root + key, 'utf8')
  }

  /** Runs one etcd call; a closed store or an etcd failure becomes the store's error. */
  private async call<R>(doing: string, fn: () => Promise<R>): Promise<R> {
    try {
      return await fn()
    } catch (err) {
      if (this.closed) throw unavailable('the store is closed')
      throw etcdFailure(err, this.endpoints, doing, lastFailureOf(this.client))
    }
  }

  /** An entry, or (a value that is not JSON) an error for a get and a warning and nothing for a list. */
  private entry<T>(kv: IKeyValue, strict: boolean): Entry<T> | undefined {
    const entry = entryOf<T>(kv, this.root)
    if (typeof entry !== 'string') return entry
    if (strict || !this.log) throw new TsnetError('host', entry)
    this.log.warn({ key: kv.key.toString('utf8') }, `${entry}: left out of the listing`)
    return undefined
  }

  private conditions(when: readonly Condition[]): ICompare[] {
    if (!Array.isArray(when)) throw invalid('a transaction takes a list of conditions and a list of writes')
    return when.map((c): ICompare => {
      parseKey((c as Condition | null)?.key)
      const key = this.etcdKey(c.key)
      if ('absent' in c && c.absent === true) return { key, target: 'Create', result: 'Equal', create_revision: 0 }
      if (!('rev' in c) || typeof c.rev !== 'bigint') throw invalid(`the condition on ${quote(c.key)} is neither { absent: true } nor { rev: <bigint> }`)
      return { key, target: 'Mod', result: 'Equal', mod_revision: c.rev.toString() }
    })
  }

  /** The writes as etcd requests; every argument is checked before anything is sent. */
  private writes(then: readonly Write[]): IRequestOp[] {
    return checkWrites(then, (lease) => this.leases.get(lease)?.live === true, 'was revoked or lost').map((w): IRequestOp =>
      w.text === undefined
        ? { request_delete_range: { key: this.etcdKey(w.key) } }
        : { request_put: { key: this.etcdKey(w.key), value: Buffer.from(w.text, 'utf8'), ...(w.lease !== undefined ? { lease: w.lease } : {}) } })
  }
}
