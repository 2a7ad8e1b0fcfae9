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
  const seen = new Set<string>()
  return then.map((w): Prepared => {
    const key = w !== null && typeof w === 'object' && 'put' in w ? w.put : (w as { delete?: unknown } | null)?.delete
    const { collection, id } = parseKey(key)
    if (seen.has(key as string)) throw invalid(`a transaction writes ${quote(key)} twice`)
    seen.add(key as string)
    const { dir, path } = pathOf(collection, id)
    if (!('put' in w)) return { kind: 'delete', key: w.delete, dir, path }
    let text: string | undefined
    try {
      text = JSON.stringify(w.value)
    } catch (err) {
      throw invalid(`the value for ${quote(w.put)} cannot be stored as JSON: ${errorMessage(err)}`)
    }
    if (text === undefined) throw invalid(`the value for ${quote(w.put)} is not a JSON value`)
    if (w.lease !== undefined && !leaseLive(w.lease)) throw invalid(`lease ${quote(w.lease)} was not granted by this store, or was revoked`)
    return { kind: 'put', key: w.put, dir, path, text, create: creates.has(w.put), tmp: tmpNameFor(path), ...(w.lease === undefined ? {} : { lease: w.lease }) }
  })
}

