/** Serialises async work per key (Node interleaves awaits; Docker sends calls concurrently). */
export class KeyedLock {
  private readonly tails = new Map<string, Promise<unknown>>()

  async run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const previous = this.tails.get(key) ?? Promise.resolve()
    const current = previous.then(fn, fn)
    const tail = current.catch(() => undefined)
    this.tails.set(key, tail)
    try {
      return await current
    } finally {
      // Drop the entry once nobody queued behind us, so the map does not grow with every ID ever seen.
      if (this.tails.get(key) === tail) this.tails.delete(key)
    }
  }

  /** Resolves once all work queued by now has ended: what a handler does after answering early too. */
  async idle(): Promise<void> {
    await Promise.all([...this.tails.values()])
  }
}
