/**
 * What tsnet wants on the host, by owner (a network, an endpoint, a network's policy, Docker's
 * subnets) and by key. Several owners may want one key (the chains, a subnet two networks share,
 * ip_forward): the key is wanted while any owner wants it, so shared objects need no reference
 * counting of their own. A request stages the new objects of the owners it changes, applies the
 * diff over the keys those owners touch, and commits only once host and store agree.
 */
import { type HostObject, keyOf } from '../core/objects.js'

export type OwnedObjects = ReadonlyMap<string, HostObject>

const NO_OWNERS: ReadonlySet<string> = new Set()

export class DesiredIndex {
  private readonly byOwner = new Map<string, OwnedObjects>()
  private readonly byKey = new Map<string, Set<string>>()

  /** The wanted object at `key`: the one of the first owner (sorted), so the choice is stable. */
  get(key: string): HostObject | undefined {
    const first = smallest(this.byKey.get(key) ?? [])
    return first === undefined ? undefined : this.byOwner.get(first)?.get(key)
  }

  keys(): IterableIterator<string> {
    return this.byKey.keys()
  }

  owners(): IterableIterator<string> {
    return this.byOwner.keys()
  }

  ownersOf(key: string): ReadonlySet<string> {
    return this.byKey.get(key) ?? NO_OWNERS
  }

  objectsOf(owner: string): OwnedObjects {
    return this.byOwner.get(owner) ?? new Map()
  }

  /** A view with the objects of some owners replaced (undefined: the owner is gone); the index is unchanged. */
  stage(changes: ReadonlyMap<string, HostObject[] | undefined>): Staged {
    return new Staged(this, changes)
  }

  /** Makes a staged view the truth. */
  commit(staged: Staged): void {
    for (const [owner, objects] of staged.next) this.replace(owner, objects)
  }

  private replace(owner: string, objects: OwnedObjects | undefined): void {
    for (const key of this.byOwner.get(owner)?.keys() ?? []) {
      const owners = this.byKey.get(key)
      owners?.delete(owner)
      if (owners?.size === 0) this.byKey.delete(key)
    }
    if (!objects || objects.size === 0) {
      this.byOwner.delete(owner)
      return
    }
    this.byOwner.set(owner, objects)
    for (const key of objects.keys()) {
      let owners = this.byKey.get(key)
      if (!owners) this.byKey.set(key, (owners = new Set()))
      owners.add(owner)
    }
  }
}

/** The first of some owners in sort order, found without sorting (this runs once per wanted key). */
function smallest(owners: Iterable<string>): string | undefined {
  let first: string | undefined
  for (const o of owners) if (first === undefined || o < first) first = o
  return first
}

export class Staged {
  readonly next = new Map<string, OwnedObjects | undefined>()
  /** Keys whose wanted object may differ between the index and this view. */
  readonly touched = new Set<string>()

  constructor(private readonly base: DesiredIndex, changes: ReadonlyMap<string, HostObject[] | undefined>) {
    for (const [owner, objects] of changes) {
      const map = objects ? new Map(objects.map((o) => [keyOf(o), o])) : undefined
      this.next.set(owner, map)
      for (const k of base.objectsOf(owner).keys()) this.touched.add(k)
      for (const k of map?.keys() ?? []) this.touched.add(k)
    }
  }

  /** The wanted object at `key` in this view. */
  get(key: string): HostObject | undefined {
    let first: string | undefined
    for (const [owner, objects] of this.next) if (objects?.has(key) && (first === undefined || owner < first)) first = owner
    for (const owner of this.base.ownersOf(key)) if (!this.next.has(owner) && (first === undefined || owner < first)) first = owner
    if (first === undefined) return undefined
    return (this.next.has(first) ? this.next.get(first) : this.base.objectsOf(first))?.get(key)
  }

  /** The wanted objects of every touched key, before (the index) and after (this view). */
  wanted(): { before: Map<string, HostObject>; after: Map<string, HostObject> } {
    const before = new Map<string, HostObject>()
    const after = new Map<string, HostObject>()
    for (const k of this.touched) {
      const b = this.base.get(k)
      const a = this.get(k)
      if (b) before.set(k, b)
      if (a) after.set(k, a)
    }
    return { before, after }
  }
}
