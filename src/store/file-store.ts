/**
 * The embedded store (Store v2 on one host): one JSON file per record,
 * <state dir>/store/<collection>/<encodeURIComponent(id)>.json, the layout of schema 1, so its
 * files keep their names. A write goes to a temporary file beside the record and is renamed (or,
 * for a create, linked) into place, so a crash leaves the old or the new record, never half; a
 * write costs the same at 10 or 10,000 records.
 *
 * What holds, and for whom:
 * - Revisions are this object's: a counter that starts at 0 at open. A record read for the first
 *   time gets the next revision and keeps it while its file is the same (inode, mtime, size);
 *   another process's write makes a new file, so it shows as a new revision when next read.
 * - A create-if-absent (an `absent` condition on a key the transaction puts) is safe across
 *   processes: link(2) fails with EEXIST when the name exists, atomically. Should one create of a
 *   transaction lose, the ones it already linked are removed again (another process may have seen
 *   them for that moment).
 * - Every other condition, and the all-or-nothing of a transaction, hold against the other calls
 *   on this object (they run one at a time; transactions of creates alone run together, and one
 *   can lose to another that is then undone), not against another process: `tsnet serve` holds
 *   the state directory's lock (store/state-lock.ts), so it is the only writer.
 * - A crash part-way through a transaction can leave some of its writes done: its creates first,
 *   then the others in the order given. Callers order writes so a load can repair what is left.
 * - Watches see this object's writes only (store/watch-hub.ts); the last `watchHistory`
 *   transactions can be resumed from. Leases never expire and live as long as this object: `lost`
 *   never settles, keys stay attached until revoke() or the process ends (after a restart they
 *   are plain keys; nothing expires them).
 */
import { link, mkdir, rename, unlink } from 'node:fs/promises'
import { join } from 'node:path'
import type { Logger } from 'pino'
import { TsnetError, errorMessage, invalid, quote, unavailable } from '../errors.js'
import { crashPoint } from './crash-points.js'
import { FileLeases } from './file-leases.js'
import { encodeId, parseKey, prefixTouches } from './keys.js'
import { EXIT_STORE_UNUSABLE, MIGRATING_DIR, STORE_DIR, declaredSchema, unusable } from './layout.js'
import { type RecordUpgrade, migrateStore, recoverMigration } from './migrate.js'
import { DirSyncs } from './dir-syncs.js'
import { type FileIdentity, RECORD_SUFFIX, currentIdentity, stageFile } from './record-files.js'
import { RecordReader, Revisions } from './record-reader.js'
import { SharedExclusiveLock } from '../util/shared-exclusive-lock.js'
import {
  COLLECTIONS, type Condition, type Entry, type Lease, type Listing, type Revision, STORE_SCHEMA, StoreBase, type TxnResult,
  type Unwatch, type WatchEvent, type Write, type WriteOptions, listing,
} from './store.js'
import { type Prepared, prepareWrites } from './txn-prepare.js'
import { WatchHub } from './watch-hub.js'

export { EXIT_STORE_UNUSABLE }

const MIGRATABLE_FROM = 1

export interface FileStoreOptions {
  /** Says what is wrong with a record as read (core/record-check.ts), which then counts as unreadable. */
  check?: (collection: string, id: string, value: unknown) => string | undefined
  /**
   * Another process (the daemon) may be writing: never remove, move or create a file. `tsnet
   * status` opens the store this way. A schema-1 store is then read through `upgrade` instead of
   * being migrated, and one that a crash left between the two renames of a migration is read
   * from the finished copy.
   */
  readOnly?: boolean
  /**
   * How a schema-1 record becomes a schema-2 one. Given, a schema-1 store is migrated at open
   * (store/migrate.ts); without it, such a store is refused.
   */
  upgrade?: RecordUpgrade
  /** Transactions a watch can resume from (default 1024). */
  watchHistory?: number
}

export class FileStore extends StoreBase {
  private readonly revisions = new Revisions()
  private readonly lock = new SharedExclusiveLock()
  private readonly hub: WatchHub
  /** Temporary files of writes in flight, by path: not debris. */
  private readonly inFlight = new Set<string>()
  private readonly leases = new FileLeases()
  private readonly dirSyncs = new DirSyncs()
  private readonly reader: RecordReader
  private closed = false

  private constructor(private readonly root: string, log: Logger | undefined, private readonly readOnly: boolean, options: FileStoreOptions) {
    super()
    this.hub = new WatchHub(options.watchHistory ?? 1024)
    this.reader = new RecordReader(root, this.revisions, { readOnly, ...(log ? { log } : {}), ...(options.check ? { check: options.check } : {}) },
      this.inFlight, (key) => this.leases.of(key))
  }

  /**
   * Opens (creating if needed) the store under `stateDir`: finishes or discards a migration a
   * crash interrupted, migrates a schema-1 store when given `upgrade`, refuses a schema it does
   * not know. With a logger, a record that cannot be read (or that `options.check` refuses) is
   * moved to store/quarantine and reported instead of stopping tsnet; without one (tools, tests)
   * it is an error. Unless read-only, call it holding the state directory's lock.
   */
  static async open(stateDir: string, log?: Logger, options: FileStoreOptions = {}): Promise<FileStore> {
    const readOnly = options.readOnly === true
    let root = join(stateDir, STORE_DIR)
    if (!readOnly) {
      try {
        await recoverMigration(stateDir, log)
        for (const c of COLLECTIONS) await mkdir(join(root, c), { recursive: true, mode: 0o700 })
      } catch (err) {
        throw err instanceof TsnetError ? err : unusable(`cannot create the state directory ${root}: ${errorMessage(err)}`, err)
      }
    } else if ((await currentIdentity(root)) === undefined && (await currentIdentity(join(stateDir, MIGRATING_DIR))) !== undefined) {
      root = join(stateDir, MIGRATING_DIR) // between the two renames of a migration: the daemon finishes it at its next start
    }
    const store = new FileStore(root, log, readOnly, options)
    const declared = await declaredSchema(root)
    if (declared === undefined) {
      if (!readOnly) await store.put('meta', 'schema', { version: STORE_SCHEMA })
    } else if (declared.version === MIGRATABLE_FROM) {
      if (!options.upgrade) {
        throw unusable(`the store at ${root} has schema version ${MIGRATABLE_FROM}, written by an earlier tsnet; it is migrated to version ${STORE_SCHEMA} when opened with the record upgrade, as tsnet serve does`)
      }
      if (readOnly) store.reader.upgrade = options.upgrade
      else await migrateStore(stateDir, MIGRATABLE_FROM, STORE_SCHEMA, options.upgrade, log)
    } else if (declared.version !== STORE_SCHEMA) {
      throw unusable(`the store at ${root} has schema version ${JSON.stringify(declared.version)}, but this tsnet reads version ${STORE_SCHEMA}`)
    }
    return store
  }

  async get<T>(key: string): Promise<Entry<T> | undefined> {
    const { collection, id } = parseKey(key)
    this.assertOpen()
    return this.lock.run(true, () => this.reader.read<T>(collection, id, `${encodeId(id)}${RECORD_SUFFIX}`))
  }

  async list<T>(prefix: string): Promise<Listing<T>> {
    if (typeof prefix !== 'string') throw invalid(`a store prefix must be a string, not ${quote(prefix)}`)
    this.assertOpen()
    return this.lock.run(true, async () => {
      const entries: Array<Entry<T>> = []
      for (const collection of await this.reader.collections()) {
        if (!prefixTouches(prefix, collection)) continue
        entries.push(...(await this.reader.readCollection<T>(collection, prefix.slice(collection.length + 1))))
      }
      entries.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))
      return listing(entries, this.revisions.current)
    })
  }

  async txn(when: readonly Condition[], then: readonly Write[], options: WriteOptions = {}): Promise<TxnResult> {
    this.assertOpen()
    if (this.readOnly) throw invalid('this store was opened read-only')
    const durable = options.durable !== false
    const writes = prepareWrites(when, then, (c, id) => this.pathOf(c, id), (lease) => this.leases.live(lease))
    const creates = writes.filter((w): w is Prepared & { kind: 'put' } => w.kind === 'put' && w.create)
    // An absent condition on a key the transaction creates is decided by link(2) itself.
    const checked = when.filter((c) => !('absent' in c && creates.some((w) => w.key === c.key)))
    // Creates alone exclude one another through link(2): they need not wait for each other.
    const exclusive = checked.length > 0 || creates.length < writes.length
    const leftover = new Set(writes.flatMap((w) => (w.kind === 'put' ? [w.tmp] : [])))
    for (const tmp of leftover) this.inFlight.add(tmp)
    try {
      const staged = await Promise.allSettled(writes.map(async (w) => {
        if (w.kind === 'put') w.identity = await stageFile(w.path, w.text, durable, w.tmp, (dir) => this.dirSyncs.forget(dir))
      }))
      const failed = staged.find((r): r is PromiseRejectedResult => r.status === 'rejected')
      if (failed) throw failed.reason
      const result = await this.lock.run(exclusive, () => this.apply(checked, writes))
      if (result.ok) {
        for (const w of writes) if (w.kind === 'put' && !w.create) leftover.delete(w.tmp) // renamed into place
        const linked = creates.map((w) => w.tmp) // a second name of each created record
        for (const tmp of linked) leftover.delete(tmp)
        await Promise.all([...linked.map((tmp) => unlink(tmp).catch(() => undefined)), ...(durable ? [...result.dirs].map((d) => this.dirSyncs.sync(d)) : [])])
        if (durable && writes.some((w) => w.kind === 'put')) crashPoint('put:after-sync')
      }
      return { ok: result.ok, rev: result.rev }
    } catch (err) {
      if (err instanceof TsnetError) throw err
      const what = writes.map((w) => `${w.kind} ${w.key}`).join(', ')
      throw new TsnetError('host', `cannot save the store change (${what}): ${errorMessage(err)}`, { cause: err })
    } finally {
      await Promise.all([...leftover].map((tmp) => unlink(tmp).catch(() => undefined))) // a write that did not happen
      for (const w of writes) if (w.kind === 'put') this.inFlight.delete(w.tmp)
    }
  }

  watch(prefix: string, afterRev: Revision, onEvents: (events: WatchEvent[]) => void, onReset: () => void): Unwatch {
    if (typeof prefix !== 'string') throw invalid(`a store prefix must be a string, not ${quote(prefix)}`)
    if (typeof afterRev !== 'bigint' || afterRev < 0n) throw invalid(`a watch starts after a revision (a bigint of 0 or more), not ${quote(String(afterRev))}`)
    this.assertOpen()
    return this.hub.watch(prefix, afterRev, onEvents, onReset)
  }

  async lease(ttlSeconds: number): Promise<Lease> {
    if (!Number.isInteger(ttlSeconds) || ttlSeconds < 1 || ttlSeconds > 2 ** 31) {
      throw invalid(`a lease's time to live is a whole number of seconds from 1, not ${quote(ttlSeconds)}`)
    }
    this.assertOpen()
    const id = this.leases.grant()
    return { id, ttlSeconds, lost: new Promise<void>(() => undefined), revoke: () => this.revoke(id) }
  }

  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    this.hub.close()
    await this.lock.run(true, async () => undefined) // let the calls already running finish
    await this.dirSyncs.close()
  }

  private assertOpen(): void {
    if (this.closed) throw unavailable('the store is closed')
  }

  private pathOf(collection: string, id: string) {
    const dir = join(this.root, collection)
    return { dir, path: join(dir, `${encodeId(id)}${RECORD_SUFFIX}`) }
  }

  /**
   * Checks the conditions and applies the writes, creates first. The caller holds the lock:
   * exclusively, or shared when the writes are creates alone.
   */
  private async apply(when: readonly Condition[], writes: Prepared[]): Promise<{ ok: boolean; rev: Revision; dirs: Set<string> }> {
    for (const c of when) if (!(await this.holds(c))) return { ok: false, rev: this.revisions.current, dirs: new Set() }
    for (const w of writes) if (w.kind === 'put' && w.lease !== undefined && !this.leases.live(w.lease)) throw invalid(`lease ${quote(w.lease)} was revoked`)
    const applied: Prepared[] = []
    let rev = this.revisions.current
    try {
      // Creates first: the only writes another process can make fail, so they alone are undone.
      for (const w of writes) {
        if (w.kind !== 'put' || !w.create) continue
        crashPoint('put:before-rename')
        try {
          await link(w.tmp, w.path)
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
          for (const l of applied.splice(0)) await unlink(l.path).catch(() => undefined)
          return { ok: false, rev: this.revisions.current, dirs: new Set() }
        }
        crashPoint('put:after-rename')
        applied.push(w)
      }
      for (const w of writes) {
        if (w.kind === 'put') {
          if (w.create) continue
          crashPoint('put:before-rename')
          await rename(w.tmp, w.path)
          crashPoint('put:after-rename')
        } else {
          try {
            await unlink(w.path)
          } catch (err) {
            if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
            this.revisions.forget(w.key)
            continue // nothing to delete: no change, no event
          }
          crashPoint('delete:after-unlink')
        }
        applied.push(w)
      }
    } finally {
      rev = this.record(applied) // what was done, even when a later write failed
    }
    return { ok: true, rev, dirs: new Set(applied.map((w) => w.dir)) }
  }

  /** Gives the applied writes the next revision and tells the watchers, all at once (no await). */
  private record(applied: Prepared[]): Revision {
    if (applied.length === 0) return this.revisions.current
    const rev = ++this.revisions.current
    const events = applied.map((w): WatchEvent => {
      if (w.kind === 'delete') {
        this.revisions.forget(w.key)
        this.leases.attach(w.key, undefined)
        return { type: 'delete', key: w.key, rev }
      }
      this.revisions.wrote(w.key, w.identity as FileIdentity, rev)
      this.leases.attach(w.key, w.lease)
      return { type: 'put', key: w.key, rev, value: JSON.parse(w.text) as unknown }
    })
    this.hub.publish(rev, events)
    return rev
  }

  private async holds(c: Condition): Promise<boolean> {
    const { collection, id } = parseKey(c.key)
    const identity = await currentIdentity(this.pathOf(collection, id).path)
    return 'absent' in c ? identity === undefined : this.revisions.is(c.key, identity, c.rev)
  }

  private async revoke(id: string): Promise<void> {
    this.assertOpen()
    const result = await this.lock.run(true, () => this.apply([], this.leases.end(id).map((key): Prepared => {
      const { collection, id: recordId } = parseKey(key)
      return { kind: 'delete', key, ...this.pathOf(collection, recordId) }
    })))
    for (const dir of result.dirs) await this.dirSyncs.sync(dir)
  }
}
