/**
 * What Swarm tells a global-scope driver, for overlay networks: the hosts of the swarm
 * (DiscoverNew/DiscoverDelete, and each network's peer list from Docker's API in the
 * background), this node's data-path address, and after each Join a gratuitous ARP of the new
 * container to the other hosts. The peer book is persisted (Docker does not tell a restarted
 * plugin again) and every change of it is brought to each overlay network's flood entries and
 * VTEP set at once; the VNIs of the leader live in services/vni-service.ts.
 */
import type { Logger } from 'pino'
import { announcement } from '../core/vxlan-frame.js'
import { parseCidr, formatIp } from '../core/addr.js'
import type { OverlayNetwork } from '../core/records.js'
import { errorMessage } from '../errors.js'
import type { Host } from '../host/host.js'
import type { Announcer } from '../host/vxlan-announcer.js'
import type { OverlayView, PlanContext } from '../modes/mode.js'
import { EMPTY_BOOK, contactAdvanced, departed, discovered, floodList, fromDocker, nodeAddress, peerEntries, remembered, sameBook, type PeerBook } from '../modes/overlay-peers.js'
import type { OverlayPeersStatus } from '../observe/daemon-status.js'
import type { DiscoveryRequest, EndpointRef } from '../protocol/types.js'
import type { Store } from '../store/store.js'
import { KeyedLock } from '../util/keyed-lock.js'
import type { NetworkDriver } from './network-driver.js'
import { netOwner, short } from './network-state.js'

export const PEERS_META = 'swarm-peers'
/** DiscoveryType of node discovery (the only kind Docker forwards to remote drivers). */
const NODE_DISCOVERY = 1
/** After a failed change of the flood entries, the next try. */
const RETRY_MS = 5000
/** A second announcement, once the container's interface is surely up: one lost datagram costs nothing. */
const ANNOUNCE_AGAIN_MS = 1000
/** A book whose peers did not change is written again only when a last contact moved this much. */
const CONTACT_PERSIST_MS = 60_000

export class SwarmService {
  private book: PeerBook = EMPTY_BOOK
  /** The book as last written to the store. */
  private stored: PeerBook = EMPTY_BOOK
  /** Told of each change of the peers (metrics): how many came and went. */
  onChange: ((added: number, gone: number) => void) | undefined
  private readonly lock = new KeyedLock()
  private retry: NodeJS.Timeout | undefined
  private readonly timers = new Set<NodeJS.Timeout>()

  constructor(
    private readonly driver: NetworkDriver,
    private readonly store: Store,
    private readonly host: Host,
    private readonly announcer: Announcer,
    private readonly scope: 'local' | 'global',
    private readonly now: () => string = () => new Date().toISOString(),
  ) {
    driver.state.overlay = () => this.view()
  }

  /** The book of the last run: remembered, to be confirmed (nothing is replayed to a new process). */
  async load(): Promise<void> {
    const saved = (await this.store.list<PeerBook>('meta')).find((r) => r.id === PEERS_META)?.value
    if (saved) {
      this.stored = saved
      this.book = remembered(saved)
    }
  }

  /** This node and every peer with how it is known and its last contact. */
  status(): OverlayPeersStatus {
    return { ...(this.book.self !== undefined ? { self: this.book.self } : {}), peers: peerEntries(this.book) }
  }

  view(): OverlayView {
    return { ...(this.book.self !== undefined ? { local: this.book.self } : {}), peers: floodList(this.book) }
  }

  /** For CreateNetwork of an overlay network: where this node sends from, and that interface's MTU. */
  async underlay(): Promise<PlanContext['underlay']> {
    const address = this.book.self
    if (address === undefined) return {}
    const link = await this.host.underlayOf?.(address)
    return { address, ...(link ? { mtu: link.mtu } : {}) }
  }

  discoverNew(req: DiscoveryRequest, log: Logger) {
    return this.discovery(req, true, log)
  }

  discoverDelete(req: DiscoveryRequest, log: Logger) {
    return this.discovery(req, false, log)
  }

  private async discovery(req: DiscoveryRequest, added: boolean, log: Logger): Promise<object> {
    // A local-scope driver has no overlay networks: what Docker says about nodes changes nothing.
    if (req.DiscoveryType !== NODE_DISCOVERY || this.scope !== 'global') return {}
    const data = (req.DiscoveryData ?? {}) as { Address?: unknown; Self?: unknown }
    const address = nodeAddress(data.Address)
    if (address === undefined) {
      log.warn({ discovery: req.DiscoveryData }, 'node discovery without a usable address: ignored')
      return {}
    }
    const self = data.Self === true
    const at = this.now()
    await this.change((b) => (added ? discovered(b, address, self, at) : self ? b : departed(b, address)),
      `${added ? 'adding' : 'removing'} ${self ? 'this node' : 'host'} ${address}`, log)
    return {}
  }

  /** Each overlay network's peer list as Docker's API shows it (read in the background, never in a driver call). */
  dockerPeers(lists: Iterable<readonly string[]>, log: Logger): Promise<void> {
    const canonical = [...lists].map((l) => l.flatMap((a) => nodeAddress(a) ?? []))
    const at = this.now()
    return this.change((b) => fromDocker(b, canonical, at), "applying Docker's peer lists", log)
  }

  /**
   * Store first (a failed write changes nothing), then every overlay network's objects. Only
   * last contacts moved: kept in memory, and written at most once a minute.
   */
  private change(next: (b: PeerBook) => PeerBook, doing: string, log: Logger): Promise<void> {
    return this.lock.run('book', async () => {
      const before = this.book
      const after = next(before)
      const same = sameBook(before, after)
      if (same && !contactAdvanced(this.stored, after, CONTACT_PERSIST_MS)) {
        this.book = after
        return
      }
      await this.store.put('meta', PEERS_META, after)
      this.stored = after
      this.book = after
      if (same) return
      const gone = floodList(before).filter((a) => !after.peers[a])
      const added = floodList(after).filter((a) => !before.peers[a])
      log.info({ self: after.self, added, gone, peers: floodList(after).length }, `swarm hosts changed: ${doing}`)
      if (added.length + gone.length > 0) this.onChange?.(added.length, gone.length)
      await this.applyAll(doing, log)
    })
  }

  private overlays(): OverlayNetwork[] {
    return [...this.driver.state.networks.values()].filter((n): n is OverlayNetwork => n.mode === 'overlay')
  }

  /** Renders every overlay network again under its lock; a failure is retried (the index keeps the old objects until one succeeds). */
  private async applyAll(doing: string, log: Logger): Promise<void> {
    let failed = false
    for (const { id } of this.overlays()) {
      await this.driver.lock.run(id, async () => {
        const n = this.driver.state.networks.get(id)
        if (!n) return
        await this.driver.engine.change(new Map([[netOwner(id), this.driver.state.renderNetwork(n)]]), { doing: `${doing} on network ${short(id)}`, log })
      }).catch((err: unknown) => {
        failed = true
        log.error({ err, network: id }, 'overlay flood entries not brought up to date; retrying')
      })
    }
    if (failed && !this.retry) {
      this.retry = setTimeout(() => {
        this.retry = undefined
        void this.lock.run('book', () => this.applyAll('retrying the swarm hosts', log))
      }, RETRY_MS)
      this.retry.unref()
    }
  }

  /**
   * After a Join on an overlay network: tell the other hosts where the container is, now and a
   * moment later (research §2: a moved address is a 32 s black hole without it, 0.04 s with it).
   * Fire and forget; never delays the answer to Docker.
   */
  joined(req: EndpointRef, log: Logger): void {
    const n = this.driver.state.networks.get(req.NetworkID)
    const e = this.driver.state.endpoints.get(req.EndpointID)
    const local = this.book.self
    const ip = e?.address ? parseCidr(e.address)?.ip : undefined
    if (n?.mode !== 'overlay' || !e || !ip || ip.family !== 4 || local === undefined) return
    const peers = this.view().peers
    if (peers.length === 0) return
    let payload: Buffer
    try {
      payload = announcement(n.spec.vni, e.mac, formatIp(ip))
    } catch (err) {
      log.warn({ err, endpoint: e.id }, 'no announcement for this endpoint')
      return
    }
    const send = () => this.announcer.send(local, peers, n.spec.port, payload)
      .then(() => log.debug({ endpoint: e.id, mac: e.mac, peers: peers.length }, 'endpoint announced to the other hosts'))
      .catch((err: unknown) => log.warn({ endpoint: e.id, error: errorMessage(err) }, 'announcing the endpoint failed: the hosts learn it from its first packet'))
    void send()
    const again = setTimeout(() => {
      this.timers.delete(again)
      void send()
    }, ANNOUNCE_AGAIN_MS)
    again.unref()
    this.timers.add(again)
  }

  stop(): void {
    if (this.retry) clearTimeout(this.retry)
    for (const t of this.timers) clearTimeout(t)
    this.timers.clear()
  }
}
