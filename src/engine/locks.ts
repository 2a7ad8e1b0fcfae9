/**
 * Locks for host changes. Requests lock the object keys they change (in sorted order, so two
 * requests never wait on each other in a circle) and run side by side when their keys differ;
 * a full reconcile runs alone, because it would take a half-made change for drift.
 */
export class KeySetLock {
  /** A held key, with the requests waiting for it in order; a free key has no entry. */
  private readonly held = new Map<string, Array<() => void>>()

  /** Waits until every key is free, holds them all, and returns the function that frees them. */
  async acquire(keys: Iterable<string>): Promise<() => void> {
    const sorted = [...new Set(keys)].sort()
    // A free key is taken without a promise: a request may lock tens of thousands of set members.
    for (const key of sorted) {
      const waiting = this.held.get(key)
      if (waiting === undefined) this.held.set(key, [])
      else await new Promise<void>((go) => waiting.push(go))
    }
    return () => {
      for (const key of sorted.reverse()) {
        const waiting = this.held.get(key)
        const next = waiting?.shift()
        if (next) next() // the key passes straight to the next waiter
        else this.held.delete(key)
      }
    }
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
