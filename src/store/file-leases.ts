/**
 * The file store's leases: granted, attached to keys and ended in this process only. They never
 * expire (one host has nobody to outlive), so nothing here keeps them alive.
 */
export class FileLeases {
  private readonly keysOf = new Map<string, Set<string>>()
  private readonly leaseOfKey = new Map<string, string>()
  private counter = 0

  grant(): string {
    const id = `${process.pid.toString(16)}-${(++this.counter).toString(16)}`
    this.keysOf.set(id, new Set())
    return id
  }

  live(id: string): boolean {
    return this.keysOf.has(id)
  }

  /** The lease `key` is attached to. */
  of(key: string): string | undefined {
    return this.leaseOfKey.get(key)
  }

  /** Attaches `key` to `lease`, or detaches it (undefined): a put without a lease or a delete. */
  attach(key: string, lease: string | undefined): void {
    const before = this.leaseOfKey.get(key)
    if (before !== undefined) this.keysOf.get(before)?.delete(key)
    if (lease === undefined) {
      this.leaseOfKey.delete(key)
    } else {
      this.leaseOfKey.set(key, lease)
      this.keysOf.get(lease)?.add(key)
    }
  }

  /** Ends a lease; returns the keys still attached to it (to delete). */
  end(id: string): string[] {
    const keys = [...(this.keysOf.get(id) ?? [])]
    this.keysOf.delete(id)
    return keys
  }
}
