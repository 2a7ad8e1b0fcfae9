/**
 * Pure IPAM decisions: which pool to hand out, which address to lease. No I/O; the service
 * feeds in what is taken and what the host routes, and persists the outcome.
 */
import {
  type Family, type Ip, type Prefix, familyBits, formatIp, formatPrefix, lastAddress, nthSubnet,
  parseCidr, prefixContains, prefixesOverlap, prefixWithin, subnetCount,
} from './addr.js'
import { clip, conflict, exhausted, invalid, quote } from '../errors.js'

export const LOCAL_SPACE = 'LocalDefault'
export const GLOBAL_SPACE = 'GlobalDefault'
export const ADDRESS_SPACES = [LOCAL_SPACE, GLOBAL_SPACE] as const

/** A range of candidate pools: `base` cut into subnets of length `size`. */
export interface DefaultPool {
  base: Prefix
  size: number
}

/** Docker's local defaults: 172.17–172.31 in /16s, then 192.168.0.0/16 in /20s. */
export const DOCKER_DEFAULT_POOLS_TEXT = '172.17.0.0/16:16,172.18.0.0/16:16,172.19.0.0/16:16,172.20.0.0/14:16,172.24.0.0/14:16,172.28.0.0/14:16,192.168.0.0/16:20'

/** Docker's global (swarm-scope) defaults: 10.0.0.0/8 in /24s. */
export const DOCKER_GLOBAL_POOLS_TEXT = '10.0.0.0/8:24'

/** Parses `CIDR:SIZE[,CIDR:SIZE…]`, the syntax of --default-pools / TSNET_DEFAULT_POOLS. */
export function parseDefaultPools(text: string): DefaultPool[] {
  const entries = text.split(',').map((s) => s.trim()).filter((s) => s !== '')
  if (entries.length === 0) throw invalid('the default pool list is empty; expected CIDR:SIZE[,CIDR:SIZE…]')
  return entries.map((entry) => {
    const m = /^(.+):(\d{1,3})$/.exec(entry)
    const parsed = m ? parseCidr(m[1] ?? '') : undefined
    if (!m || !parsed || parsed.ip.family !== 4) {
      throw invalid(`default pool ${quote(entry)} is not of the form IPv4-CIDR:SIZE (for example 172.17.0.0/16:16)`)
    }
    const size = Number(m[2])
    if (size < parsed.prefix.bits || size > 30) {
      throw invalid(`default pool "${entry}": size /${size} must lie between the base's /${parsed.prefix.bits} and /30`)
    }
    return { base: parsed.prefix, size }
  })
}

/** The pool ID Docker keeps for a network: `<space>/<cidr>[/<range>]`, like the built-in IPAM. */
export function poolIdOf(space: string, pool: Prefix, subPool?: Prefix): string {
  return `${space}/${formatPrefix(pool)}${subPool ? `/${formatPrefix(subPool)}` : ''}`
}

export interface TakenPool {
  id: string
  prefix: Prefix
}

/** Refuses an explicit subnet that overlaps a pool already handed out in the same space. */
export function checkExplicitPool(prefix: Prefix, taken: TakenPool[]): void {
  const clash = taken.find((t) => prefixesOverlap(t.prefix, prefix))
  if (clash) {
    throw conflict(`subnet ${formatPrefix(prefix)} overlaps subnet ${formatPrefix(clash.prefix)}, which another tsnet network already uses (pool ${clash.id})`,
      { pool: formatPrefix(prefix), existing: clash.id })
  }
}

/**
 * First candidate subnet that overlaps neither a taken pool nor a prefix the host routes.
 * `bits` asks for a specific size (Docker's size-only `--subnet 0.0.0.0/24`).
 */
export function chooseDefaultPool(candidates: DefaultPool[], taken: Prefix[], reserved: Prefix[], bits?: number): Prefix | undefined {
  const blockers = [...taken, ...reserved]
  for (const c of candidates) {
    const size = bits ?? c.size
    const count = subnetCount(c.base, size)
    for (let i = 0n; i < count; i++) {
      const p = nthSubnet(c.base, size, i)
      const blocker = blockers.find((b) => prefixesOverlap(b, p))
      if (!blocker) return p
      // Skip past a blocker that covers several candidates at once.
      if (blocker.bits < size) i = (lastAddress(blocker) - c.base.network) >> BigInt(familyBits(c.base.family) - size)
    }
  }
  return undefined
}

/** An automatic IPv6 pool: the first free /64 (or `bits`) in a host-specific ULA /48. */
export function chooseUlaPool(ula48: Prefix, taken: Prefix[], reserved: Prefix[] = [], bits?: number): Prefix | undefined {
  return chooseDefaultPool([{ base: ula48, size: 64 }], taken, reserved, bits)
}

/** Addresses no lease may ever take: the network address, and the IPv4 broadcast. */
export function isReserved(pool: Prefix, value: bigint): boolean {
  if (pool.bits >= familyBits(pool.family) - 1) return false // point-to-point /31, /127 and single-address prefixes
  if (value === pool.network) return true
  return pool.family === 4 && value === lastAddress(pool)
}

export interface AddressRequest {
  pool: Prefix
  range?: Prefix
  preferred?: Ip
  used: ReadonlySet<bigint>
  poolId: string
}

/** Picks the address to lease: the preferred one if valid and free, else the lowest free in the range. */
export function pickAddress(req: AddressRequest): bigint {
  const { pool, range, preferred, used, poolId } = req
  if (preferred) {
    const shown = formatIp(preferred)
    if (preferred.family !== pool.family) throw invalid(`address ${shown} is not an IPv${pool.family} address, but pool ${poolId} is`)
    if (!prefixContains(pool, preferred)) throw invalid(`address ${shown} is outside pool ${formatPrefix(pool)}`)
    if (isReserved(pool, preferred.value)) throw invalid(`address ${shown} is the network or broadcast address of ${formatPrefix(pool)} and cannot be assigned`)
    if (used.has(preferred.value)) throw conflict(`address ${shown} is already in use in pool ${formatPrefix(pool)}`)
    return preferred.value
  }
  const scope = range ?? pool
  const end = lastAddress(scope)
  for (let v = scope.network; v <= end; v++) {
    if (!used.has(v) && !isReserved(pool, v)) return v
  }
  const where = range ? `IP range ${formatPrefix(range)} of pool ${formatPrefix(pool)}` : `pool ${formatPrefix(pool)}`
  throw exhausted(`${where} has no free address left (${used.size} leased)`, { pool: poolId })
}

/**
 * pickAddress, keeping `cooling` addresses (recently released by garbage collection) for when
 * nothing else is left; a preferred address may always take one.
 */
export function pickAvoiding(req: AddressRequest, cooling: readonly bigint[]): bigint {
  if (req.preferred || cooling.length === 0) return pickAddress(req)
  try {
    return pickAddress({ ...req, used: new Set([...req.used, ...cooling]) })
  } catch {
    return pickAddress(req)
  }
}

/** Per pool, addresses kept out of automatic picks until a time (ms): those garbage collection released. */
export class Cooling {
  private readonly pools = new Map<string, Map<bigint, number>>()

  add(poolId: string, value: bigint, until: number): void {
    const entries = this.pools.get(poolId) ?? new Map<bigint, number>()
    entries.set(value, until)
    this.pools.set(poolId, entries)
  }

  /** The addresses of `poolId` still cooling at `now`; forgets the others. */
  at(poolId: string, now: number): bigint[] {
    const entries = this.pools.get(poolId)
    if (!entries) return []
    for (const [v, until] of entries) if (until <= now) entries.delete(v)
    if (entries.size === 0) this.pools.delete(poolId)
    return [...entries.keys()]
  }

  forget(poolId: string): void {
    this.pools.delete(poolId)
  }
}

/** Validates RequestPool's Pool/SubPool pair; returns canonical prefixes. */
export function parsePoolRequest(pool: string, subPool: string, v6: boolean): { pool?: Prefix; sizeOnly?: number; subPool?: Prefix } {
  const family: Family = v6 ? 6 : 4
  if (pool === '') {
    if (subPool !== '') throw invalid(`an IP range (${clip(subPool)}) needs an explicit subnet`)
    return {}
  }
  const parsed = parseCidr(pool)
  if (!parsed) throw invalid(`subnet ${quote(pool)} is not a valid CIDR`)
  if (parsed.ip.family !== family) throw invalid(`subnet ${pool} is IPv${parsed.ip.family}, but the request is for IPv${family}`)
  if (parsed.ip.value === 0n && parsed.prefix.bits > 0 && subPool === '') return { sizeOnly: parsed.prefix.bits }
  if (parsed.ip.value !== parsed.prefix.network) {
    throw invalid(`subnet ${pool} has host bits set; did you mean ${formatPrefix(parsed.prefix)}?`)
  }
  if (parsed.prefix.bits === 0) throw invalid(`subnet ${pool} covers the whole address space`)
  if (subPool === '') return { pool: parsed.prefix }
  const sub = parseCidr(subPool)
  if (!sub) throw invalid(`IP range ${quote(subPool)} is not a valid CIDR`)
  if (sub.ip.value !== sub.prefix.network) throw invalid(`IP range ${subPool} has host bits set; did you mean ${formatPrefix(sub.prefix)}?`)
  if (!prefixWithin(sub.prefix, parsed.prefix)) throw invalid(`IP range ${subPool} is not inside subnet ${formatPrefix(parsed.prefix)}`)
  return { pool: parsed.prefix, subPool: sub.prefix }
}
