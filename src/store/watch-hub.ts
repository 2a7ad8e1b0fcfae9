/**
 * Watches for a store that sees every write itself (one process): each transaction's events are
 * kept in a bounded history and handed to the watchers whose prefix they fall under, asynchronously
 * and in revision order. A watch from a revision the history no longer holds is reset.
 */
import type { Revision, Unwatch, WatchEvent } from './store.js'

interface Watcher {
  prefix: string
  onEvents: (events: WatchEvent[]) => void
  queue: WatchEvent[][]
  scheduled: boolean
}

export class WatchHub {
  private readonly history: Array<{ rev: Revision; events: WatchEvent[] }> = []
  /** Every revision up to this one is gone from the history. */
  private compacted: Revision = 0n
  private readonly watchers = new Set<Watcher>()

  constructor(private readonly keep: number) {}

  /** Records one transaction's events (all of one revision) and hands them out. */
  publish(rev: Revision, events: WatchEvent[]): void {
    if (events.length === 0) return
    this.history.push({ rev, events })
    while (this.history.length > this.keep) this.compacted = (this.history.shift() as { rev: Revision }).rev
    for (const w of this.watchers) this.deliver(w, events)
  }

  watch(prefix: string, afterRev: Revision, onEvents: (events: WatchEvent[]) => void, onReset: () => void): Unwatch {
    if (afterRev < this.compacted) {
      queueMicrotask(onReset)
      return () => undefined
    }
    const w: Watcher = { prefix, onEvents, queue: [], scheduled: false }
    for (const batch of this.history) if (batch.rev > afterRev) this.deliver(w, batch.events)
    this.watchers.add(w)
    return () => {
      this.watchers.delete(w)
      w.queue.length = 0
    }
  }

  close(): void {
    for (const w of this.watchers) w.queue.length = 0
    this.watchers.clear()
  }

  private deliver(w: Watcher, events: WatchEvent[]): void {
    const mine = events.filter((e) => e.key.startsWith(w.prefix))
    if (mine.length === 0) return
    w.queue.push(mine)
    if (w.scheduled) return
    w.scheduled = true
    queueMicrotask(() => {
      w.scheduled = false
      while (w.queue.length > 0) {
        const batch = w.queue.shift() as WatchEvent[]
        try {
          w.onEvents(batch)
        } catch {
          // A watcher's own failure is its business; the others still get their events.
        }
      }
    })
  }
}
