/**
 * Pure garbage-collection decisions: which of tsnet's records Docker's view no longer explains.
 * A record is only collected once it has been unexplained in two passes at least `minAgeMs`
 * apart, so nothing Docker is still in the middle of creating is ever removed.
 */
import { formatIp, formatPrefix, parseCidr, parseIp } from './addr.js'
import { GLOBAL_SPACE } from './ipam.js'
import type { EndpointRecord, LeaseRecord, NetworkRecord, PoolRecord } from './records.js'
import type { DockerSnapshot } from './docker-facts.js'

export interface TsnetView {
  networks: NetworkRecord[]
  endpoints: EndpointRecord[]
  pools: Array<PoolRecord & { leases: LeaseRecord[] }>
}

export type Stale =
  | { kind: 'endpoint'; networkId: string; endpointId: string }
  | { kind: 'network'; networkId: string }
  | { kind: 'lease'; poolId: string; address: string; createdAt: string }
  | { kind: 'pool'; poolId: string; createdAt: string }

export const staleKey = (s: Stale): string => {
  switch (s.kind) {
    case 'endpoint': return `endpoint:${s.endpointId}`
    case 'network': return `network:${s.networkId}`
    // A record made again (same address or pool, new createdAt) is a new suspect.
    case 'lease': return `lease:${s.poolId}#${s.address}@${s.createdAt}`
    case 'pool': return `pool:${s.poolId}@${s.createdAt}`
  }
}

/** Canonical form of an address written with or without a mask, for comparing Docker's and ours. */
function bareIp(text: string | undefined): string | undefined {
  if (!text) return undefined
  const ip = parseIp(text) ?? parseCidr(text)?.ip
  return ip ? formatIp(ip) : undefined
}

const canonicalCidr = (text: string | undefined) => {
  const c = text ? parseCidr(text) : undefined
  return c ? formatPrefix(c.prefix) : undefined
}

/** Whether Docker must be inspected for a network: it is tsnet's, or it holds a tsnet pool's subnet. */
export function needsInspection(view: TsnetView): (n: { id: string; subnets: string[] }) => boolean {
  const ours = new Set(view.networks.map((n) => n.id))
  const poolSubnets = new Set(view.pools.map((p) => p.pool))
  return (n) => ours.has(n.id) || n.subnets.some((s) => poolSubnets.has(canonicalCidr(s) ?? s))
}

/** Everything of tsnet's that Docker's snapshot does not explain right now. */
export function findUnexplained(view: TsnetView, docker: DockerSnapshot): Stale[] {
  const out: Stale[] = []
  const dockerNets = new Map(docker.networks.map((n) => [n.id, n]))

  for (const n of view.networks) {
    if (!dockerNets.has(n.id)) out.push({ kind: 'network', networkId: n.id })
  }
  for (const e of view.endpoints) {
    const dn = dockerNets.get(e.networkId)
    if (!dn) continue // the whole network goes
    if (!dn.endpoints) continue // not inspected: no verdict
    if (!dn.endpoints.some((x) => x.endpointId === e.id)) out.push({ kind: 'endpoint', networkId: e.networkId, endpointId: e.id })
  }

  for (const p of view.pools) {
    if (p.addressSpace === GLOBAL_SPACE) continue // swarm allocations: Docker's local view does not show them
    const users = docker.networks.filter((n) => n.ipam.some((c) => canonicalCidr(c.subnet) === p.pool && (canonicalCidr(c.ipRange) ?? undefined) === (p.subPool ?? undefined)))
    if (users.length === 0) {
      out.push({ kind: 'pool', poolId: p.id, createdAt: p.createdAt })
      continue
    }
    if (users.some((u) => !u.endpoints)) continue // a user was not inspected: no verdict on its leases
    const explained = new Set<string>()
    for (const u of users) {
      for (const c of u.ipam) {
        for (const a of [c.gateway, ...c.auxAddresses]) {
          const ip = bareIp(a)
          if (ip) explained.add(ip)
        }
      }
      for (const e of u.endpoints ?? []) {
        for (const a of [e.ipv4, e.ipv6]) {
          const ip = bareIp(a)
          if (ip) explained.add(ip)
        }
      }
    }
    for (const l of p.leases) {
      // Docker's API does not show a gateway it did not get from the user: gateways go with their pool.
      if (l.kind === 'gateway') continue
      if (!explained.has(bareIp(l.address) ?? l.address)) out.push({ kind: 'lease', poolId: p.id, address: l.address, createdAt: l.createdAt })
    }
  }
  return out
}

/**
 * Keeps a suspect list across passes. Returns what to collect now: unexplained in this pass and
 * already suspected at least `minAgeMs` ago. Suspects Docker explains again are forgiven.
 */
export function confirm(unexplained: Stale[], suspects: ReadonlyMap<string, number>, now: number, minAgeMs: number): { collect: Stale[]; suspects: Map<string, number> } {
  const next = new Map<string, number>()
  const collect: Stale[] = []
  for (const s of unexplained) {
    const key = staleKey(s)
    const since = suspects.get(key) ?? now
    next.set(key, since)
    if (now - since >= minAgeMs) collect.push(s)
  }
  return { collect, suspects: next }
}

/** When the record behind a stale item was made (ISO), as tsnet's view says. */
export function createdAtOf(s: Stale, view: Pick<TsnetView, 'networks' | 'endpoints'>): string | undefined {
  switch (s.kind) {
    case 'network': return view.networks.find((n) => n.id === s.networkId)?.createdAt
    case 'endpoint': return view.endpoints.find((e) => e.id === s.endpointId)?.createdAt
    default: return s.createdAt
  }
}

/** Whether a record made at `createdAt` (ISO) is at least `ageMs` old at `now`; an unreadable time is not. */
export function olderThan(createdAt: string | undefined, now: number, ageMs: number): boolean {
  const t = createdAt === undefined ? NaN : Date.parse(createdAt)
  return Number.isFinite(t) && now - t >= ageMs
}
