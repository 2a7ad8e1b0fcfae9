/**
 * Where every endpoint of every cluster network lives, through the cluster store.
 *
 * - This host registers its endpoints under its lease: `cluster-endpoints/<name>/<hostId>/<id>`
 *   = `{ ip, mac, vtep }`. When the host dies, etcd deletes them with its lease (TTL ≤ 10 s).
 *   After a lost lease the registrations are written again under the new one.
 * - Every host lists and then watches the prefix, and hands the other hosts' endpoints to the
 *   renderer (static FDB and neighbour entries). A watch that ends (etcd unreachable, history
 *   compacted) lists again once etcd answers; meanwhile the last known entries stay programmed,
 *   so a store outage never touches the data plane.
 */
import type { Logger } from 'pino'
import { errorMessage } from '../errors.js'
import type { RemoteEndpoint } from '../modes/mode.js'
import type { Store, WatchEvent } from '../store/store.js'
import type { ClusterLiveness } from './cluster-liveness.js'
import { RepeatedFailure } from '../util/repeated-failure.js'

export const LOCATIONS = 'cluster-endpoints/'
const locationKey = (name: string, hostId: string, endpointId: string) => `${LOCATIONS}${name}/${hostId}/${endpointId}`

export interface LocalEndpoint {
  network: string
  endpointId: string
  ip: string
  ipv6?: string
  mac: string
}

/** Pause before listing again after the watch ended or the store failed. */
const RETRY_MS = 1000
/** Registrations are compared with the host's endpoints this often even without a change. */
const SYNC_EVERY_MS = 5000
/** How long a location the store deleted stays programmed (a re-registration within it keeps traffic flowing). */
export const REMOVE_AFTER_MS = 3000

interface Parsed { network: string; hostId: string; value: RemoteEndpoint }

function parse(key: string, value: unknown): Parsed | undefined {
  const parts = key.slice(LOCATIONS.length).split('/')
  if (parts.length !== 3 || typeof value !== 'object' || value === null) return undefined
  const v = value as Record<string, unknown>
  if (typeof v.ip !== 'string' || typeof v.mac !== 'string' || typeof v.vtep !== 'string') return undefined
  const ipv6 = typeof v.ipv6 === 'string' ? { ipv6: v.ipv6 } : {}
  return { network: parts[0] ?? '', hostId: parts[1] ?? '', value: { ip: v.ip, mac: v.mac, vtep: v.vtep, ...ipv6 } }
}

export class ClusterLocations {
  /** Other hosts' endpoints: network name → key → where. */
  private readonly remotes = new Map<string, Map<string, RemoteEndpoint>>()
  /** What this host wrote under `registeredLease`: key → value as JSON. */
  private registered = new Map<string, string>()
  private registeredLease: string | undefined
  private unwatch: (() => void) | undefined
  private stopped = false
  private syncing: Promise<void> | undefined
  private again = false
  private syncTimer: NodeJS.Timeout | undefined
  private followTimer: NodeJS.Timeout | undefined
  /** Locations the store deleted, until they are removed here too (see removeSoon). */
  private readonly leaving = new Map<string, NodeJS.Timeout>()
  /** True once the store was listed: until then `view` knows nothing (the caller keeps its last copy). */
  listed = false
  private readonly writeFailures: RepeatedFailure
  private readonly listFailures: RepeatedFailure

  constructor(
    private readonly store: Store,
    private readonly liveness: ClusterLiveness,
    private readonly vtep: string,
    private readonly local: () => LocalEndpoint[],
    /** Called with the cluster networks whose remote endpoints changed (an empty set: every one). */
    private readonly onChange: (networks: Set<string>) => void,
    private readonly log: Logger,
  ) {
    this.writeFailures = new RepeatedFailure(log, 'endpoint registrations not written to the cluster store; retrying')
    this.listFailures = new RepeatedFailure(log, 'endpoint locations not listed from the cluster store; the entries programmed stay, retrying')
  }

  /** The other hosts' endpoints of a cluster network. */
  view = (network: string): RemoteEndpoint[] => [...(this.remotes.get(network)?.values() ?? [])]

  /** Every network's remote endpoints (for the host's copy that bridges a restart). */
  all(): Record<string, RemoteEndpoint[]> {
    return Object.fromEntries([...this.remotes].map(([n, m]) => [n, [...m.values()]]))
  }

  /** How many remote endpoints are known (for status and metrics). */
  get size(): number {
    let n = 0
    for (const m of this.remotes.values()) n += m.size
    return n
  }

  start(): void {
    void this.follow()
    const tick = () => {
      this.changed()
      if (!this.stopped) this.syncTimer = setTimeout(tick, SYNC_EVERY_MS).unref()
    }
    tick()
  }

  /** The host's endpoints changed (or may have): bring the registrations to them soon. */
  changed(): void {
    if (this.stopped) return
    if (this.syncing) {
      this.again = true
      return
    }
    this.syncing = this.sync().then(() => this.writeFailures.succeeded('endpoint registrations written to the cluster store again'), (err: unknown) => {
      this.writeFailures.failed(errorMessage(err))
    }).finally(() => {
      this.syncing = undefined
      if (this.again) {
        this.again = false
        this.changed()
      }
    })
  }

  /** Settles once the registrations written now are in the store (tests, and CreateEndpoint's answer). */
  async settled(): Promise<void> {
    while (this.syncing) await this.syncing
  }

  stop(): void {
    this.stopped = true
    this.unwatch?.()
    clearTimeout(this.syncTimer)
    clearTimeout(this.followTimer)
    for (const timer of this.leaving.values()) clearTimeout(timer)
  }

  private async sync(): Promise<void> {
    const lease = this.liveness.currentLease()
    if (!lease) return // not registered yet, or the lease was lost: the registration loop brings a new one
    if (lease.id !== this.registeredLease) {
      this.registered = new Map()
      this.registeredLease = lease.id
    }
    const hostId = this.liveness.hostId
    const wanted = new Map<string, string>()
    for (const e of this.local()) wanted.set(locationKey(e.network, hostId, e.endpointId), JSON.stringify({ ip: e.ip, ...(e.ipv6 ? { ipv6: e.ipv6 } : {}), mac: e.mac, vtep: this.vtep }))
    for (const [key, json] of wanted) {
      if (this.registered.get(key) === json) continue
      await this.store.txn([], [{ put: key, value: JSON.parse(json) as unknown, lease: lease.id }])
      this.registered.set(key, json)
    }
    for (const key of [...this.registered.keys()]) {
      if (wanted.has(key)) continue
      await this.store.txn([], [{ delete: key }])
      this.registered.delete(key)
    }
  }

  /** Lists, then watches from the listing's revision; lists again whenever the watch ends. */
  private async follow(): Promise<void> {
    if (this.stopped) return
    try {
      const listing = await this.store.list(LOCATIONS)
      const touched = new Set<string>()
      const seen = new Set<string>()
      for (const e of listing) {
        const p = parse(e.key, e.value)
        if (!p || p.hostId === this.liveness.hostId) continue
        seen.add(e.key)
        if (this.put(e.key, p)) touched.add(p.network)
      }
      for (const [network, m] of this.remotes) for (const key of m.keys()) if (!seen.has(key)) this.removeSoon(network, key)
      this.listFailures.succeeded('endpoint locations listed from the cluster store again')
      const first = !this.listed
      this.listed = true
      // The first listing renders every network: one the host's copy had entries for may have none now.
      if (first) this.onChange(new Set())
      else if (touched.size > 0) this.onChange(touched)
      this.unwatch = this.store.watch(LOCATIONS, listing.rev, (events) => this.apply(events), () => {
        this.log.info('watch of endpoint locations ended (etcd unreachable or history compacted): listing again; the entries programmed stay')
        this.retryFollow()
      })
    } catch (err) {
      this.listFailures.failed(errorMessage(err))
      this.retryFollow()
    }
  }

  private retryFollow(): void {
    this.unwatch?.()
    this.unwatch = undefined
    if (!this.stopped) this.followTimer = setTimeout(() => void this.follow(), RETRY_MS).unref()
  }

  private apply(events: WatchEvent[]): void {
    const touched = new Set<string>()
    for (const ev of events) {
      if (ev.type === 'delete') {
        this.removeSoon(ev.key.slice(LOCATIONS.length).split('/')[0] ?? '', ev.key)
        continue
      }
      const p = parse(ev.key, ev.value)
      if (p && p.hostId !== this.liveness.hostId && this.put(ev.key, p)) touched.add(p.network)
    }
    if (touched.size > 0) this.onChange(touched)
  }

  /** Records a location; true when the network's view changed. Another entry with its address, on its way out, goes now. */
  private put(key: string, p: Parsed): boolean {
    const m = this.remotes.get(p.network) ?? new Map<string, RemoteEndpoint>()
    this.remotes.set(p.network, m)
    clearTimeout(this.leaving.get(key))
    this.leaving.delete(key)
    for (const [other, r] of m) {
      if (other !== key && r.ip === p.value.ip && this.leaving.has(other)) {
        clearTimeout(this.leaving.get(other))
        this.leaving.delete(other)
        m.delete(other)
      }
    }
    const was = m.get(key)
    m.set(key, p.value)
    return !was || was.ip !== p.value.ip || was.ipv6 !== p.value.ipv6 || was.mac !== p.value.mac || was.vtep !== p.value.vtep
  }

  /**
   * A location the store no longer has goes after REMOVE_AFTER_MS: a host whose lease etcd revoked
   * while the host was re-registering (etcd paused, then resumed) puts it back within that time,
   * and its containers' traffic never stops. A dead host's entries still go within TTL + this.
   */
  private removeSoon(network: string, key: string): void {
    if (!this.remotes.get(network)?.has(key) || this.leaving.has(key)) return
    this.leaving.set(key, setTimeout(() => {
      this.leaving.delete(key)
      if (this.remotes.get(network)?.delete(key)) this.onChange(new Set([network]))
    }, REMOVE_AFTER_MS).unref())
  }
}
