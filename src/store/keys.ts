/**
 * Store keys: `<collection>/<id>`. The collection is a short lowercase name (a directory of the
 * file store, a key segment in etcd); the id is any text, `/` included, that fits a file name once
 * percent-encoded. Every Store implementation refuses the same keys, so a key that works on one
 * host works in a cluster.
 */
import { invalid, quote } from '../errors.js'

const COLLECTION_NAME = /^[a-z][a-z0-9-]{0,31}$/
/** Directories under store/ that hold no records. */
const RESERVED = new Set(['quarantine'])
/** The file store's file name is `<encoded id>.json.<pid>.<n>.tmp` at its longest: this leaves room under 255 bytes. */
export const MAX_ENCODED_ID = 220

export interface ParsedKey {
  collection: string
  id: string
}

export const isCollectionName = (name: string) => COLLECTION_NAME.test(name) && !RESERVED.has(name)

/** The file name an id is stored under; throws for ids that cannot be encoded (lone surrogates). */
export const encodeId = (id: string) => encodeURIComponent(id)

/** Splits and checks a key; a bad key is a TsnetError of kind invalid naming what is wrong. */
export function parseKey(key: unknown): ParsedKey {
  if (typeof key !== 'string') throw invalid(`a store key must be a string, not ${quote(key)}`)
  const slash = key.indexOf('/')
  if (slash < 0) throw invalid(`store key ${quote(key)} has no collection: expected <collection>/<id>`)
  const collection = key.slice(0, slash)
  const id = key.slice(slash + 1)
  if (!isCollectionName(collection)) {
    throw invalid(`store key ${quote(key)} names collection ${quote(collection)}; a collection is 1 to 32 of a-z, 0-9 and - (starting with a letter), and not "quarantine"`)
  }
  if (id === '') throw invalid(`store key ${quote(key)} has an empty id`)
  let encoded: string
  try {
    encoded = encodeId(id)
  } catch {
    throw invalid(`store key ${quote(key)} is not valid Unicode text`)
  }
  if (encoded.length > MAX_ENCODED_ID) throw invalid(`store key ${quote(key)} is too long: its id takes ${encoded.length} bytes encoded, at most ${MAX_ENCODED_ID}`)
  return { collection, id }
}

/** The key of record `id` in `collection`, checked. */
export function recordKey(collection: string, id: string): string {
  const key = `${collection}/${id}`
  parseKey(key)
  return key
}

/** Whether a list or watch of `prefix` can hold keys of `collection` (string-prefix semantics, as etcd). */
export function prefixTouches(prefix: string, collection: string): boolean {
  const head = `${collection}/`
  return head.startsWith(prefix) || prefix.startsWith(head)
}
