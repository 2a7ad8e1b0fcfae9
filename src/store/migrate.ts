/**
 * Bringing a state directory's store from an older schema to this one, at open, so that after a
 * kill -9 at any point and the next open the directory is entirely the old store or entirely the
 * new one:
 *
 * 1. The new store is written beside the old one, in store.migrating/: every record through
 *    `upgrade`, each file and directory fsynced, the new schema file last.
 * 2. Then two renames, each followed by an fsync of the state directory: store/ → store.schema-<n>/
 *    (the backup, kept), then store.migrating/ → store/.
 *
 * A crash leaves one of three states, which recoverMigration() tells apart by the directories
 * alone, at the next open, before anything reads the store:
 * - store/ and store.migrating/: step 1 was not finished, or step 2 not begun. store/ is the old
 *   store, untouched; the half-written copy is discarded and the migration starts over.
 * - no store/, but store.migrating/ (and the backup): between the two renames. The copy was
 *   complete and synced before the first rename, so the second one is done now.
 * - store/ only (and the backup): done.
 * A reader that must not write (`tsnet status`) reads store.migrating/ in the second state.
 *
 * The daemon holds the state directory's lock (store/state-lock.ts) while it opens the store, so
 * nothing else writes meanwhile.
 */
import { mkdir, open, readFile, readdir, rename, rm, stat } from 'node:fs/promises'
import { join } from 'node:path'
import type { Logger } from 'pino'
import { errorMessage } from '../errors.js'
import { crashPoint } from './crash-points.js'
import { isCollectionName } from './keys.js'
import { MIGRATING_DIR, QUARANTINE_DIR, SCHEMA_FILE, STORE_DIR, backupDirName, unusable } from './layout.js'
import { RECORD_SUFFIX, syncDir } from './record-files.js'
import { absentAs, decodeName } from './record-reader.js'

/**
 * A record of the previous schema in this one's shape: given its collection, id and stored value,
 * the value to store. Throwing (or returning undefined) marks the record unreadable.
 */
export type RecordUpgrade = (collection: string, id: string, value: unknown) => unknown

const WRITE_CONCURRENCY = 32

export type Recovery = 'none' | 'finished' | 'discarded'

/** Finishes or discards a migration that a crash interrupted (see the module comment). */
export async function recoverMigration(stateDir: string, log?: Logger): Promise<Recovery> {
  const live = join(stateDir, STORE_DIR)
  const next = join(stateDir, MIGRATING_DIR)
  if (!(await isDir(next))) return 'none'
  if (await isDir(live)) {
    await rm(next, { recursive: true, force: true })
    log?.warn({ store: 'migration.discarded', dir: next }, 'a store migration was interrupted before the swap; the old store is intact and is migrated again')
    return 'discarded'
  }
  await rename(next, live)
  await syncDir(stateDir)
  log?.warn({ store: 'migration.finished', dir: live }, 'a store migration was interrupted between its two renames; it is finished now')
  return 'finished'
}

export interface MigrationReport {
  records: number
  quarantined: number
  backup: string
}

/** Migrates <stateDir>/store from schema `from` to `to` (see the module comment). */
export async function migrateStore(stateDir: string, from: number, to: number, upgrade: RecordUpgrade, log?: Logger): Promise<MigrationReport> {
  const live = join(stateDir, STORE_DIR)
  const next = join(stateDir, MIGRATING_DIR)
  const backup = join(stateDir, backupDirName(from))
  let counts: { records: number; quarantined: number }
  try {
    await rm(next, { recursive: true, force: true })
    await mkdir(next, { mode: 0o700 })
    counts = await copyUpgraded(live, next, upgrade, log)
    await writeSynced(join(next, SCHEMA_FILE), JSON.stringify({ version: to }))
    await syncDir(join(next, 'meta'))
    await syncDir(next)
  } catch (err) {
    await rm(next, { recursive: true, force: true }).catch(() => undefined)
    throw unusable(`cannot migrate the store at ${live} from schema ${from} to ${to} (it is unchanged): ${errorMessage(err)}`, err)
  }
  crashPoint('migrate:before-swap')
  if (await isDir(backup)) await rename(backup, `${backup}.${Date.now()}`) // an older backup, restored by hand once: keep it too
  await rename(live, backup)
  await syncDir(stateDir)
  crashPoint('migrate:after-backup')
  await rename(next, live)
  crashPoint('migrate:after-swap')
  await syncDir(stateDir)
  log?.info({ store: 'migrated', from, to, ...counts, backup }, `store migrated from schema ${from} to ${to}; the old store is kept in ${backup}`)
  return { ...counts, backup }
}

/** Every record of `from` through `upgrade` into `to`; unreadable ones go to quarantine (with a log) or stop it. */
async function copyUpgraded(from: string, to: string, upgrade: RecordUpgrade, log?: Logger): Promise<{ records: number; quarantined: number }> {
  let records = 0
  let quarantined = 0
  const dirs = (await readdir(from, { withFileTypes: true })).filter((e) => e.isDirectory()).map((e) => e.name).sort()
  for (const dir of dirs) {
    if (dir !== QUARANTINE_DIR && !isCollectionName(dir)) continue
    await mkdir(join(to, dir), { recursive: true, mode: 0o700 })
    const names = (await readdir(join(from, dir)).catch(absentAs([] as string[]))).filter((n) => dir === QUARANTINE_DIR || n.endsWith(RECORD_SUFFIX))
    const jobs = names.map((name) => async () => {
      const text = await readFile(join(from, dir, name), 'utf8')
      if (dir === QUARANTINE_DIR) return writeSynced(join(to, dir, name), text) // moved aside before: kept as it was
      if (dir === 'meta' && name === 'schema.json') return // the new one is written last
      const out = upgradeText(dir, name, text, upgrade)
      if (typeof out === 'string') {
        await writeSynced(join(to, dir, name), out)
        records++
        crashPoint('migrate:mid-copy')
        return
      }
      if (!log) throw new Error(`record ${join(from, dir, name)} cannot be migrated: ${errorMessage(out.error)}`)
      await mkdir(join(to, QUARANTINE_DIR), { recursive: true, mode: 0o700 })
      await writeSynced(join(to, QUARANTINE_DIR, `${dir}-${Date.now()}-${name}`), text)
      quarantined++
      log.error({ store: 'quarantined', collection: dir, file: name, reason: errorMessage(out.error) },
        'a store record could not be migrated and was moved aside; what it described will be rebuilt or collected')
    })
    await runBounded(jobs, WRITE_CONCURRENCY)
    await syncDir(join(to, dir))
  }
  if (quarantined > 0) await syncDir(join(to, QUARANTINE_DIR))
  return { records, quarantined }
}

function upgradeText(collection: string, name: string, text: string, upgrade: RecordUpgrade): string | { error: unknown } {
  try {
    const id = decodeName(name)
    if (id === undefined) throw new Error('its file name is not a percent-encoded id')
    const value = upgrade(collection, id, JSON.parse(text) as unknown)
    const out = value === undefined ? undefined : JSON.stringify(value)
    if (out === undefined) throw new Error('the upgrade returned no value')
    return out
  } catch (error) {
    return { error }
  }
}

async function writeSynced(path: string, text: string): Promise<void> {
  const handle = await open(path, 'wx', 0o600)
  try {
    await handle.writeFile(text)
    await handle.datasync()
  } finally {
    await handle.close()
  }
}

/** Runs `jobs`, `width` at a time; after a failure starts no more, and rethrows it once all have stopped. */
async function runBounded(jobs: Array<() => Promise<void>>, width: number): Promise<void> {
  let next = 0
  let failed = false
  const worker = async () => {
    while (!failed && next < jobs.length) {
      try {
        await (jobs[next++] as () => Promise<void>)()
      } catch (err) {
        failed = true
        throw err
      }
    }
  }
  const settled = await Promise.allSettled(Array.from({ length: Math.min(width, jobs.length) }, worker))
  const failure = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected')
  if (failure) throw failure.reason
}

async function isDir(path: string): Promise<boolean> {
  return stat(path).then((s) => s.isDirectory(), absentAs(false))
}
