/**
 * The store against itself and against Docker's view: records Docker no longer knows (garbage
 * collection's own judgement, core/gc-plan.ts) and addresses leased to no endpoint. Only records
 * older than a minute are judged: a younger one may be a container Docker is still creating. Pure.
 */
import { formatIp, parseCidr, parseIp } from '../core/addr.js'
import type { DockerSnapshot } from '../core/docker-facts.js'
import { createdAtOf, findUnexplained, olderThan, type TsnetView } from '../core/gc-plan.js'
import { GLOBAL_SPACE } from '../core/ipam.js'
import type { EndpointRecord, LeaseRecord, NetworkRecord, PoolRecord } from '../core/records.js'
import type { Directory } from './directory.js'
import type { Finding } from './findings.js'

/** Records younger than this are left alone (garbage collection's `--fix` pass uses the same age). */
export const SETTLED_MS = 60_000

export const FIX_COLLECT = 'tsnet doctor --fix (asks the daemon for a garbage collection pass now, which checks with Docker again first)'

const bare = (text: string) => {
  const ip = parseIp(text) ?? parseCidr(text)?.ip
  return ip ? formatIp(ip) : text
}

const settled = (createdAt: string | undefined, now: number) => olderThan(createdAt, now, SETTLED_MS)

/** The store's records, as the commands read them. */
export interface Records {
  networks: NetworkRecord[]
  endpoints: EndpointRecord[]
  pools: PoolRecord[]
  leases: LeaseRecord[]
}

export function tsnetView(r: Records): TsnetView {
  return { networks: r.networks, endpoints: r.endpoints, pools: r.pools.map((p) => ({ ...p, leases: r.leases.filter((l) => l.poolId === p.id) })) }
}

/** What Docker's snapshot does not explain, as findings (records younger than SETTLED_MS left out). */
export function dockerFindings(r: Records, docker: DockerSnapshot, dir: Directory, now: number): Finding[] {
  const out: Finding[] = []
  for (const s of findUnexplained(tsnetView(r), docker)) {
    if (!settled(createdAtOf(s, r), now)) continue
    const problem = s.kind === 'network' ? `${dir.network(s.networkId)} is in tsnet's store, but Docker no longer knows it`
      : s.kind === 'endpoint' ? `${dir.endpoint(s.endpointId)} is in tsnet's store, but Docker has no such endpoint`
        : s.kind === 'lease' ? `address ${s.address} of pool ${s.poolId} is leased, but no container, gateway or aux address of Docker's has it`
          : `pool ${s.poolId} is allocated, but no Docker network uses it`
    out.push({ area: 'docker', problem, fix: FIX_COLLECT, remedy: 'collect' })
  }
  return out
}

/**
 * Addresses leased for an endpoint that no endpoint of tsnet's has, in pools whose subnet is a
 * tsnet network's (a pool serving another driver's network has no tsnet endpoints to compare).
 * Swarm's global pools are the manager's business and are left out.
 */
export function leasesWithoutEndpoints(r: Records, dir: Directory, now: number): Finding[] {
  const subnetOwner = new Map<string, string>()
  for (const n of r.networks) for (const s of [...n.ipv4Subnets, ...n.ipv6Subnets]) subnetOwner.set(s.pool, n.id)
  const used = new Set(r.endpoints.flatMap((e) => [e.address, e.addressV6].filter((a): a is string => a !== undefined).map((a) => `${e.networkId} ${bare(a)}`)))
  const out: Finding[] = []
  for (const l of r.leases) {
    if (l.kind !== 'endpoint' || !settled(l.createdAt, now)) continue
    const pool = r.pools.find((p) => p.id === l.poolId)
    if (!pool || pool.addressSpace === GLOBAL_SPACE) continue
    const networkId = subnetOwner.get(pool.pool)
    if (networkId === undefined || used.has(`${networkId} ${bare(l.address)}`)) continue
    out.push({
      area: 'store',
      problem: `address ${bare(l.address)} of ${dir.network(networkId)} is leased${l.owner ? ` to ${l.owner}` : ''}, but no endpoint of tsnet's has it`,
      fix: `${FIX_COLLECT}; without a Docker API it cannot be confirmed: give tsnet doctor and tsnet serve --docker-host`,
      remedy: 'collect',
    })
  }
  return out
}
