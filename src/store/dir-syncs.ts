/**
 * Directory fsyncs shared by concurrent writers. A durable create is only durable once its
 * directory is synced, and every create in a collection syncs the same directory: at 16
 * concurrent creates that was 16 journal commits queued on libuv's four threads. A writer that
 * asks while a sync of its directory runs cannot use that one (it may have begun before the
 * writer's link or rename), so it waits for the next, which every writer asking meanwhile
 * shares. Each writer still resolves only after a sync that began after it asked.
 */
import { syncDir } from './record-files.js'

interface DirState {
  running: Promise<void>
  /** The sync that starts when `running` ends, shared by everyone who asked since it began. */
  next?: Promise<void>
}

export class DirSyncs {
  private readonly dirs = new Map<string, DirState>()

  constructor(private readonly syncOnce: (dir: string) => Promise<void> = syncDir) {}

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
