/**
 * One record, one file: how the file store writes a record's next version beside it, reads one
 * with the identity of the file it came from, and syncs a directory.
 */
import { mkdir, open, stat, unlink } from 'node:fs/promises'
import { dirname } from 'node:path'
import { crashArmed, crashPoint } from './crash-points.js'

export const RECORD_SUFFIX = '.json'
export const TMP_SUFFIX = '.tmp'

/**
 * Which file a record was read from: its inode, modification time and size. A record changes only
 * by a new file (rename or link of a fresh temporary file), so another identity is another write,
 * whoever made it.
 */
export type FileIdentity = string

const identityOf = (s: { ino: bigint; mtimeNs: bigint; size: bigint }): FileIdentity => `${s.ino}:${s.mtimeNs}:${s.size}`

let writeCounter = 0
/** `<record file>.<pid>.<n>.tmp`: each write its own file, and its writer named (see isAbandoned). */
export const tmpNameFor = (path: string) => `${path}.${process.pid}.${(++writeCounter).toString(36)}${TMP_SUFFIX}`

/**
 * A temporary file nobody will finish: from an earlier run of this process id that is not in
 * flight now, from a process that is gone, or of the old unnamed form. Another live process's
 * write is left alone.
 */
export function isAbandoned(name: string, inFlight: (name: string) => boolean): boolean {
  const m = /\.(\d+)\.[0-9a-z]+\.tmp$/.exec(name)
  if (!m) return true
  const pid = Number(m[1])
  if (pid === process.pid) return !inFlight(name)
  try {
    process.kill(pid, 0)
    return false
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ESRCH'
  }
}

/** The text of a record file and the identity of the file it was read from; undefined when absent. */
export async function readRecordFile(path: string): Promise<{ text: string; identity: FileIdentity } | undefined> {
  let handle
  try {
    handle = await open(path, 'r')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw err
  }
  try {
    const stat = await handle.stat({ bigint: true })
    return { text: await handle.readFile('utf8'), identity: identityOf(stat) }
  } finally {
    await handle.close()
  }
}

/**
 * Writes `text` to a new temporary file beside `path` (data synced when durable) and returns it
 * with the identity the record will have once the file is moved into place. `madeDir` hears of a
 * directory that had to be made.
 */
export async function stageFile(path: string, text: string, durable: boolean, tmp: string, madeDir?: (dir: string) => void): Promise<FileIdentity> {
  let handle
  try {
    handle = await open(tmp, 'wx', 0o600)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
    await mkdir(dirname(path), { recursive: true, mode: 0o700 }) // a collection written for the first time
    madeDir?.(dirname(path))
    handle = await open(tmp, 'wx', 0o600)
  }
  try {
    if (crashArmed('put:mid-write')) {
      // Two writes, so a crash test can leave a half-written file (which the store must survive).
      await handle.writeFile(text.slice(0, text.length >> 1))
      crashPoint('put:mid-write')
      await handle.writeFile(text.slice(text.length >> 1))
    } else {
      await handle.writeFile(text)
    }
    // Data and size are what the rename needs (the directory sync covers the name); a sync leaves the identity as it is.
    const [stat] = await Promise.all([handle.stat({ bigint: true }), durable ? handle.datasync() : undefined])
    return identityOf(stat)
  } catch (err) {
    await unlink(tmp).catch(() => undefined)
    throw err
  } finally {
    await handle.close()
  }
}

/** The identity of the file now at `path`; undefined when there is none. */
export async function currentIdentity(path: string): Promise<FileIdentity | undefined> {
  try {
    return identityOf(await stat(path, { bigint: true }))
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw err
  }
}

export async function syncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r')
  try {
    await handle.sync()
  } finally {
    await handle.close()
  }
}
