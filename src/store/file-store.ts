/**
 * Embedded store: one JSON file per record (the host-local IPAM model), written to a temporary
 * file, fsynced and renamed over the old one, then the directory is fsynced. A write costs the
 * same at 10 or 10,000 records, and a crash leaves either the old or the new record, never half.
 */
import { mkdir, open, readdir, readFile, rename, unlink } from 'node:fs/promises'
import { join } from 'node:path'
import type { Logger } from 'pino'
import { TsnetError, errorMessage } from '../errors.js'
import { crashPoint } from './crash-points.js'
import { COLLECTIONS, STORE_SCHEMA, type Collection, type Store } from './store.js'

/** tsnet cannot use the store as it is: exit with EX_CONFIG, which the systemd unit does not restart. */
export const EXIT_STORE_UNUSABLE = 78
const unusable = (message: string, cause?: unknown) =>
  new TsnetError('host', message, { ...(cause === undefined ? {} : { cause }), context: { exitCode: EXIT_STORE_UNUSABLE } })

const TMP_SUFFIX = '.tmp'
const fileName = (id: string) => `${encodeURIComponent(id)}.json`
const LIST_CONCURRENCY = 32
let writeCounter = 0
/** Each write gets its own temporary file, so two writes of one record never share one. */
const tmpNameFor = (path: string) => `${path}.${process.pid}.${++writeCounter}${TMP_SUFFIX}`

export interface FileStoreOptions {
  /** Says what is wrong with a parsed record (core/record-check.ts), which then counts as unreadable. */
  check?: (collection: Collection, id: string, value: unknown) => string | undefined
  /**
   * Another process (the daemon) may be writing: never create, write, remove or move a file (a
   * write throws). `tsnet status` and `tsnet doctor` open the store this way, so they cannot
   * delete a write the daemon has in flight; a store that does not exist yet reads as empty.
   */
  readOnly?: boolean
}

export class FileStore implements Store {
  private constructor(private readonly root: string, private readonly log: Logger | undefined, private readonly options: FileStoreOptions) {}

  /**
   * Opens (creating if needed) the store under `stateDir`, refusing a schema it does not know.
   * With a logger, a record that cannot be read (or that `options.check` refuses) is moved to
   * store/quarantine and reported instead of stopping tsnet; without one (tools, tests) it is an error.
   */
  static async open(stateDir: string, log?: Logger, options: FileStoreOptions = {}): Promise<FileStore> {
    const root = join(stateDir, 'store')
    try {
      if (!options.readOnly) for (const c of COLLECTIONS) await mkdir(join(root, c), { recursive: true, mode: 0o700 })
    } catch (err) {
      throw unusable(`cannot create the state directory ${root}: ${errorMessage(err)}`, err)
    }
    const store = new FileStore(root, options.readOnly ? undefined : log, options)
    await store.checkSchema()
    return store
  }

  private async checkSchema(): Promise<void> {
    const path = join(this.root, 'meta', fileName('schema'))
    let text: string | undefined
    try {
      text = await readFile(path, 'utf8')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw unusable(`cannot read ${path}: ${errorMessage(err)}`, err)
    }
    if (text === undefined) {
      if (!this.options.readOnly) await this.put('meta', 'schema', { version: STORE_SCHEMA })
      return
    }
    let version: unknown
    try {
      const parsed = JSON.parse(text) as unknown
      version = typeof parsed === 'object' && parsed !== null ? (parsed as { version?: unknown }).version : undefined
    } catch {
      throw unusable(`the store's schema file ${path} is not valid JSON; restore it from a backup or move the state directory away`)
    }
    if (version !== STORE_SCHEMA) {
      throw unusable(`the store at ${this.root} has schema version ${JSON.stringify(version)}, but this tsnet reads version ${STORE_SCHEMA}`)
    }
  }

  async list<T>(collection: Collection): Promise<Array<{ id: string; value: T }>> {
    const dir = join(this.root, collection)
    const names = await readdir(dir).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT' && this.options.readOnly) return [] // no store here yet
      throw err
    })
    const records = names.filter((n) => n.endsWith('.json'))
    // A write that a crash interrupted; the old record (if any) is intact. (Read-only: perhaps one in flight.)
    if (!this.options.readOnly) await Promise.all(names.filter((n) => n.endsWith(TMP_SUFFIX)).map((n) => unlink(join(dir, n)).catch(() => undefined)))
    const out: Array<{ id: string; value: T }> = new Array(records.length)
    // Read in parallel, a bounded number at a time: thousands of records load in a fraction of a second.
    let next = 0
    const worker = async () => {
      while (next < records.length) {
        const i = next++
        const name = records[i] as string
        const path = join(dir, name)
        try {
          const id = decodeURIComponent(name.slice(0, -'.json'.length))
          const value = JSON.parse(await readFile(path, 'utf8')) as unknown
          const problem = this.options.check?.(collection, id, value)
          if (problem !== undefined) throw new Error(problem)
          out[i] = { id, value: value as T }
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue // deleted since readdir (status beside the daemon)
          if (!this.log) throw new TsnetError('host', `store record ${path} cannot be read: ${errorMessage(err)}`, { cause: err })
          await this.quarantine(collection, name, err)
        }
      }
    }
    await Promise.all(Array.from({ length: Math.min(LIST_CONCURRENCY, records.length) }, worker))
    return out.filter((r) => r !== undefined)
  }

  /** Moves an unreadable record aside, so one bad file neither stops tsnet nor is silently lost. */
  private async quarantine(collection: Collection, name: string, why: unknown): Promise<void> {
    const dir = join(this.root, 'quarantine')
    const target = join(dir, `${collection}-${Date.now()}-${name}`)
    await mkdir(dir, { recursive: true, mode: 0o700 })
    await rename(join(this.root, collection, name), target)
    this.log?.error({ store: 'quarantined', collection, file: name, movedTo: target, reason: errorMessage(why) },
      'a store record could not be read and was moved aside; what it described will be rebuilt or collected')
  }

  async put(collection: Collection, id: string, value: unknown): Promise<void> {
    this.refuseWrite(`save ${collection} record ${id}`)
    const dir = join(this.root, collection)
    const path = join(dir, fileName(id))
    const tmp = tmpNameFor(path)
    try {
      const text = JSON.stringify(value)
      const handle = await open(tmp, 'w', 0o600)
      try {
        await handle.writeFile(text.slice(0, text.length >> 1))
        crashPoint('put:mid-write')
        await handle.writeFile(text.slice(text.length >> 1))
        await handle.datasync() // data and size are what the rename needs; the directory sync covers the name
      } finally {
        await handle.close()
      }
      crashPoint('put:before-rename')
      await rename(tmp, path)
      crashPoint('put:after-rename')
      await this.syncDir(dir)
      crashPoint('put:after-sync')
    } catch (err) {
      await unlink(tmp).catch(() => undefined)
      throw new TsnetError('host', `cannot save ${collection} record ${id}: ${errorMessage(err)}`, { cause: err })
    }
  }

  async delete(collection: Collection, id: string): Promise<void> {
    this.refuseWrite(`delete ${collection} record ${id}`)
    const dir = join(this.root, collection)
    try {
      await unlink(join(dir, fileName(id)))
      crashPoint('delete:after-unlink')
      await this.syncDir(dir)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return
      throw new TsnetError('host', `cannot delete ${collection} record ${id}: ${errorMessage(err)}`, { cause: err })
    }
  }

  private refuseWrite(what: string): void {
    if (this.options.readOnly) throw new TsnetError('host', `cannot ${what}: the store was opened read-only (the daemon owns it)`)
  }

  private async syncDir(dir: string): Promise<void> {
    const handle = await open(dir, 'r')
    try {
      await handle.sync()
    } finally {
      await handle.close()
    }
  }
}
