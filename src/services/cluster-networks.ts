/**
 * Cluster-wide identity and IPAM (issue 14 step 2) over any Store: etcd in production, a
 * FileStore in unit tests. A cluster network is named by its `tsnet.overlay` name; each host's
 * Docker gives it another NetworkID, which the caller maps locally.
 *
 * Keys (under the store's own prefix):
 * - `cluster-networks/<name>`: the spec (subnet, gateway, VNI, MTU). No lease.
 * - `cluster-index/networks`: every network's subnets and VNI in one record. A new network is
 *   written with the index in one transaction, conditioned on both, so two hosts creating
 *   different networks at once can never pick the same pool or VNI or overlapping subnets.
 * - `cluster-addresses/<name>/<ip>`: `{ hostId, endpointId }`. Created if absent; never attached
 *   to a lease, so a partition never frees a live address (cluster-reclaim.ts frees a dead host's).
 *
 * An unknown outcome (the store failed with kind 'unavailable', or a create the client retried
 * came back ok=false) is settled by reading the key back: our identity in it means it is ours.
 */
import { randomBytes } from 'node:crypto'
import { type Family, type Prefix, formatCidr, formatIp, parseIp, prefixSize } from '../core/addr.js'
import {
  type AddressClaim, type AddressSpace, addressAt, addressSpace, checkAsked, claimable, exhaustedError, startOffset,
} from '../core/cluster-addresses.js'
import {
  type ClusterIndex, type ClusterNetworkSpec, DEFAULT_CLUSTER_VNI_RANGE, type WantedNetwork, checkAgainstStored, checkClusterVniRange,
  checkHostId, checkNetworkName, chooseSubnet, chooseVni, gatewayOf, normaliseWanted, parseSubnet,
} from '../core/cluster-spec.js'
import { DOCKER_GLOBAL_POOLS_TEXT, type DefaultPool, parseDefaultPools } from '../core/ipam.js'
import { TsnetError, conflict, notFound, quote } from '../errors.js'
import type { VniRange } from '../modes/overlay-options.js'
import type { Condition, Store, Write } from '../store/store.js'

export const networkKey = (name: string) => `cluster-networks/${name}`
export const INDEX_KEY = 'cluster-index/networks'
export const addressPrefix = (name: string) => `cluster-addresses/${name}/`
export const addressKey = (name: string, ip: string) => `${addressPrefix(name)}${ip}`

export interface ClusterNetworksSettings {
  /** This host (Docker's engine ID, or tsnet's own). */
  hostId: string
  /** Candidates for networks created without a subnet (default: Docker's global pools, 10.0.0.0/8 in /24s). */
  defaultPools?: DefaultPool[]
  /** VNIs of cluster networks (default 1-255). */
  vniRange?: VniRange
  /** tsnet's Swarm range, which the cluster range must not overlap. */
  swarmVniRange?: VniRange
}

/** Blind create-if-absent attempts from the cursor before a claim lists the network (once). */
const BLIND_ATTEMPTS = 8
/** Free addresses from that listing a claim tries before giving up (other hosts took each first). */
const LISTED_ATTEMPTS = 32
/** Times agree() reads again after another host changed the index first. */
const AGREE_ATTEMPTS = 16

export interface Agreement {
  spec: ClusterNetworkSpec
  /** True on the host whose transaction stored the spec. */
  created: boolean
}

export interface Claimed {
  /** The address alone ("10.220.0.5"). */
  ip: string
  /** With the subnet's length ("10.220.0.5/24"), as Docker's RequestAddress answers. */
  address: string
}

export class ClusterNetworks {
  readonly hostId: string
  private readonly defaultPools: DefaultPool[]
  private readonly vniRange: VniRange
  /** Specs never change once stored. */
  private readonly specs = new Map<string, ClusterNetworkSpec>()
  /** Per network and family: where the next blind attempt looks, and the addresses this process is claiming now. */
  private readonly cursors = new Map<string, { next: bigint; inFlight: Set<bigint> }>()

  constructor(private readonly store: Store, settings: ClusterNetworksSettings) {
    this.hostId = checkHostId(settings.hostId)
    this.defaultPools = settings.defaultPools ?? parseDefaultPools(DOCKER_GLOBAL_POOLS_TEXT)
    this.vniRange = settings.vniRange ?? DEFAULT_CLUSTER_VNI_RANGE
    checkClusterVniRange(this.vniRange, settings.swarmVniRange)
  }

  /**
   * The network's spec as the cluster agreed it: stored by the first host that asks (choosing a
   * pool when no subnet is given, and a VNI), given back to every later one. A wish that differs
   * from the stored spec is a 'conflict' and writes nothing. `avoid`: prefixes this host routes,
   * which an automatic pool must not overlap.
   */
  async agree(name: string, wanted: WantedNetwork = {}, avoid: Prefix[] = []): Promise<Agreement> {
    checkNetworkName(name)
    const asked = normaliseWanted(wanted)
    const token = randomBytes(8).toString('hex')
    for (let attempt = 1; ; attempt++) {
      const stored = await this.store.get<ClusterNetworkSpec>(networkKey(name))
      if (stored) {
        if (stored.value.token === token) return this.remember(stored.value, true) // our write, whose answer was lost
        checkAgainstStored(stored.value, asked)
        return this.remember(stored.value, false)
      }
      const index = await this.store.get<ClusterIndex>(INDEX_KEY)
      const networks = index?.value.networks ?? {}
      const subnet = chooseSubnet(name, asked, { networks }, this.defaultPools, avoid)
      const vni = chooseVni(this.vniRange, { networks })
      const spec: ClusterNetworkSpec = {
        name, subnet, gateway: asked.gateway ?? firstAddress(subnet, 4), vni,
        ...(asked.ipv6Subnet ? { ipv6Subnet: asked.ipv6Subnet, ipv6Gateway: firstAddress(asked.ipv6Subnet, 6) } : {}),
        ...(asked.mtu !== undefined ? { mtu: asked.mtu } : {}),
        createdBy: this.hostId, createdAt: new Date().toISOString(), token,
      }
      const next: ClusterIndex = { networks: { ...networks, [name]: { subnet, vni, ...(spec.ipv6Subnet ? { ipv6Subnet: spec.ipv6Subnet } : {}) } } }
      const when: Condition[] = [{ key: networkKey(name), absent: true }, index ? { key: INDEX_KEY, rev: index.rev } : { key: INDEX_KEY, absent: true }]
      const then: Write[] = [{ put: networkKey(name), value: spec }, { put: INDEX_KEY, value: next }]
      if (await this.settle(() => this.store.txn(when, then), async () => (await this.store.get<ClusterNetworkSpec>(networkKey(name)))?.value.token === token)) {
        return this.remember(spec, true)
      }
      // Another host stored this network or another one first: read again and decide again.
      if (attempt >= AGREE_ATTEMPTS) throw conflict(`cluster network ${quote(name)} could not be stored: other hosts changed the cluster's networks ${attempt} times first; try again`)
    }
  }

  /** The stored spec, or a 'notfound' naming the network. */
  async spec(name: string): Promise<ClusterNetworkSpec> {
    checkNetworkName(name)
    const known = this.specs.get(name)
    if (known) return known
    const stored = await this.store.get<ClusterNetworkSpec>(networkKey(name))
    if (!stored) throw notFound(`cluster network ${quote(name)} is unknown to the cluster: create it with tsnet.overlay=${name} first`)
    return this.remember(stored.value, false).spec
  }

  /**
   * Claims an address for `endpointId`: `ip` when given (a 'conflict' naming its holder when
   * another endpoint has it), else a free one. Claiming again what this endpoint already holds
   * succeeds. Never the gateway; 'exhausted' when nothing is free.
   */
  async claim(name: string, endpointId: string, ip?: string, family: Family = 4): Promise<Claimed> {
    let spec = await this.spec(name)
    if (family === 6 && !spec.ipv6Subnet) spec = (this.forget(name), await this.spec(name)) // another host may have added IPv6 since
    const space = this.spaceOf(spec, family)
    const value: AddressClaim = { hostId: this.hostId, endpointId, claimedAt: new Date().toISOString() }
    if (ip !== undefined) {
      const asked = checkAsked(space, ip)
      const outcome = await this.tryClaim(space, asked.value, value)
      if (outcome === true) return claimed(space, asked.value)
      const holder = outcome ? `endpoint ${clipId(outcome.endpointId)} on host ${outcome.hostId}` : 'another endpoint'
      throw conflict(`address ${formatIp(asked)} of cluster network ${quote(name)} is already held by ${holder}`, { network: name, address: formatIp(asked) })
    }
    const cursor = this.cursorOf(space)
    for (let i = 0; i < BLIND_ATTEMPTS; i++) {
      const candidate = this.nextFree(space, cursor, new Set())
      if (candidate === undefined) break
      if ((await this.tryClaim(space, candidate, value, cursor.inFlight)) === true) return claimed(space, candidate)
      // Lost it: another host is claiming here. Walking on would follow its frontier and lose again
      // and again (it claims several at a time), so look elsewhere.
      cursor.next = randomOffset(space)
    }
    // Crowded: look at the claims once, then try free addresses only, each from a random place.
    const listed = await this.store.list<AddressClaim>(addressPrefix(name))
    const taken = new Set<bigint>()
    for (const e of listed) {
      const v = parseIpValue(e.id.slice(name.length + 1), family)
      if (v !== undefined) taken.add(v)
    }
    for (let i = 0; i < LISTED_ATTEMPTS; i++) {
      const candidate = this.nextFree(space, cursor, taken)
      if (candidate === undefined) throw exhaustedError(space, taken.size)
      taken.add(candidate)
      if ((await this.tryClaim(space, candidate, value, cursor.inFlight)) === true) return claimed(space, candidate)
      cursor.next = randomOffset(space)
    }
    throw conflict(`no address of cluster network ${quote(name)} could be claimed: other hosts took each of ${BLIND_ATTEMPTS + LISTED_ATTEMPTS} free candidates first; try again`, { network: name })
  }

  /**
   * Frees an address this host holds. Releasing an address that is free already is fine; one
   * another host holds now is left alone ('other-host': never free a live address of another).
   */
  async release(name: string, ip: string, hostId: string = this.hostId): Promise<'released' | 'absent' | 'other-host'> {
    checkNetworkName(name)
    const key = addressKey(name, ip)
    for (let attempt = 1; ; attempt++) {
      const entry = await this.store.get<AddressClaim>(key)
      if (!entry) return 'absent'
      if (entry.value.hostId !== hostId) return 'other-host'
      const { ok } = await this.store.txn([{ key, rev: entry.rev }], [{ delete: key }])
      if (ok || attempt >= 3) return ok ? 'released' : 'absent'
    }
  }

  /** Drops what this process remembers of a network (it left, or the cluster removed it). */
  forget(name: string): void {
    this.specs.delete(name)
    for (const id of [...this.cursors.keys()]) if (id.startsWith(`${name}#`)) this.cursors.delete(id)
  }

  private remember(spec: ClusterNetworkSpec, created: boolean): Agreement {
    this.specs.set(spec.name, spec)
    return { spec, created }
  }

  private spaceOf(spec: ClusterNetworkSpec, family: Family): AddressSpace {
    if (family === 4) return addressSpace(spec.name, spec.subnet, spec.gateway)
    if (!spec.ipv6Subnet || !spec.ipv6Gateway) throw notFound(`cluster network ${quote(spec.name)} has no IPv6 subnet`)
    return addressSpace(spec.name, spec.ipv6Subnet, spec.ipv6Gateway)
  }

  private cursorOf(space: AddressSpace) {
    const id = `${space.network}#${space.subnet.family}`
    let cursor = this.cursors.get(id)
    if (!cursor) {
      cursor = { next: startOffset(this.hostId, space.network, 1n << BigInt((space.subnet.family === 4 ? 32 : 128) - space.subnet.bits)), inFlight: new Set() }
      this.cursors.set(id, cursor)
    }
    return cursor
  }

  /**
   * The next claimable address from the cursor that is neither in `taken` nor being claimed by
   * this process; undefined when a whole lap of the subnet finds none. A step passes over one
   * address, and only taken, in-flight and reserved ones are passed over before an answer, so a
   * call costs at most their number plus one steps (a lap of a /16 at the very worst).
   */
  private nextFree(space: AddressSpace, cursor: { next: bigint; inFlight: Set<bigint> }, taken: ReadonlySet<bigint>): bigint | undefined {
    const size = 1n << BigInt((space.subnet.family === 4 ? 32 : 128) - space.subnet.bits)
    const limit = BigInt(taken.size + cursor.inFlight.size + 4)
    for (let step = 0n; step < size && step < limit; step++) {
      const v = addressAt(space, cursor.next)
      cursor.next = (cursor.next + 1n) % size
      if (claimable(space, v) && !taken.has(v) && !cursor.inFlight.has(v)) return v
    }
    return undefined
  }

  /** True: claimed for us (now or by an earlier attempt). Otherwise who holds it (undefined: unknown). */
  private async tryClaim(space: AddressSpace, v: bigint, value: AddressClaim, inFlight?: Set<bigint>): Promise<true | AddressClaim | undefined> {
    const key = addressKey(space.network, formatIp({ family: space.subnet.family, value: v }))
    inFlight?.add(v)
    try {
      let holder: AddressClaim | undefined
      const ours = await this.settle(() => this.store.txn([{ key, absent: true }], [{ put: key, value }]), async () => {
        holder = (await this.store.get<AddressClaim>(key))?.value
        return holder !== undefined && holder.hostId === value.hostId && holder.endpointId === value.endpointId
      })
      return ours ? true : holder
    } finally {
      inFlight?.delete(v)
    }
  }

  /**
   * Runs a create and says whether it is ours: ok, or (ok=false after a retry, or the store
   * failed with kind 'unavailable') the read-back finds our identity. When the read-back fails
   * too, the first failure is thrown: its outcome stays unknown.
   */
  private async settle(create: () => Promise<{ ok: boolean }>, isOurs: () => Promise<boolean>): Promise<boolean> {
    let failure: unknown
    try {
      if ((await create()).ok) return true
    } catch (err) {
      if (!(err instanceof TsnetError && err.kind === 'unavailable')) throw err
      failure = err
    }
    let ours: boolean
    try {
      ours = await isOurs()
    } catch {
      throw failure ?? new TsnetError('unavailable', 'the cluster store failed while reading back a claim')
    }
    if (!ours && failure !== undefined) throw failure
    return ours
  }
}

/** A random offset into the subnet (uniform enough for picking where to look: 64 random bits modulo its size). */
const randomOffset = (space: AddressSpace): bigint => randomBytes(8).readBigUInt64BE() % prefixSize(space.subnet)

const firstAddress = (subnet: string, family: Family) => gatewayOf(parseSubnet(subnet, family, 'subnet'))

function parseIpValue(text: string, family: Family): bigint | undefined {
  const ip = parseIp(text)
  return ip?.family === family ? ip.value : undefined
}

const claimed = (space: AddressSpace, v: bigint): Claimed => {
  const ip = { family: space.subnet.family, value: v }
  return { ip: formatIp(ip), address: formatCidr(ip, space.subnet.bits) }
}

const clipId = (id: string) => (id.length > 12 ? id.slice(0, 12) : id)
