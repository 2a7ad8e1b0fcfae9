/**
 * Simulated cluster hosts for bench/cluster-scale.ts: hosts with no engine and no kernel behind
 * them that write to etcd exactly what a real tsnet writes, through tsnet's own code, so the key
 * layout and the write pattern cannot drift from it. Per host: its own EtcdStore (one gRPC client,
 * one TCP connection), ClusterLiveness (its registration `cluster-hosts/<id>` under its own lease,
 * TTL 10 s, kept alive), ClusterIpam (Docker's RequestPool: the spec and `cluster-members/<name>`;
 * RequestAddress: a claim `cluster-addresses/<name>/<ip>`, no lease) and ClusterLocations (its
 * endpoints `cluster-endpoints/<name>/<host>/<endpoint>` under its lease, one transaction each, as
 * CreateEndpoint and DeleteEndpoint make them). A simulated host only writes: its ClusterLocations
 * gets a store whose listing of locations is empty and whose watch hears nothing, so 200 hosts do
 * not each follow 5,000 locations (the one real tsnet is the one measured).
 *
 * Run by cluster-sim-client.ts inside a namespace on the underlay (it reaches etcd there). Reads
 * one JSON command per line on stdin, answers one JSON line per command on stdout (`{id, ...}`).
 * Times are process.hrtime.bigint() as strings: CLOCK_MONOTONIC, comparable across processes.
 */
import { randomBytes } from 'node:crypto'
import { createInterface } from 'node:readline'
import { Etcd3 } from 'etcd3'
import { pino } from 'pino'
import { TsnetError, errorMessage } from '../../src/errors.js'
import { ClusterIpam } from '../../src/services/cluster-ipam.js'
import { ClusterLiveness } from '../../src/services/cluster-liveness.js'
import { ClusterLocations, LOCATIONS, type LocalEndpoint } from '../../src/services/cluster-locations.js'
import { ClusterNetworks } from '../../src/services/cluster-networks.js'
import { clusterRoot, DEFAULT_CLUSTER } from '../../src/store/etcd-layout.js'
import { EtcdStore } from '../../src/store/etcd-store.js'
import {
  type Condition, type Entry, type Lease, type Listing, type Revision, StoreBase, type TxnResult, type Unwatch, type WatchEvent, type Write,
  listing,
} from '../../src/store/store.js'

const log = pino({ level: process.env.SIM_LOG_LEVEL ?? 'silent' })
const now = () => process.hrtime.bigint().toString()

/** What a host writes goes to etcd; its own following of the locations hears nothing (see above). */
class WriteOnlyLocations extends StoreBase {
  constructor(private readonly inner: EtcdStore) {
    super()
  }
  get<T>(key: string): Promise<Entry<T> | undefined> { return this.inner.get<T>(key) }
  list<T>(prefix: string): Promise<Listing<T>> {
    return prefix === LOCATIONS ? Promise.resolve(listing<T>([], 0n)) : this.inner.list<T>(prefix)
  }
  txn(when: readonly Condition[], then: readonly Write[]): Promise<TxnResult> { return this.inner.txn(when, then) }
  watch(_prefix: string, _afterRev: Revision, _onEvents: (events: WatchEvent[]) => void, _onReset: () => void): Unwatch { return () => undefined }
  lease(ttlSeconds: number): Promise<Lease> { return this.inner.lease(ttlSeconds) }
  close(): Promise<void> { return this.inner.close() }
}

interface SimEndpoint extends LocalEndpoint {
  vtep: string
  host: string
  /** The address as RequestAddress answered it, for ReleaseAddress. */
  address: string
}

interface SimHost {
  id: string
  vtep: string
  store: EtcdStore
  liveness: ClusterLiveness
  ipam: ClusterIpam
  locations: ClusterLocations
  local: SimEndpoint[]
  alive: boolean
}

const NETWORK = process.env.SIM_NETWORK ?? 'sim'
const POOL = process.env.SIM_POOL ?? '10.96.0.0/16'
const POOL_ID = `cluster/${NETWORK}/4`
const endpoints = (process.env.SIM_ETCD ?? '').split(',').filter(Boolean)
const hosts = new Map<string, SimHost>()
/** As ClusterService runs it on every host: a campaign (and, on the elected host, a sweep) every 5 s, tsnet's default grace. */
const RECLAIM_EVERY_MS = 5000
const GRACE_MS = 300_000

/** Docker's MAC for an address: 02:42 and the address's four bytes. */
const macOf = (ip: string) => `02:42:${ip.split('.').map((b) => Number(b).toString(16).padStart(2, '0')).join(':')}`
const vtepOf = (i: number) => `10.97.${(i >> 8) & 255}.${(i & 255) + 1}`

/** Runs `fn` for each item, at most `limit` at a time. */
async function eachLimit<T>(limit: number, items: readonly T[], fn: (x: T) => Promise<void>): Promise<void> {
  let next = 0
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) await fn(items[next++] as T)
  }))
}

/** A 'conflict' is what Docker's caller would see; it retries, as a user would. How many tries it took. */
async function withRetries<T>(fn: () => Promise<T>, max = 50): Promise<{ value: T; conflicts: number }> {
  for (let conflicts = 0; ; conflicts++) {
    try {
      return { value: await fn(), conflicts }
    } catch (err) {
      if (!(err instanceof TsnetError && err.kind === 'conflict') || conflicts >= max) throw err
    }
  }
}

async function up(args: { prefix: string; from: number; count: number }) {
  const started = now()
  let poolConflicts = 0
  const upMs: number[] = []
  await Promise.all(Array.from({ length: args.count }, async (_, k) => {
    const i = args.from + k
    const id = `${args.prefix}-${String(i).padStart(3, '0')}`
    const vtep = vtepOf(i)
    const store = new EtcdStore({ endpoints, log })
    let locations: ClusterLocations | undefined
    const liveness = new ClusterLiveness(store, { hostId: id, info: { vtep, underlayMtu: 1500 }, log, onRegistered: () => locations?.changed() })
    const ipam = new ClusterIpam(store, new ClusterNetworks(store, { hostId: id }), async () => [])
    const host: SimHost = { id, vtep, store, liveness, ipam, locations: undefined as unknown as ClusterLocations, local: [], alive: true }
    locations = new ClusterLocations(new WriteOnlyLocations(store), liveness, vtep, () => host.local, () => undefined, log)
    host.locations = locations
    hosts.set(id, host)
    const t0 = process.hrtime.bigint()
    await liveness.start()
    const pool = await withRetries(() => ipam.requestPool({ AddressSpace: 'LocalDefault', Pool: POOL, SubPool: '', Options: { 'tsnet.overlay': NETWORK }, V6: false }, log))
    poolConflicts += pool.conflicts
    locations.start()
    liveness.runReclaim(RECLAIM_EVERY_MS, GRACE_MS)
    upMs.push(Number(process.hrtime.bigint() - t0) / 1e6)
  }))
  return { started, done: now(), poolConflicts, upMs }
}

/** One container's address and endpoint on `host`, as Docker asks: RequestAddress, then CreateEndpoint registers it. */
async function claim(host: SimHost): Promise<SimEndpoint> {
  const { value } = await withRetries(() => host.ipam.requestAddress({ PoolID: POOL_ID, Address: '', Options: {} }, log))
  const ip = value.Address.split('/')[0] as string
  return { network: NETWORK, endpointId: randomBytes(32).toString('hex'), ip, mac: macOf(ip), vtep: host.vtep, host: host.id, address: value.Address }
}

async function register(host: SimHost, e: SimEndpoint): Promise<void> {
  host.local.push(e)
  host.locations.changed()
}

const hostsWith = (prefix: string) => [...hosts.values()].filter((h) => h.id.startsWith(`${prefix}-`) && h.alive)
const view = (e: SimEndpoint) => ({ ip: e.ip, mac: e.mac, vtep: e.vtep, host: e.host, endpointId: e.endpointId })

async function endpointsOf(args: { prefix: string; per: number }) {
  const started = now()
  const made: SimEndpoint[] = []
  await Promise.all(hostsWith(args.prefix).map(async (h) => {
    for (let k = 0; k < args.per; k++) {
      const e = await claim(h)
      await register(h, e)
      made.push(e)
    }
    await h.locations.settled()
  }))
  return { started, written: now(), endpoints: made.map(view) }
}

function hostOf(id: string): SimHost {
  const h = hosts.get(id)
  if (!h || !h.alive) throw new Error(`no live simulated host ${id}`)
  return h
}

async function add(args: { host: string }) {
  const h = hostOf(args.host)
  const e = await claim(h)
  const t0 = now()
  await register(h, e)
  await h.locations.settled()
  return { t0, acked: now(), endpoint: view(e) }
}

async function remove(args: { host: string; endpointId: string }) {
  const h = hostOf(args.host)
  const e = h.local.find((x) => x.endpointId === args.endpointId)
  if (!e) throw new Error(`host ${args.host} has no endpoint ${args.endpointId}`)
  const t0 = now()
  h.local = h.local.filter((x) => x !== e)
  h.locations.changed()
  await h.locations.settled()
  const acked = now()
  await h.ipam.releaseAddress({ PoolID: POOL_ID, Address: e.address }, log)
  return { t0, acked }
}

/** A host that dies: its keepalives stop (the client closes, nothing is revoked); etcd expires its lease. */
async function crash(args: { host: string }) {
  const h = hostOf(args.host)
  h.alive = false
  h.locations.stop()
  const t0 = now()
  await h.liveness.stop(false)
  await h.store.close()
  return { t0, endpoints: h.local.map(view) }
}

/** Hosts that go away at once (one, or all of a prefix), their leases revoked: etcd deletes their registrations and locations in one go. */
async function leave(args: { prefix?: string; host?: string }) {
  const gone = args.host !== undefined ? [hostOf(args.host)] : hostsWith(args.prefix ?? '')
  for (const h of gone) {
    h.alive = false
    h.locations.stop()
  }
  const t0 = now()
  await Promise.all(gone.map((h) => h.liveness.stop(true)))
  return { t0, revoked: now(), endpoints: gone.flatMap((h) => h.local.map(view)) }
}

/** After `leave`: their addresses released and the network left, as Docker's ReleaseAddress and ReleasePool would; stores closed. */
async function release(args: { prefix: string }) {
  const gone = [...hosts.values()].filter((h) => h.id.startsWith(`${args.prefix}-`))
  let poolConflicts = 0
  await eachLimit(32, gone, async (h) => {
    for (const e of h.local) await h.ipam.releaseAddress({ PoolID: POOL_ID, Address: e.address }, log)
    poolConflicts += (await withRetries(() => h.ipam.releasePool({ PoolID: POOL_ID }, log))).conflicts
    await h.store.close()
    hosts.delete(h.id)
  })
  return { released: gone.length, poolConflicts }
}

/** Releases a crashed host's addresses (the elected tsnet would, after the grace period). */
async function releaseCrashed(args: { host: string }) {
  const h = hosts.get(args.host)
  if (!h) return { released: 0 }
  const store = new EtcdStore({ endpoints, log })
  const networks = new ClusterNetworks(store, { hostId: h.id })
  try {
    for (const e of h.local) await networks.release(NETWORK, e.ip, h.id)
  } finally {
    await store.close()
    hosts.delete(h.id)
  }
  return { released: h.local.length }
}

/** etcd's own figures: the Prometheus text of each member, and the keys under tsnet's prefix. */
async function metrics() {
  const texts = await Promise.all(endpoints.map(async (url) => {
    const res = await fetch(`${url}/metrics`, { signal: AbortSignal.timeout(10_000) })
    return res.text()
  }))
  const client = new Etcd3({ hosts: endpoints })
  try {
    const root = clusterRoot(DEFAULT_CLUSTER)
    const count = async (prefix: string) => client.getAll().prefix(root + prefix).count()
    const keys = {
      total: await count(''), hosts: await count('cluster-hosts/'), endpoints: await count(LOCATIONS), addresses: await count('cluster-addresses/'),
      members: await count('cluster-members/'), gone: await count('cluster-gone/'),
    }
    return { at: now(), texts, keys }
  } finally {
    client.close()
  }
}

/**
 * What every peer sees of one host in etcd: its registration and its endpoint locations, read
 * every 500 ms until `observeStop`; each change of either, with its time.
 */
let observer: { stop: () => Promise<Array<{ at: string; registered: boolean; locations: number }>> } | undefined
async function observe(args: { hostId: string }) {
  await observer?.stop()
  const client = new Etcd3({ hosts: endpoints, defaultCallOptions: () => ({ deadline: Date.now() + 2000 }) })
  const root = clusterRoot(DEFAULT_CLUSTER)
  const seen: Array<{ at: string; registered: boolean; locations: number }> = []
  let stopped = false
  const loop = (async () => {
    while (!stopped) {
      try {
        const registered = (await client.get(`${root}cluster-hosts/${args.hostId}`).string()) !== null
        const locations = await client.getAll().prefix(`${root}${LOCATIONS}${NETWORK}/${args.hostId}/`).count()
        const last = seen.at(-1)
        if (!last || last.registered !== registered || last.locations !== locations) seen.push({ at: now(), registered, locations })
      } catch {
        // etcd slow: the next round reads again
      }
      await new Promise((r) => setTimeout(r, 500))
    }
  })()
  observer = {
    stop: async () => {
      stopped = true
      await loop
      client.close()
      observer = undefined
      return seen
    },
  }
  return {}
}

async function observeStop() {
  return { seen: (await observer?.stop()) ?? [] }
}

async function closeAll() {
  await Promise.all([...hosts.values()].map(async (h) => {
    h.locations.stop()
    await h.liveness.stop(false).catch(() => undefined)
    await h.store.close().catch(() => undefined)
  }))
  hosts.clear()
  return {}
}

const commands: Record<string, (args: never) => Promise<unknown>> = {
  up, endpoints: endpointsOf, add, remove, crash, leave, release, releaseCrashed, metrics, observe, observeStop, close: closeAll,
  memory: async () => ({ rssMb: process.memoryUsage().rss / 2 ** 20, hosts: hosts.size }),
}

const rl = createInterface({ input: process.stdin })
rl.on('line', (line) => {
  let msg: { id: number; cmd: string; args?: unknown }
  try {
    msg = JSON.parse(line) as typeof msg
  } catch {
    return
  }
  const fn = commands[msg.cmd]
  const reply = (body: object) => process.stdout.write(JSON.stringify({ id: msg.id, ...body }) + '\n')
  if (!fn) return reply({ error: `unknown command ${msg.cmd}` })
  fn((msg.args ?? {}) as never).then((r) => reply({ ok: r }), (err: unknown) => reply({ error: errorMessage(err) }))
})
rl.on('close', () => {
  void closeAll().finally(() => process.exit(0))
})
process.stdout.write(JSON.stringify({ id: 0, ok: 'ready' }) + '\n')
