/**
 * VNI claims on the Swarm leader, pure. Swarm's raft store is the truth: it keeps the options
 * AllocateNetwork returned and gives them back when it calls AllocateNetwork again (a retry, a
 * new leader restoring its allocator, a manager restart). So a VNI in the options is taken as it
 * is, and the claims tsnet keeps only serve to choose a free VNI for a network that has none.
 */
import { exhausted } from '../errors.js'
import { formatVniRange, type VniRange } from './overlay-options.js'

/** Network ID → VNI. */
export type VniClaims = Readonly<Record<string, number>>

export interface VniDecision {
  vni: number
  claims: VniClaims
  /** 'kept': the network had it; 'given': Swarm's options carried it; 'allocated': chosen now. */
  how: 'kept' | 'given' | 'allocated'
  /** A network whose claim on the same VNI was dropped (a claim left from an earlier term as leader). */
  evicted?: string
}

/** A network's own claim: an ID such as `__proto__` must not find what every object inherits. */
const claimOf = (claims: VniClaims, networkId: string): number | undefined => (Object.hasOwn(claims, networkId) ? claims[networkId] : undefined)

/**
 * The VNI of `networkId`: the one Swarm's options carry (`given`), else the one already claimed,
 * else the lowest free one of `range`.
 */
export function claimVni(claims: VniClaims, networkId: string, given: number | undefined, range: VniRange): VniDecision {
  if (given !== undefined) {
    if (claimOf(claims, networkId) === given) return { vni: given, claims, how: 'kept' }
    const holder = Object.keys(claims).find((id) => id !== networkId && claims[id] === given)
    const next: Record<string, number> = { ...claims, [networkId]: given }
    if (holder !== undefined) delete next[holder]
    return { vni: given, claims: next, how: 'given', ...(holder !== undefined ? { evicted: holder } : {}) }
  }
  const mine = claimOf(claims, networkId)
  if (mine !== undefined) return { vni: mine, claims, how: 'kept' }
  const used = new Set(Object.values(claims))
  for (let vni = range.first; vni <= range.last; vni++) {
    if (!used.has(vni)) return { vni, claims: { ...claims, [networkId]: vni }, how: 'allocated' }
  }
  throw exhausted(`every VNI of tsnet's range ${formatVniRange(range)} is in use by an overlay network (${range.last - range.first + 1} networks): remove one, or widen TSNET_VNI_RANGE on the managers (staying below 4096 if Docker's overlay runs on the same hosts)`)
}

/** The claims without `networkId` (FreeNetwork); unchanged when it held none. */
export function releaseVni(claims: VniClaims, networkId: string): VniClaims {
  if (claimOf(claims, networkId) === undefined) return claims
  const next = { ...claims }
  delete next[networkId]
  return next
}
