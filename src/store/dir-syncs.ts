/**
 * Directory fsyncs shared by concurrent writers. A durable create is only durable once its
 * directory is synced, and every create in a collection syncs the same directory: at 16
 * concurrent creates that was 16 journal commits queued on libuv's four threads. A writer that
 * asks while a sync of its directory runs cannot use that one (it may have begun before the
 * writer's link or rename), so it waits for the next, which every writer asking meanwhile
 * shares. Each writer still resolves only after a sync that began after it asked.
 *
 * Each directory's handle stays open between syncs: an fsync is then one call to the file system
 * instead of three (open, fsync, close), which is a tenth of a durable write's time here. A
 * directory the store had to make again (someone removed it) is forgotten, so the next sync opens
 * the new one; close() waits for the syncs in flight and closes the handles.
 */
import { open, type FileHandle } from 'node:fs/promises'
import { syncDir } from './record-files.js'

interface DirState {
  running: Promise<void>
  /** The sync that starts when `running` ends, shared by everyone who asked since it began. */
  next?: Promise<void>
}

export class DirSyncs {
  private readonly dirs = new Map<string, DirState>()
  private readonly handles = new Map<string, Promise<FileHandle>>()
  private closed = false
  private readonly syncOnce: (dir: string) => Promise<void>

  /** `syncOnce` replaces the kept handles (tests count and delay syncs with it). */
  constructor(syncOnce?: (dir: string) => Promise<void>) {
    this.syncOnce = syncOnce ?? ((dir) => this.syncKept(dir))
  }

  /** The directory at `dir` is not the one a kept handle refers to any more. */
  forget(dir: string): void {
    const handle = this.handles.get(dir)
    this.handles.delete(dir)
    void handle?.then((h) => h.close()).catch(() => undefined)
  }

  async close(): Promise<void> {
    this.closed = true
    await Promise.all([...this.dirs.values()].map((s) => Promise.all([s.running, s.next]).catch(() => undefined)))
    await Promise.all([...this.handles.keys()].map(async (dir) => {
      const handle = this.handles.get(dir)
      this.handles.delete(dir)
      await handle?.then((h) => h.close()).catch(() => undefined)
    }))
  }

  private async syncKept(dir: string): Promise<void> {
    if (this.closed) return syncDir(dir)
    let handle = this.handles.get(dir)
    if (!handle) {
      handle = open(dir, 'r')
      this.handles.set(dir, handle)
    }
    try {
      await (await handle).sync()
    } catch (err) {
      this.forget(dir) // a handle that failed to open or sync is not trusted again
      throw err
    }
  }

  sync(dir: string): Promise<void> {
    const state = this.dirs.get(dir)
    if (!state) return this.start(dir)
    state.next ??= state.running.catch(() => undefined).then(() => {
      state.next = undefined
      return this.start(dir)
    })
    return state.next
  }

  private start(dir: string): Promise<void> {
    const running = this.syncOnce(dir)
    const state = this.dirs.get(dir)
    if (state) state.running = running
    else this.dirs.set(dir, { running })
    running.catch(() => undefined).then(() => {
      const now = this.dirs.get(dir)
      if (now?.running === running && now.next === undefined) this.dirs.delete(dir)
    }).catch(() => undefined)
    return running
  }
}
