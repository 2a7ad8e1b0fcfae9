/**
 * Reading the file store: records as entries with this store's revisions, unreadable ones moved
 * to quarantine (or refused), and the debris of interrupted writes cleared.
 */
import { mkdir, readdir, rename, unlink } from 'node:fs/promises'
import { join } from 'node:path'
import type { Logger } from 'pino'
import { TsnetError, errorMessage } from '../errors.js'
import { isCollectionName } from './keys.js'
import { QUARANTINE_DIR } from './layout.js'
import type { RecordUpgrade } from './migrate.js'
import { type FileIdentity, RECORD_SUFFIX, TMP_SUFFIX, isAbandoned, readRecordFile } from './record-files.js'
import type { Entry, Revision } from './store.js'

const LIST_CONCURRENCY = 32

/** The store's revision counter, and which file each key's revision stands for. */
export class Revisions {
  current: Revision = 0n
  private readonly known = new Map<string, { identity: FileIdentity; rev: Revision }>()

  /** The revision of `key` as the file `identity`: the one it had, or the next when the file is new to us. */
  of(key: string, identity: FileIdentity): Revision {
    const known = this.known.get(key)
    if (known?.identity === identity) return known.rev
    const rev = ++this.current
    this.known.set(key, { identity, rev })
    return rev
  }

  wrote(key: string, identity: FileIdentity, rev: Revision): void {
    this.known.set(key, { identity, rev })
  }

  forget(key: string): void {
    this.known.delete(key)
  }

  /** Whether `key` is still the file we gave revision `rev`. */
  is(key: string, identity: FileIdentity | undefined, rev: Revision): boolean {
    const known = this.known.get(key)
    return identity !== undefined && known?.identity === identity && known.rev === rev
  }
}

export interface ReaderOptions {
  check?: (collection: string, id: string, value: unknown) => string | undefined
  /** Set: quarantine unreadable records and report them here; unset: refuse them. */
  log?: Logger
  /** Never remove, move or create a file. */
  readOnly: boolean
}

export class RecordReader {
  /** Applied to every value read (a schema-1 store read without migrating it). */
  upgrade: RecordUpgrade | undefined

  constructor(
    private readonly root: string,
    private readonly revisions: Revisions,
    private readonly options: ReaderOptions,
    private readonly inFlight: ReadonlySet<string>,
    private readonly leaseOf: (key: string) => string | undefined,
  ) {}

  /** The collections on disk (directories with a collection's name). */
  async collections(): Promise<string[]> {
    const entries = await readdir(this.root, { withFileTypes: true }).catch(absentAs([]))
    return entries.filter((e) => e.isDirectory() && isCollectionName(e.name)).map((e) => e.name).sort()
  }

  /** Every readable record of a collection whose id starts with `idPrefix`. */
  async readCollection<T>(collection: string, idPrefix: string): Promise<Array<Entry<T>>> {
    const dir = join(this.root, collection)
    const names = await readdir(dir).catch(absentAs([] as string[]))
    if (!this.options.readOnly) {
      // Writes a crash interrupted (the old record, if any, is intact); never another live writer's.
      const debris = names.filter((n) => n.endsWith(TMP_SUFFIX) && isAbandoned(n, (name) => this.inFlight.has(join(dir, name))))
      await Promise.all(debris.map((n) => unlink(join(dir, n)).catch(() => undefined)))
    }
    const wanted: Array<{ name: string; id: string | undefined }> = []
    for (const name of names) {
      if (!name.endsWith(RECORD_SUFFIX)) continue
      const id = decodeName(name)
      if (id === undefined || id.startsWith(idPrefix)) wanted.push({ name, id })
    }
    const out: Array<Entry<T> | undefined> = new Array(wanted.length)
    let next = 0
    const worker = async () => {
      while (next < wanted.length) {
        const i = next++
        const { name, id } = wanted[i] as { name: string; id: string | undefined }
        out[i] = id === undefined
          ? await this.unreadable(collection, name, new Error('its file name is not a percent-encoded id'))
          : await this.read<T>(collection, id, name)
      }
    }
    await Promise.all(Array.from({ length: Math.min(LIST_CONCURRENCY, wanted.length) }, worker))
    return out.filter((e): e is Entry<T> => e !== undefined)
  }

  /** One record as an entry; undefined when absent or quarantined. */
  async read<T>(collection: string, id: string, name: string): Promise<Entry<T> | undefined> {
    const key = `${collection}/${id}`
    let file
    let value: unknown
    try {
      file = await readRecordFile(join(this.root, collection, name))
      if (file === undefined) {
        this.revisions.forget(key)
        return undefined // absent, or deleted since readdir
      }
      value = JSON.parse(file.text) as unknown
      if (this.upgrade) value = this.upgrade(collection, id, value)
      const problem = this.options.check?.(collection, id, value)
      if (problem !== undefined) throw new Error(problem)
    } catch (err) {
      return this.unreadable(collection, name, err)
    }
    const lease = this.leaseOf(key)
    return { key, id, value: value as T, rev: this.revisions.of(key, file.identity), ...(lease === undefined ? {} : { lease }) }
  }

  /** Without a logger (tools, tests, read-only), an error; with one, the record is moved aside and reported. */
  private async unreadable(collection: string, name: string, why: unknown): Promise<undefined> {
    const path = join(this.root, collection, name)
    const log = this.options.readOnly ? undefined : this.options.log
    if (!log) throw new TsnetError('host', `store record ${path} cannot be read: ${errorMessage(why)}`, { cause: why })
    const dir = join(this.root, QUARANTINE_DIR)
    const target = join(dir, `${collection}-${Date.now()}-${name}`)
    await mkdir(dir, { recursive: true, mode: 0o700 })
    await rename(path, target)
    this.revisions.forget(`${collection}/${decodeName(name) ?? name}`)
    log.error({ store: 'quarantined', collection, file: name, movedTo: target, reason: errorMessage(why) },
      'a store record could not be read and was moved aside; what it described will be rebuilt or collected')
    return undefined
  }
}

/** The id a record file holds; undefined for a name the store does not write. */
export function decodeName(name: string): string | undefined {
  try {
    return decodeURIComponent(name.slice(0, -RECORD_SUFFIX.length))
  } catch {
    return undefined
  }
}

/** A catch handler: a missing file or directory reads as `empty`. */
export const absentAs = <T>(empty: T) => (err: unknown): T => {
  if ((err as NodeJS.ErrnoException).code === 'ENOENT') return empty
  throw err
}
