/**
 * Embedded store: one JSON file per record (the host-local IPAM model), written to a temporary
 * file, fsynced and renamed over the old one, then the directory is fsynced. A write costs the
 * same at 10 or 10,000 records, and a crash leaves either the old or the new record, never half.
 */
import { mkdir, open, readdir, readFile, rename, unlink, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { TsnetError, errorMessage } from '../errors.js'
import { COLLECTIONS, STORE_SCHEMA, type Collection, type Store } from './store.js'

const TMP_SUFFIX = '.tmp'
const fileName = (id: string) => `${encodeURIComponent(id)}.json`
const LIST_CONCURRENCY = 32
let writeCounter = 0
/** Each write gets its own temporary file, so two writes of one record never share one. */
const tmpNameFor = (path: string) => `${path}.${process.pid}.${++writeCounter}${TMP_SUFFIX}`

export class FileStore implements Store {
  private constructor(private readonly root: string) {}

  /** Opens (creating if needed) the store under `stateDir`, refusing a schema it does not know. */
  static async open(stateDir: string): Promise<FileStore> {
    const root = join(stateDir, 'store')
    try {
      for (const c of COLLECTIONS) await mkdir(join(root, c), { recursive: true, mode: 0o700 })
    } catch (err) {
      throw new TsnetError('host', `cannot create the state directory ${root}: ${errorMessage(err)}`, { cause: err })
    }
    const store = new FileStore(root)
    await store.checkSchema()
    return store
  }

  private async checkSchema(): Promise<void> {
    const path = join(this.root, 'meta', fileName('schema'))
    let text: string | undefined
    try {
      text = await readFile(path, 'utf8')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new TsnetError('host', `cannot read ${path}: ${errorMessage(err)}`, { cause: err })
    }
    if (text === undefined) {
      await this.put('meta', 'schema', { version: STORE_SCHEMA })
      return
    }
    let version: unknown
    try {
      version = (JSON.parse(text) as { version?: unknown }).version
    } catch {
      throw new TsnetError('host', `the store's schema file ${path} is not valid JSON; restore it from a backup or move the state directory away`)
    }
    if (version !== STORE_SCHEMA) {
      throw new TsnetError('host', `the store at ${this.root} has schema version ${JSON.stringify(version)}, but this tsnet reads version ${STORE_SCHEMA}`)
    }
  }

  async list<T>(collection: Collection): Promise<Array<{ id: string; value: T }>> {
    const dir = join(this.root, collection)
    const names = await readdir(dir)
    const records = names.filter((n) => n.endsWith('.json'))
    // A write that a crash interrupted; the old record (if any) is intact.
    await Promise.all(names.filter((n) => n.endsWith(TMP_SUFFIX)).map((n) => unlink(join(dir, n)).catch(() => undefined)))
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
          out[i] = { id, value: JSON.parse(await readFile(path, 'utf8')) as T }
        } catch (err) {
          throw new TsnetError('host', `store record ${path} cannot be read: ${errorMessage(err)}`, { cause: err })
        }
      }
    }
    await Promise.all(Array.from({ length: Math.min(LIST_CONCURRENCY, records.length) }, worker))
    return out
  }

  async put(collection: Collection, id: string, value: unknown): Promise<void> {
    const dir = join(this.root, collection)
    const path = join(dir, fileName(id))
    const tmp = tmpNameFor(path)
    try {
      await writeFile(tmp, JSON.stringify(value), { mode: 0o600, flush: true })
      await rename(tmp, path)
      await this.syncDir(dir)
    } catch (err) {
      await unlink(tmp).catch(() => undefined)
      throw new TsnetError('host', `cannot save ${collection} record ${id}: ${errorMessage(err)}`, { cause: err })
    }
  }

  async delete(collection: Collection, id: string): Promise<void> {
    const dir = join(this.root, collection)
    try {
      await unlink(join(dir, fileName(id)))
      await this.syncDir(dir)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return
      throw new TsnetError('host', `cannot delete ${collection} record ${id}: ${errorMessage(err)}`, { cause: err })
    }
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
