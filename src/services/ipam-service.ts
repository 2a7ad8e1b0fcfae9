/** Docker's IpamDriver verbs on top of the pure allocator, the address book (store) and the host's routes. */
import type { Logger } from 'pino'
import { randomBytes } from 'node:crypto'
import { type Ip, type Prefix, formatCidr, formatIp, formatPrefix, parseCidr, parseIp } from '../core/addr.js'
import {
  ADDRESS_SPACES, DOCKER_GLOBAL_POOLS_TEXT, GLOBAL_SPACE, LOCAL_SPACE, type DefaultPool, checkExplicitPool, chooseDefaultPool,
  Cooling, chooseUlaPool, parseDefaultPools, parsePoolRequest, pickAvoiding, poolIdOf,
} from '../core/ipam.js'
import type { LeaseRecord, PoolRecord } from '../core/records.js'
import { type Clock, systemClock } from '../engine/clock.js'
import { clip, conflict, exhausted, invalid, notFound, quote, withContext } from '../errors.js'
import type { Host } from '../host/host.js'
import type {
  ReleaseAddressRequest, ReleasePoolRequest, RequestAddressRequest, RequestPoolRequest,
} from '../protocol/types.js'
import { OPT } from '../protocol/types.js'
import type { Store } from '../store/store.js'
import { KeyedLock } from '../util/keyed-lock.js'
import { AddressBook, type LeaseEntry, type PoolEntry } from './address-book.js'

export interface IpamConfig {
  /** Candidates for automatic pools in the local address space. */
  defaultPools: DefaultPool[]
  /** Candidates for automatic pools in the global address space (Docker: 10.0.0.0/8 in /24s). */
  globalPools?: DefaultPool[]
}

/**
 * How long an address garbage collection released stays out of automatic allocation. Docker
 * retries a ReleaseAddress it could not deliver (tsnet was down) for up to about a minute, and
 * that late retry names only pool and address: were the address handed out again meanwhile, it
 * would free the new holder's lease.
 */
export const GC_COOLDOWN_MS = 90_000

/** Claims one request may lose to other writers of the store before it gives up. */
const MAX_CLAIMS = 16

export class IpamService {
  private readonly book: AddressBook
  private readonly lock = new KeyedLock()
  /** Per pool: addresses garbage collection released, and until when they stay unassigned. */
  private readonly cooling = new Cooling()
  /** Per pool, addresses whose lease is being deleted (outside the lock). */
  private readonly releasing = new Map<string, Set<bigint>>()
  private ula48!: Prefix

  private readonly globalPools: DefaultPool[]

  constructor(private readonly store: Store, private readonly host: Host, private readonly config: IpamConfig, private readonly clock: Clock = systemClock) {
    this.globalPools = config.globalPools ?? parseDefaultPools(DOCKER_GLOBAL_POOLS_TEXT)
    this.book = new AddressBook(store)
  }

  /** Reads pools and leases from the store, and fixes this host's IPv6 ULA prefix on first start. */
  async load(): Promise<void> {
    await this.book.load()
    for (;;) {
      const stored = parseCidr((await this.store.get<{ ula48: string }>('meta/ipam'))?.value.ula48 ?? '')
      if (stored) {
        this.ula48 = stored.prefix
        return
      }
      // RFC 4193: fd00::/8 plus 40 random bits, so two hosts' automatic IPv6 pools differ.
      const b = randomBytes(5).toString('hex')
      const ula48 = `fd${b.slice(0, 2)}:${b.slice(2, 6)}:${b.slice(6, 10)}::/48`
      const { ok } = await this.store.txn([{ key: 'meta/ipam', absent: true }], [{ put: 'meta/ipam', value: { ula48 } }])
      if (ok) {
        this.ula48 = (parseCidr(ula48) as { prefix: Prefix }).prefix
        return
      } // another writer fixed it first: read theirs
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
      for (let attempt = 1; ; attempt++) {
        const taken = [...this.book.pools.values()]
          .filter((p) => p.record.addressSpace === space && p.prefix.family === (v6 ? 6 : 4))
          .map((p) => ({ id: p.record.id, prefix: p.prefix }))
        let prefix = asked.pool
        if (prefix) checkExplicitPool(prefix, taken)
        else prefix = await this.chooseAutomatic(space, v6, taken.map((t) => t.prefix), asked.sizeOnly)
        const id = poolIdOf(space, prefix, asked.subPool)
        const record: PoolRecord = {
          id,
          addressSpace: space,
          pool: formatPrefix(prefix),
          ...(asked.subPool ? { subPool: formatPrefix(asked.subPool) } : {}),
          v6,
          options: req.Options ?? {},
          createdAt: this.clock.iso(),
        }
        const claim = await this.book.claimPool(record)
        if (claim === 'claimed') {
          log.info({ ipam: 'pool.allocated', poolId: id }, 'address pool allocated')
          return { PoolID: id, Pool: record.pool, Data: {} }
        }
        // Another writer of the store holds it or an overlapping pool: look again, then decide again.
        log.info({ ipam: 'pool.claim-lost', poolId: id, claim, attempt }, 'another writer of the store holds this pool; reading the pools again')
        await this.book.refreshPools()
        if (attempt >= MAX_CLAIMS) throw lostTooOften(`pool ${record.pool}`, attempt)
      }
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
      const chosen = chooseUlaPool(this.ula48, taken, routed, bits)
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
      const pool = this.book.pools.get(req.PoolID)
      if (pool && (await this.book.dropPool(pool))) {
        log.info({ ipam: 'pool.released', poolId: req.PoolID, leases: pool.leases.size }, 'address pool released')
      }
      return {}
    })
  }

  /**
   * Picks and marks the address under the lock, then claims it in the store outside it, so
   * concurrent requests share the disk's flushes instead of queueing behind each one. A claim
   * lost to another writer of the store reads the pool's leases again and picks again. Docker
   * gets the address only once its lease is stored.
   */
  async requestAddress(req: RequestAddressRequest, log: Logger) {
    for (let attempt = 1; ; attempt++) {
      const { pool, value, lease, preferred } = await this.lock.run('ipam', () => this.pick(req))
      if (await this.book.claimLease(pool, value, lease)) {
        const { address, kind } = lease.record
        log.info({ ipam: 'address.leased', poolId: req.PoolID, address, kind, ...(attempt > 1 ? { attempt } : {}) }, 'address leased')
        return { Address: formatCidr({ family: pool.prefix.family, value }, pool.prefix.bits), Data: {} }
      }
      log.info({ ipam: 'address.claim-lost', poolId: req.PoolID, address: lease.record.address, attempt }, 'another writer of the store holds this address; reading the pool again')
      await this.lock.run('ipam', () => this.book.refreshLeases(pool, this.releasing.get(req.PoolID)))
      if (preferred) throw conflict(`address ${lease.record.address} is already in use in pool ${pool.record.pool}`)
      if (attempt >= MAX_CLAIMS) throw lostTooOften(`an address in pool ${pool.record.pool}`, attempt)
    }
  }

  /** The pool from the cache, or, when it is not there, from the store (another writer's); the caller holds the lock. */
  private async poolNamed(poolId: string): Promise<PoolEntry | undefined> {
    if (!this.book.pools.has(poolId)) await this.book.refreshPools()
    return this.book.pools.get(poolId)
  }

  /** Chooses an address from the cache and marks it there as being claimed; the caller holds the lock. */
  private async pick(req: RequestAddressRequest): Promise<{ pool: PoolEntry; value: bigint; lease: LeaseEntry; preferred: boolean }> {
    const pool = await this.poolNamed(req.PoolID)
    if (!pool) throw notFound(`address pool ${clip(req.PoolID)} is unknown to tsnet`)
    let preferred: Ip | undefined
    if (req.Address) {
      preferred = parseIp(req.Address) ?? parseCidr(req.Address)?.ip
      if (!preferred) throw invalid(`requested address ${quote(req.Address)} is not an IP address`)
    }
    const value = pickAvoiding({
      pool: pool.prefix,
      ...(pool.range ? { range: pool.range } : {}),
      ...(preferred ? { preferred } : {}),
      used: new Set([...pool.leases.keys(), ...(this.releasing.get(req.PoolID) ?? [])]),
      poolId: req.PoolID,
    }, this.cooling.at(req.PoolID, this.clock.now()))
    const options = req.Options ?? {}
    const owner = options[OPT.endpointName]
    const lease: LeaseEntry = {
      record: {
        poolId: req.PoolID,
        address: formatIp({ family: pool.prefix.family, value }),
        kind: options[OPT.requestAddressType] === OPT.gatewayType ? 'gateway' : 'endpoint',
        ...(owner ? { owner } : {}),
        createdAt: this.clock.iso(),
      },
    }
    pool.leases.set(value, lease)
    return { pool, value, lease, preferred: preferred !== undefined }
  }

  /** Garbage collection: releases the lease only if it is still the one judged stale, then cools the address. */
  releaseStaleAddress(poolId: string, address: string, createdAt: string, log: Logger) {
    return this.lock.run('ipam', async () => {
      const pool = this.book.pools.get(poolId)
      const ip = parseIp(address)
      const lease = pool && ip ? pool.leases.get(ip.value) : undefined
      if (!pool || !ip || !lease || lease.rev === undefined || lease.record.createdAt !== createdAt) return
      pool.leases.delete(ip.value)
      if (!(await this.book.deleteLease(pool, ip.value, lease))) {
        await this.book.refreshLeases(pool, this.releasing.get(poolId)) // changed in the store meanwhile: not stale
        return
      }
      this.cooling.add(poolId, ip.value, this.clock.now() + GC_COOLDOWN_MS)
      log.info({ ipam: 'address.collected', poolId, address, coolingMs: GC_COOLDOWN_MS }, 'stale address released; it is not handed out again for a while')
    })
  }

  /** Garbage collection: releases the pool only if it is still the one judged stale. */
  releaseStalePool(poolId: string, createdAt: string, log: Logger) {
    return this.lock.run('ipam', async () => {
      const pool = this.book.pools.get(poolId)
      if (pool?.record.createdAt !== createdAt) return
      if (await this.book.dropPool(pool, pool.rev)) {
        this.cooling.forget(poolId)
        log.info({ ipam: 'pool.released', poolId, leases: pool.leases.size }, 'address pool released')
      } else {
        await this.book.refreshPools()
      }
    })
  }

  /** Forgets the lease under the lock and deletes it from the store after it (see requestAddress). */
  async releaseAddress(req: ReleaseAddressRequest, log: Logger) {
    const found = await this.lock.run('ipam', async () => {
      const ip = parseIp(req.Address) ?? parseCidr(req.Address)?.ip
      const pool = ip ? await this.poolNamed(req.PoolID) : undefined
      if (!pool || !ip || ip.family !== pool.prefix.family) return undefined
      // Unknown here: perhaps another writer's lease, newer than our last look.
      if (!pool.leases.has(ip.value)) await this.book.refreshLeases(pool, this.releasing.get(req.PoolID))
      const lease = pool.leases.get(ip.value)
      if (!lease || lease.rev === undefined) return undefined
      pool.leases.delete(ip.value)
      const releasing = this.releasing.get(req.PoolID) ?? new Set<bigint>()
      releasing.add(ip.value)
      this.releasing.set(req.PoolID, releasing)
      return { pool, value: ip.value, lease }
    })
    if (!found) return {}
    const { pool, value, lease } = found
    try {
      // False: the lease had been replaced in the store; the one Docker releases is gone either way.
      await this.book.deleteLease(pool, value, lease)
    } catch (err) {
      await this.lock.run('ipam', async () => {
        if (!pool.leases.has(value)) pool.leases.set(value, lease)
      })
      throw err
    } finally {
      const releasing = this.releasing.get(req.PoolID)
      releasing?.delete(value)
      if (releasing?.size === 0) this.releasing.delete(req.PoolID)
    }
    log.info({ ipam: 'address.released', poolId: req.PoolID, address: lease.record.address }, 'address released')
    return {}
  }

  /** Pools with their leases, for garbage collection. */
  poolsWithLeases(): Array<PoolRecord & { leases: LeaseRecord[] }> {
    return [...this.book.pools.values()].map((p) => ({ ...p.record, leases: [...p.leases.values()].map((l) => l.record) }))
  }

  /** For status output and tests. */
  snapshot() {
    return [...this.book.pools.values()].map((p) => ({ ...p.record, leases: [...p.leases.values()].map((l) => l.record.address) }))
  }
}

const lostTooOften = (what: string, attempts: number) =>
  conflict(`${what} could not be claimed: another writer of the store took each of ${attempts} candidates first; try again`, { attempts })
