/** Docker's IpamDriver verbs on top of the pure allocator, the store and the host's routes. */
import type { Logger } from 'pino'
import { randomBytes } from 'node:crypto'
import { type Ip, type Prefix, formatCidr, formatIp, formatPrefix, parseCidr, parseIp } from '../core/addr.js'
import {
  ADDRESS_SPACES, DOCKER_GLOBAL_POOLS_TEXT, GLOBAL_SPACE, LOCAL_SPACE, type DefaultPool, checkExplicitPool, chooseDefaultPool,
  parseDefaultPools, parsePoolRequest, pickAddress, poolIdOf,
} from '../core/ipam.js'
import type { LeaseRecord, PoolRecord } from '../core/records.js'
import { clip, exhausted, invalid, notFound, quote, withContext } from '../errors.js'
import type { Host } from '../host/host.js'
import { OPT, type ReleaseAddressRequest, type ReleasePoolRequest, type RequestAddressRequest, type RequestPoolRequest } from '../protocol/types.js'
import type { Store } from '../store/store.js'
import { KeyedLock } from '../util/keyed-lock.js'

interface PoolState {
  record: PoolRecord
  prefix: Prefix
  range?: Prefix
  leases: Map<bigint, LeaseRecord>
}

export interface IpamConfig {
  /** Candidates for automatic pools in the local address space. */
  defaultPools: DefaultPool[]
  /** Candidates for automatic pools in the global address space (Docker: 10.0.0.0/8 in /24s). */
  globalPools?: DefaultPool[]
}

const leaseId = (poolId: string, address: string) => `${poolId}#${address}`

/**
 * How long an address garbage collection released stays out of automatic allocation. Docker
 * retries a ReleaseAddress it could not deliver (tsnet was down) for up to about a minute, and
 * that late retry names only pool and address: were the address handed out again meanwhile, it
 * would free the new holder's lease.
 */
export const GC_COOLDOWN_MS = 90_000

export class IpamService {
  private readonly pools = new Map<string, PoolState>()
  private readonly lock = new KeyedLock()
  /** Per pool: addresses garbage collection released, and until when they stay unassigned. */
  private readonly cooling = new Map<string, Map<bigint, number>>()
  /** Per pool, addresses whose lease file is being deleted (outside the lock). */
  private readonly releasing = new Map<string, Set<bigint>>()
  private ula48!: Prefix
  private readonly globalPools: DefaultPool[]

  constructor(private readonly store: Store, private readonly host: Host, private readonly config: IpamConfig) {
    this.globalPools = config.globalPools ?? parseDefaultPools(DOCKER_GLOBAL_POOLS_TEXT)
  }

  /** Rebuilds the in-memory view from the store, and fixes this host's IPv6 ULA prefix on first start. */
  async load(): Promise<void> {
    for (const { value } of await this.store.list<PoolRecord>('pools')) {
      const pool = parseCidr(value.pool)
      if (!pool) throw invalid(`stored pool ${value.id} has an unreadable subnet ${value.pool}`)
      const range = value.subPool ? parseCidr(value.subPool)?.prefix : undefined
      this.pools.set(value.id, { record: value, prefix: pool.prefix, ...(range ? { range } : {}), leases: new Map() })
    }
    for (const { id, value } of await this.store.list<LeaseRecord>('leases')) {
      const ip = parseIp(value.address)
      const pool = this.pools.get(value.poolId)
      if (ip && pool) pool.leases.set(ip.value, value)
      else await this.store.delete('leases', id) // its pool was released; the crash came before the leases went
    }
    const meta = (await this.store.list<{ ula48: string }>('meta')).find((m) => m.id === 'ipam')
    const stored = meta ? parseCidr(meta.value.ula48) : undefined
    if (stored) {
      this.ula48 = stored.prefix
    } else {
      // RFC 4193: fd00::/8 plus 40 random bits, so two hosts' automatic IPv6 pools differ.
      const b = randomBytes(5)
      const text = `fd${b.toString('hex').slice(0, 2)}:${b.toString('hex').slice(2, 6)}:${b.toString('hex').slice(6, 10)}::/48`
      this.ula48 = (parseCidr(text) as { prefix: Prefix }).prefix
      await this.store.put('meta', 'ipam', { ula48: formatPrefix(this.ula48) })
    }
  }

  defaultAddressSpaces() {
    return { LocalDefaultAddressSpace: LOCAL_SPACE, GlobalDefaultAddressSpace: GLOBAL_SPACE }
  }

  capabilities() {
    return { RequiresMACAddress: false, RequiresRequestReplay: false }
  }

  requestPool(req: RequestPoolRequest, log: Logger) {
    return this.lock.run('ipam', async () => {
      const space = req.AddressSpace
      if (!(ADDRESS_SPACES as readonly string[]).includes(space)) {
        throw invalid(`address space ${quote(space)} is unknown; tsnet serves ${ADDRESS_SPACES.join(' and ')}`)
      }
      const v6 = req.V6 === true
      const asked = parsePoolRequest(req.Pool ?? '', req.SubPool ?? '', v6)
      const taken = [...this.pools.values()]
        .filter((p) => p.record.addressSpace === space && p.prefix.family === (v6 ? 6 : 4))
        .map((p) => ({ id: p.record.id, prefix: p.prefix }))
      let prefix = asked.pool
      if (prefix) {
        checkExplicitPool(prefix, taken)
      } else {
        prefix = await this.chooseAutomatic(space, v6, taken.map((t) => t.prefix), asked.sizeOnly)
      }
      const id = poolIdOf(space, prefix, asked.subPool)
      const record: PoolRecord = {
        id,
        addressSpace: space,
        pool: formatPrefix(prefix),
        ...(asked.subPool ? { subPool: formatPrefix(asked.subPool) } : {}),
        v6,
        options: req.Options ?? {},
        createdAt: new Date().toISOString(),
      }
      await this.store.put('pools', id, record)
      this.pools.set(id, { record, prefix, ...(asked.subPool ? { range: asked.subPool } : {}), leases: new Map() })
      log.info({ ipam: 'pool.allocated', poolId: id }, 'address pool allocated')
      return { PoolID: id, Pool: record.pool, Data: {} }
    })
  }

  private async chooseAutomatic(space: string, v6: boolean, taken: Prefix[], bits?: number): Promise<Prefix> {
    let routed: Prefix[] = []
    if (space === LOCAL_SPACE) {
      try {
        routed = (await this.host.routedPrefixes()).flatMap((r) => {
          const c = parseCidr(r)
          return c ? [c.prefix] : []
        })
      } catch (err) {
        throw withContext(err, 'reading the host routes to choose a free pool')
      }
    }
    if (v6) {
      if (bits !== undefined && bits < 48) throw invalid(`an automatic IPv6 pool can be at most a /48, not /${bits}`)
      const chosen = chooseDefaultPool([{ base: this.ula48, size: 64 }], taken, routed, bits)
      if (!chosen) throw exhausted(`no free IPv6 pool is left in ${formatPrefix(this.ula48)}`)
      return chosen
    }
    const candidates = space === GLOBAL_SPACE ? this.globalPools : this.config.defaultPools
    const chosen = chooseDefaultPool(candidates, taken, routed, bits)
    if (!chosen) {
      const list = candidates.map((p) => `${formatPrefix(p.base)} in /${bits ?? p.size}`).join(', ')
      throw exhausted(`no free address pool is left: every default pool (${list}) is in use or routed by the host; give --subnet explicitly`)
    }
    return chosen
  }

  releasePool(req: ReleasePoolRequest, log: Logger) {
    return this.lock.run('ipam', async () => {
      await this.dropPool(req.PoolID, log)
      return {}
    })
  }

  /** Removes a pool and its leases; the caller holds the lock. */
  private async dropPool(poolId: string, log: Logger): Promise<void> {
    const pool = this.pools.get(poolId)
    if (!pool) return
    // Pool first: a crash part-way leaves leases without a pool, which load() removes.
    await this.store.delete('pools', poolId)
    this.pools.delete(poolId)
    for (const lease of pool.leases.values()) await this.store.delete('leases', leaseId(poolId, lease.address))
    log.info({ ipam: 'pool.released', poolId, leases: pool.leases.size }, 'address pool released')
  }

  /**
   * Picks and marks the address under the lock; the durable write happens after it, so
   * concurrent requests share the disk's flushes instead of queueing behind each one. Docker
   * gets the address only once its lease is on disk.
   */
  async requestAddress(req: RequestAddressRequest, log: Logger) {
    const { pool, ip, lease, value } = await this.lock.run('ipam', async () => {
      const pool = this.pools.get(req.PoolID)
      if (!pool) throw notFound(`address pool ${clip(req.PoolID)} is unknown to tsnet`)
      let preferred: Ip | undefined
      if (req.Address) {
        preferred = parseIp(req.Address) ?? parseCidr(req.Address)?.ip
        if (!preferred) throw invalid(`requested address ${quote(req.Address)} is not an IP address`)
      }
      const request = {
        pool: pool.prefix,
        ...(pool.range ? { range: pool.range } : {}),
        ...(preferred ? { preferred } : {}),
        used: new Set([...pool.leases.keys(), ...this.releasingIn(req.PoolID)]),
        poolId: req.PoolID,
      }
      const cooling = this.coolingIn(req.PoolID)
      let value: bigint
      try {
        // Prefer addresses that are not cooling down; use them only when nothing else is left.
        value = preferred || cooling.length === 0 ? pickAddress(request) : pickAddress({ ...request, used: new Set([...request.used, ...cooling]) })
      } catch (err) {
        if (preferred || cooling.length === 0) throw err
        value = pickAddress(request)
      }
      const ip: Ip = { family: pool.prefix.family, value }
      const address = formatIp(ip)
      const options = req.Options ?? {}
      const owner = options[OPT.endpointName]
      const lease: LeaseRecord = {
        poolId: req.PoolID,
        address,
        kind: options[OPT.requestAddressType] === OPT.gatewayType ? 'gateway' : 'endpoint',
        ...(owner ? { owner } : {}),
        createdAt: new Date().toISOString(),
      }
      pool.leases.set(value, lease)
      return { pool, ip, lease, value }
    })
    try {
      await this.store.put('leases', leaseId(req.PoolID, lease.address), lease)
    } catch (err) {
      await this.lock.run('ipam', async () => {
        if (pool.leases.get(value) === lease) pool.leases.delete(value)
      })
      throw err
    }
    log.info({ ipam: 'address.leased', poolId: req.PoolID, address: lease.address, kind: lease.kind }, 'address leased')
    return { Address: formatCidr(ip, pool.prefix.bits), Data: {} }
  }

  /** Addresses whose lease file is being deleted right now: not handed out until it is gone. */
  private releasingIn = (poolId: string): bigint[] => [...(this.releasing.get(poolId) ?? [])]

  private coolingIn(poolId: string): bigint[] {
    const entries = this.cooling.get(poolId)
    if (!entries) return []
    const now = Date.now()
    for (const [v, until] of entries) if (until <= now) entries.delete(v)
    if (entries.size === 0) this.cooling.delete(poolId)
    return [...entries.keys()]
  }

  /** Garbage collection: releases the lease only if it is still the one judged stale, then cools the address. */
  releaseStaleAddress(poolId: string, address: string, createdAt: string, log: Logger) {
    return this.lock.run('ipam', async () => {
      const pool = this.pools.get(poolId)
      const ip = parseIp(address)
      const lease = pool && ip ? pool.leases.get(ip.value) : undefined
      if (!pool || !ip || !lease || lease.createdAt !== createdAt) return
      await this.store.delete('leases', leaseId(poolId, lease.address))
      pool.leases.delete(ip.value)
      const entries = this.cooling.get(poolId) ?? new Map<bigint, number>()
      entries.set(ip.value, Date.now() + GC_COOLDOWN_MS)
      this.cooling.set(poolId, entries)
      log.info({ ipam: 'address.collected', poolId, address, coolingMs: GC_COOLDOWN_MS }, 'stale address released; it is not handed out again for a while')
    })
  }

  /** Garbage collection: releases the pool only if it is still the one judged stale (checked under the lock). */
  releaseStalePool(poolId: string, createdAt: string, log: Logger) {
    return this.lock.run('ipam', async () => {
      if (this.pools.get(poolId)?.record.createdAt !== createdAt) return
      await this.dropPool(poolId, log)
      this.cooling.delete(poolId)
    })
  }

  /** Forgets the lease under the lock and deletes its file after it (see requestAddress). */
  async releaseAddress(req: ReleaseAddressRequest, log: Logger) {
    const found = await this.lock.run('ipam', async () => {
      const pool = this.pools.get(req.PoolID)
      const ip = parseIp(req.Address) ?? parseCidr(req.Address)?.ip
      if (!pool || !ip || ip.family !== pool.prefix.family) return undefined
      const lease = pool.leases.get(ip.value)
      if (!lease) return undefined
      pool.leases.delete(ip.value)
      const releasing = this.releasing.get(req.PoolID) ?? new Set<bigint>()
      releasing.add(ip.value)
      this.releasing.set(req.PoolID, releasing)
      return { pool, ip, lease }
    })
    if (!found) return {}
    const { pool, ip, lease } = found
    try {
      await this.store.delete('leases', leaseId(req.PoolID, lease.address))
    } catch (err) {
      await this.lock.run('ipam', async () => {
        if (!pool.leases.has(ip.value)) pool.leases.set(ip.value, lease)
      })
      throw err
    } finally {
      const releasing = this.releasing.get(req.PoolID)
      releasing?.delete(ip.value)
      if (releasing?.size === 0) this.releasing.delete(req.PoolID)
    }
    log.info({ ipam: 'address.released', poolId: req.PoolID, address: lease.address }, 'address released')
    return {}
  }

  /** Pools with their leases, for garbage collection. */
  poolsWithLeases(): Array<PoolRecord & { leases: LeaseRecord[] }> {
    return [...this.pools.values()].map((p) => ({ ...p.record, leases: [...p.leases.values()] }))
  }

  /** For status output and tests. */
  snapshot = () => [...this.pools.values()].map((p) => ({ ...p.record, leases: [...p.leases.values()].map((l) => l.address) }))
}
