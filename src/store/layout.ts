/**
 * Where the file store lives in the state directory, and what stops it from opening.
 *
 *   <state dir>/store/<collection>/<encoded id>.json   the records (schema in store/meta/schema.json)
 *   <state dir>/store/quarantine/                      records that could not be read, moved aside
 *   <state dir>/store.migrating/                       a migration being written (store/migrate.ts)
 *   <state dir>/store.schema-<n>/                      the store as it was before migrating from schema n
 */
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { TsnetError, errorMessage } from '../errors.js'

export const STORE_DIR = 'store'
export const MIGRATING_DIR = 'store.migrating'
export const QUARANTINE_DIR = 'quarantine'
export const backupDirName = (schema: number) => `store.schema-${schema}`
export const SCHEMA_FILE = join('meta', 'schema.json')

/** tsnet cannot use the store as it is: exit with EX_CONFIG, which the systemd unit does not restart. */
export const EXIT_STORE_UNUSABLE = 78
export const unusable = (message: string, cause?: unknown) =>
  new TsnetError('host', message, { ...(cause === undefined ? {} : { cause }), context: { exitCode: EXIT_STORE_UNUSABLE } })

/**
 * The schema version a store directory declares: undefined when it has no schema file (a new
 * store), else whatever its `version` field holds (checked by the caller).
 */
export async function declaredSchema(root: string): Promise<{ version: unknown } | undefined> {
  const path = join(root, SCHEMA_FILE)
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw unusable(`cannot read ${path}: ${errorMessage(err)}`, err)
  }
  try {
    const parsed = JSON.parse(text) as unknown
    return { version: typeof parsed === 'object' && parsed !== null ? (parsed as { version?: unknown }).version : undefined }
  } catch {
    throw unusable(`the store's schema file ${path} is not valid JSON; restore it from a backup or move the state directory away`)
  }
}
