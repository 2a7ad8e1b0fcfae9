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
}

export const EMPTY_BOOK: PeerBook = { peers: {} }

/** A node address as Docker sends it, in canonical text; undefined when it is none. */
export function nodeAddress(text: unknown): string | undefined {
  if (typeof text !== 'string') return undefined
  const ip = parseIp(text)
  return ip && ip.value !== 0n ? formatIp(ip) : undefined
}

export function discovered(book: PeerBook, address: string, self: boolean): PeerBook {
  if (self) {
    if (book.self === address) return book
    const peers = { ...book.peers }
    delete peers[address]
    return { ...book, self: address, peers }
  }
  if (address === book.self || book.peers[address] === 'discovery') return book
  return { ...book, peers: { ...book.peers, [address]: 'discovery' } }
}

export function departed(book: PeerBook, address: string): PeerBook {
  if (book.peers[address] === undefined) return book
  const peers = { ...book.peers }
  delete peers[address]
  return { ...book, peers }
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
export function fromDocker(book: PeerBook, lists: Iterable<readonly string[]>): PeerBook {
  const seen = new Set<string>()
  for (const list of lists) for (const a of list) if (a !== book.self) seen.add(a)
  const peers: Record<string, PeerSource> = {}
  for (const [a, source] of Object.entries(book.peers)) if (source === 'discovery' || seen.has(a)) peers[a] = source
  for (const a of seen) peers[a] ??= 'docker'
  return { ...book, peers }
}

/** The hosts VXLAN floods to (every peer; the mode keeps those of the underlay's family). */
export const floodList = (book: PeerBook): string[] => Object.keys(book.peers).filter((a) => a !== book.self).sort()

export function sameBook(a: PeerBook, b: PeerBook): boolean {
  return a.self === b.self && JSON.stringify(Object.entries(a.peers).sort()) === JSON.stringify(Object.entries(b.peers).sort())
}
