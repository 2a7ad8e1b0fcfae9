/**
 * The other hosts of the swarm, pure. Docker tells a global-scope driver about nodes with
 * DiscoverNew/DiscoverDelete, but only while it runs: a restarted plugin hears about itself only.
 * So the book is persisted, and each network's peer list from Docker's API (when tsnet may read
 * it) confirms or adds hosts. A host Docker told about stays until DiscoverDelete; a host only
 * remembered from an earlier run, or only seen in Docker's lists, goes once no list shows it.
 */
import { formatIp, parseIp } from '../core/addr.js'

export type PeerSource = 'discovery' | 'docker'

export interface PeerBook {
  /** This node's data-path address (DiscoverNew with Self). */
  self?: string
  /** Address → how tsnet knows it. */
  peers: Readonly<Record<string, PeerSource>>
  /**
   * Address → when Docker last named it (ISO): the last DiscoverNew, or the last of its peer
   * lists that held it. A book stored before this existed has none: such a peer is "never" yet.
   */
  contact?: Readonly<Record<string, string>>
}

/** One peer as `tsnet status` shows it. */
export interface PeerEntry {
  address: string
  source: PeerSource
  lastContact?: string
}

export const EMPTY_BOOK: PeerBook = { peers: {} }

/** A node address as Docker sends it, in canonical text; undefined when it is none. */
export function nodeAddress(text: unknown): string | undefined {
  if (typeof text !== 'string') return undefined
  const ip = parseIp(text)
  return ip && ip.value !== 0n ? formatIp(ip) : undefined
}

/** The contact times of the book's peers only (a departed peer's time goes with it). */
function contactOf(peers: Readonly<Record<string, PeerSource>>, times: Readonly<Record<string, string>>): Record<string, string> {
  return Object.fromEntries(Object.entries(times).filter(([a]) => peers[a] !== undefined))
}

/** DiscoverNew; `at` (ISO) is when Docker said it, the peer's last contact. */
export function discovered(book: PeerBook, address: string, self: boolean, at?: string): PeerBook {
  if (self) {
    if (book.self === address) return book
    const peers = { ...book.peers }
    delete peers[address]
    return { ...book, self: address, peers, contact: contactOf(peers, book.contact ?? {}) }
  }
  if (address === book.self) return book
  const contact = at !== undefined ? { ...book.contact, [address]: at } : book.contact
  const peers = book.peers[address] === 'discovery' ? book.peers : { ...book.peers, [address]: 'discovery' as const }
  return { ...book, peers, ...(contact ? { contact } : {}) }
}

export function departed(book: PeerBook, address: string): PeerBook {
  if (book.peers[address] === undefined) return book
  const peers = { ...book.peers }
  delete peers[address]
  return { ...book, peers, contact: contactOf(peers, book.contact ?? {}) }
}

/**
 * After a restart nothing Docker said before is certain (DiscoverDelete may have gone unheard):
 * every remembered host waits for Docker's lists or a new DiscoverNew.
 */
export function remembered(book: PeerBook): PeerBook {
  return { ...book, peers: Object.fromEntries(Object.keys(book.peers).map((a) => [a, 'docker' as const])) }
}

/**
 * Docker's peer lists of every overlay network tsnet has (all of them, read in one pass): hosts in
 * a list are added; hosts known only from lists, and in none now, go.
 */
export function fromDocker(book: PeerBook, lists: Iterable<readonly string[]>, at?: string): PeerBook {
  const seen = new Set<string>()
  for (const list of lists) for (const a of list) if (a !== book.self) seen.add(a)
  const peers: Record<string, PeerSource> = {}
  for (const [a, source] of Object.entries(book.peers)) if (source === 'discovery' || seen.has(a)) peers[a] = source
  for (const a of seen) peers[a] ??= 'docker'
  const times: Record<string, string> = { ...book.contact }
  if (at !== undefined) for (const a of seen) times[a] = at
  const contact = contactOf(peers, times)
  return { ...book, peers, ...(book.contact || Object.keys(contact).length ? { contact } : {}) }
}

/** The hosts VXLAN floods to (every peer; the mode keeps those of the underlay's family). */
export const floodList = (book: PeerBook): string[] => Object.keys(book.peers).filter((a) => a !== book.self).sort()

/** Every peer, sorted, with how tsnet knows it and when Docker last named it. */
export function peerEntries(book: PeerBook): PeerEntry[] {
  return floodList(book).map((address) => {
    const lastContact = book.contact?.[address]
    return { address, source: book.peers[address] as PeerSource, ...(lastContact !== undefined ? { lastContact } : {}) }
  })
}

/**
 * Whether `now` holds a contact time the stored book lacks or has `minMs` older: only then is
 * a book whose peers did not change worth writing again (Docker's lists come every few seconds).
 */
export function contactAdvanced(stored: PeerBook, now: PeerBook, minMs: number): boolean {
  for (const [a, at] of Object.entries(now.contact ?? {})) {
    const before = stored.contact?.[a]
    if (before === undefined || Date.parse(at) - Date.parse(before) >= minMs) return true
  }
  return false
}

/** The same peers, each known the same way (contact times aside: they change with every list). */
export function sameBook(a: PeerBook, b: PeerBook): boolean {
  return a.self === b.self && JSON.stringify(Object.entries(a.peers).sort()) === JSON.stringify(Object.entries(b.peers).sort())
}
