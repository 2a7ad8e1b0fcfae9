/**
 * Locks for host changes. Requests lock the object keys they change (in sorted order, so two
 * requests never wait on each other in a circle) and run side by side when their keys differ;
 * a full reconcile runs alone (util/shared-exclusive-lock.ts), because it would take a half-made
 * change for drift.
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
