/**
 * Locks for host changes. Requests lock the object keys they change (in sorted order, so two
 * requests never wait on each other in a circle) and run side by side when their keys differ;
 * a full reconcile runs alone, because it would take a half-made change for drift.
 */
export class KeySetLock {
  private readonly tails = new Map<string, Promise<void>>()

  /** Waits until every key is free, holds them all, and returns the function that frees them. */
  async acquire(keys: Iterable<string>): Promise<() => void> {
    const sorted = [...new Set(keys)].sort()
    const releases: Array<() => void> = []
    for (const key of sorted) {
      const previous = this.tails.get(key) ?? Promise.resolve()
      let release!: () => void
      const mine = new Promise<void>((r) => { release = r })
      const tail = previous.then(() => mine)
      this.tails.set(key, tail)
      await previous
      releases.push(() => {
        release()
        if (this.tails.get(key) === tail) this.tails.delete(key)
      })
    }
    return () => { for (const r of releases.reverse()) r() }
  }
}

/** Many shared holders or one exclusive holder; a waiting exclusive holder goes before new shared ones. */
export class SharedExclusiveGate {
  private shared = 0
  private exclusive = false
  private readonly waiting: Array<{ exclusive: boolean; go: () => void }> = []

  async run<T>(exclusive: boolean, fn: () => Promise<T>): Promise<T> {
    await this.enter(exclusive)
    try {
      return await fn()
    } finally {
      this.leave(exclusive)
    }
  }

  private enter(exclusive: boolean): Promise<void> {
    const free = exclusive ? !this.exclusive && this.shared === 0 : !this.exclusive && !this.waiting.some((w) => w.exclusive)
    if (free && this.waiting.length === 0) {
      if (exclusive) this.exclusive = true
      else this.shared++
      return Promise.resolve()
    }
    return new Promise((go) => this.waiting.push({ exclusive, go }))
  }

  private leave(exclusive: boolean): void {
    if (exclusive) this.exclusive = false
    else this.shared--
    while (this.waiting.length > 0 && !this.exclusive) {
      const next = this.waiting[0] as { exclusive: boolean; go: () => void }
      if (next.exclusive && this.shared > 0) break
      this.waiting.shift()
      if (next.exclusive) this.exclusive = true
      else this.shared++
      next.go()
      if (next.exclusive) break
    }
  }
}
