/** A transaction's arguments checked and turned into writes, before anything touches the disk. */
import { errorMessage, invalid, quote } from '../errors.js'
import { parseKey } from './keys.js'
import { type FileIdentity, tmpNameFor } from './record-files.js'
import type { Condition, Write } from './store.js'

/** A write, checked and (for a put) given its temporary file; `create` when an absent condition guards it. */
export type Prepared =
  | { kind: 'put'; key: string; dir: string; path: string; text: string; lease?: string; create: boolean; tmp: string; identity?: FileIdentity }
  | { kind: 'delete'; key: string; dir: string; path: string }

/** Checks the call's arguments; nothing touches the disk before they are all right. */
export function prepareWrites(
  when: readonly Condition[], then: readonly Write[],
  pathOf: (collection: string, id: string) => { dir: string; path: string }, leaseLive: (lease: string) => boolean,
): Prepared[] {
  if (!Array.isArray(when) || !Array.isArray(then)) throw invalid('a transaction takes a list of conditions and a list of writes')
  const creates = new Set<string>()
  for (const c of when) {
    parseKey((c as Condition | null)?.key)
    if ('absent' in c && c.absent === true) creates.add(c.key)
    else if (!('rev' in c) || typeof c.rev !== 'bigint') throw invalid(`the condition on ${quote(c.key)} is neither { absent: true } nor { rev: <bigint> }`)
  }
  return checkWrites(then, leaseLive, 'was revoked').map((w): Prepared => {
    const { dir, path } = pathOf(w.collection, w.id)
    if (w.text === undefined) return { kind: 'delete', key: w.key, dir, path }
    return { kind: 'put', key: w.key, dir, path, text: w.text, create: creates.has(w.key), tmp: tmpNameFor(path), ...(w.lease === undefined ? {} : { lease: w.lease }) }
  })
}

/** A write whose key, value and lease were checked: `text` is the value as JSON (absent: a delete). */
export interface CheckedWrite {
  key: string
  collection: string
  id: string
  text?: string
  lease?: string
}

/**
 * The checks every store makes of a transaction's writes: keys well formed and written once,
 * values JSON, leases live (`leaseGone` ends the refusal: how a lease stops being usable there).
 */
export function checkWrites(then: readonly Write[], leaseLive: (lease: string) => boolean, leaseGone: string): CheckedWrite[] {
  if (!Array.isArray(then)) throw invalid('a transaction takes a list of conditions and a list of writes')
  const seen = new Set<string>()
  return then.map((w): CheckedWrite => {
    const key = w !== null && typeof w === 'object' && 'put' in w ? w.put : (w as { delete?: unknown } | null)?.delete
    const { collection, id } = parseKey(key)
    if (seen.has(key as string)) throw invalid(`a transaction writes ${quote(key)} twice`)
    seen.add(key as string)
    if (!('put' in w)) return { key: w.delete, collection, id }
    let text: string | undefined
    try {
      text = JSON.stringify(w.value)
    } catch (err) {
      throw invalid(`the value for ${quote(w.put)} cannot be stored as JSON: ${errorMessage(err)}`)
    }
    if (text === undefined) throw invalid(`the value for ${quote(w.put)} is not a JSON value`)
    if (w.lease !== undefined && !leaseLive(w.lease)) throw invalid(`lease ${quote(w.lease)} was not granted by this store, or ${leaseGone}`)
    return { key: w.put, collection, id, text, ...(w.lease === undefined ? {} : { lease: w.lease }) }
  })
}

