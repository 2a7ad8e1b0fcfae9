/**
 * A lock with two modes: shared holders run together, an exclusive holder runs alone. Waiters
 * are served in arrival order, so a stream of shared holders cannot starve an exclusive one.
 */
export class SharedExclusiveLock {
  private shared = 0
  private exclusive = false
  private readonly waiting: Array<{ exclusive: boolean; grant: () => void }> = []

  async run<T>(exclusive: boolean, fn: () => Promise<T>): Promise<T> {
    await this.acquire(exclusive)
    try {
      return await fn()
    } finally {
      if (exclusive) this.exclusive = false
      else this.shared--
      this.wake()
    }
  }

  private acquire(exclusive: boolean): Promise<void> {
    if (this.waiting.length === 0 && this.free(exclusive)) {
      this.take(exclusive)
      return Promise.resolve()
    }
    return new Promise((grant) => this.waiting.push({ exclusive, grant }))
  }

  private free(exclusive: boolean): boolean {
    return !this.exclusive && (!exclusive || this.shared === 0)
  }

  private take(exclusive: boolean): void {
    if (exclusive) this.exclusive = true
    else this.shared++
  }

  private wake(): void {
    while (this.waiting.length > 0) {
      const next = this.waiting[0] as { exclusive: boolean; grant: () => void }
      if (!this.free(next.exclusive)) return
      this.waiting.shift()
      this.take(next.exclusive)
      next.grant()
    }
  }
}
