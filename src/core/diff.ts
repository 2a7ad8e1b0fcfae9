/**
 * The one diff: desired objects against what the host has, for a set of keys, into an ordered
 * list of changes. Pure; the engine observes, calls this, and applies the result.
 */
import { conflict } from '../errors.js'
import { type HostObject, type LinkObject, type Op, isOwned, keyOf, linkOf, rankOf, sameObject, updatable } from './objects.js'

export interface DiffResult {
  ops: Op[]
  /** Desired objects that are missing and must not be re-created (see LinkObject.recreate). */
  missing: HostObject[]
  /** Desired keys held by something tsnet does not own: nothing may be changed. */
  foreign: Array<{ want: HostObject; have: HostObject }>
}

/**
 * Changes that make the objects at `keys` what `desired` says: create what is missing, bring
 * to spec what differs, delete what tsnet owns and nobody wants. Objects tsnet does not own are
 * never changed: a desired key they hold is reported as foreign. Deletions come first, in
 * reverse creation order, and skip what goes with a deleted link; then creations and updates.
 */
export function diff(
  keys: Iterable<string>, desired: ReadonlyMap<string, HostObject>, observed: ReadonlyMap<string, HostObject>,
  /** A tsnet link whose owner no record has any more: the wanting owner takes it over, as an untagged one. */
  orphaned: (have: LinkObject) => boolean = () => false,
): DiffResult {
  const deletes: HostObject[] = []
  const changes: Op[] = []
  const missing: HostObject[] = []
  const foreign: DiffResult['foreign'] = []
  for (const key of new Set(keys)) {
    const want = desired.get(key)
    const have = observed.get(key)
    if (want && !have) {
      if (want.kind !== 'link' || want.recreate) changes.push({ op: 'create', obj: want })
      else if (!want.inSandbox) missing.push(want)
    } else if (want && have) {
      if (sameObject(want, have)) continue
      if (have.kind === 'link' && want.kind === 'link' && (!isOwned(have) || (have.alias !== '' && have.alias !== want.alias && !orphaned(have)))) {
        foreign.push({ want, have })
      } else if (updatable(want, have)) {
        changes.push({ op: 'update', obj: want, from: have })
      } else {
        deletes.push(have)
        changes.push({ op: 'create', obj: want })
      }
    } else if (!want && have && isOwned(have)) {
      deletes.push(have)
    }
  }
  const goneLinks = new Set(deletes.flatMap((o) => (o.kind === 'link' ? [o.name] : [])))
  // What sits on a link that is missing for good (a joined veth whose container went) cannot be made either.
  const absent = new Set(missing.flatMap((o) => (o.kind === 'link' ? [o.name] : [])))
  for (const op of [...changes]) {
    const on = linkOf(op.obj)
    if (op.op !== 'create' || on === undefined || !absent.has(on)) continue
    changes.splice(changes.indexOf(op), 1)
    missing.push(op.obj)
  }
  const ops: Op[] = [
    ...deletes
      .filter((o) => !goneLinks.has(linkOf(o) ?? '\0'))
      .sort((a, b) => rankOf(b) - rankOf(a))
      .map((obj): Op => ({ op: 'delete', obj })),
    ...changes.sort((a, b) => rankOf(a.obj) - rankOf(b.obj)),
  ]
  return { ops, missing, foreign }
}

/** Refuses a plan that would need to change what tsnet does not own, naming the first such object. */
export function refuseForeign(result: DiffResult): void {
  const first = result.foreign[0]
  if (!first) return
  throw conflict(foreignSentence(first.want, first.have))
}

export function foreignSentence(want: HostObject, have: HostObject): string {
  if (want.kind === 'link' && have.kind === 'link') {
    if (isOwned(have)) return `a link named ${want.name} already exists and belongs to another tsnet object (${have.alias})`
    return `a link named ${want.name} already exists and is not tsnet's (${have.alias ? `it belongs to ${have.alias}` : 'it has no tsnet tag'})`
  }
  return `${keyOf(want)} is already on the host and is not tsnet's`
}

/** A short, stable description of one change for logs and error messages. */
export function describeOp(op: Op): string {
  return `${op.op} ${keyOf(op.obj)}`
}
