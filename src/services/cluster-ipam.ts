/**
 * Docker's IpamDriver verbs for cluster networks (`--ipam-opt tsnet.overlay=<name>`): the pool is
 * the subnet the cluster agreed, and every address is a claim in the cluster store, so no two
 * hosts ever hand out one address. Pools of cluster networks have IDs of their own
 * (`cluster/<name>/4`), which route Docker's later calls here; nothing about them is kept on the
 * host.
 */
import type { Logger } from 'pino'
import { randomBytes } from 'node:crypto'
import { type Family, type Prefix, formatIp, parseCidr, parseIp } from '../core/addr.js'
import { checkNetworkName } from '../core/cluster-spec.js'
import { TsnetError, invalid, notFound, quote } from '../errors.js'
import { CLUSTER_OPTION } from '../modes/cluster.js'
import type { ReleaseAddressRequest, ReleasePoolRequest, RequestAddressRequest, RequestPoolRequest } from '../protocol/types.js'
import { OPT } from '../protocol/types.js'
import type { Store } from '../store/store.js'
import { agreeIpv6 } from './cluster-ipv6.js'
import { joinMembers, leaveMembers } from './cluster-members.js'
import type { ClusterNetworks } from './cluster-networks.js'

const POOL_PREFIX = 'cluster/'
const poolIdOf = (name: string, family: Family) => `${POOL_PREFIX}${name}/${family}`

/** The cluster network and family a pool ID names, or undefined when it is not a cluster pool. */
export function clusterOfPool(poolId: string): { name: string; family: Family } | undefined {
  const m = /^cluster\/([^/]+)\/([46])$/.exec(poolId)
  return m ? { name: checkNetworkName(m[1]), family: m[2] === '6' ? 6 : 4 } : undefined
}

/** A pool for a cluster network asked of a tsnet without the cluster store: refused, never made local. */
export function refuseClusterPool<T extends RequestPoolRequest>(req: T): T {
  const name = req.Options?.[CLUSTER_OPTION.name]
  if (name !== undefined) throw invalid(`--ipam-opt ${CLUSTER_OPTION.name}=${name} asks for a cluster network, which needs the cluster store: start tsnet with --etcd-endpoints (docs/overlay.md)`)
  return req
}

/** An unreachable etcd, said so that a user of `docker run` knows what to look at. */
function explained(err: unknown, name: string, doing: string): unknown {
  if (err instanceof TsnetError && err.kind === 'unavailable') {
    return new TsnetError('unavailable', `cluster network ${quote(name)}: ${doing} needs etcd, which is unreachable (${err.message}); containers already running keep working`, { cause: err })
  }
  return err
}

export class ClusterIpam {
  constructor(
    private readonly store: Store,
    private readonly networks: ClusterNetworks,
    /** Prefixes this host routes, which an automatic pool must not overlap. */
    private readonly routed: () => Promise<Prefix[]>,
  ) {}

  /** Whether Docker's RequestPool is for a cluster network. */
  ownsPoolRequest = (req: RequestPoolRequest) => req.Options?.[CLUSTER_OPTION.name] !== undefined
  ownsPool = (poolId: string) => poolId.startsWith(POOL_PREFIX)

  async requestPool(req: RequestPoolRequest, log: Logger) {
    const name = checkNetworkName(req.Options?.[CLUSTER_OPTION.name])
    if (req.SubPool) throw invalid(`cluster network ${quote(name)} takes no --ip-range: every host hands out addresses from the whole subnet, claimed in the cluster store`)
    try {
      if (req.V6 === true) {
        // Docker asks for IPv6 after IPv4, whose call joined the members already.
        const spec = await agreeIpv6(this.store, this.networks, name, req.Pool || undefined)
        log.info({ ipam: 'cluster.pool', network: name, ipv6Subnet: spec.ipv6Subnet }, 'cluster network has IPv6')
        return { PoolID: poolIdOf(name, 6), Pool: spec.ipv6Subnet ?? '', Data: {} }
      }
      for (let attempt = 1; attempt <= 3; attempt++) {
        const avoid = req.Pool ? [] : await this.routed()
        const { spec, created } = await this.networks.agree(name, req.Pool ? { subnet: req.Pool } : {}, avoid)
        if (await joinMembers(this.store, name, this.networks.hostId)) {
          log.info({ ipam: 'cluster.pool', network: name, subnet: spec.subnet, vni: spec.vni, created }, created ? 'cluster network stored in the cluster store' : 'joined the cluster network')
          return { PoolID: poolIdOf(name, 4), Pool: spec.subnet, Data: {} }
        }
        this.networks.forget(name) // removed by its last host meanwhile: agree again
      }
    } catch (err) {
      throw explained(err, name, 'creating the network')
    }
    throw new TsnetError('conflict', `cluster network ${quote(name)} was removed by other hosts while this one joined it; try again`)
  }

  async releasePool(req: ReleasePoolRequest, log: Logger) {
    const pool = clusterOfPool(req.PoolID)
    if (!pool || pool.family === 6) return {} // membership goes with the IPv4 pool
    const { name } = pool
    try {
      const removed = await leaveMembers(this.store, name, this.networks.hostId)
      this.networks.forget(name)
      log.info({ ipam: 'cluster.left', network: name, removed }, removed ? 'cluster network removed from the cluster store (its last host left)' : 'left the cluster network')
    } catch (err) {
      throw explained(err, name, 'removing the network')
    }
    return {}
  }

  async requestAddress(req: RequestAddressRequest, log: Logger) {
    const pool = clusterOfPool(req.PoolID)
    if (!pool) throw notFound(`address pool ${quote(req.PoolID)} is unknown to tsnet`)
    const { name, family } = pool
    const asked = req.Address ? (parseIp(req.Address) ?? parseCidr(req.Address)?.ip) : undefined
    if (req.Address && !asked) throw invalid(`requested address ${quote(req.Address)} is not an IP address`)
    try {
      const { subnet, gateway } = await this.familyOf(name, family)
      if (req.Options?.[OPT.requestAddressType] === OPT.gatewayType) {
        // The same gateway on every host: each host's bridge answers for it, and nothing crosses.
        if (asked && formatIp(asked) !== gateway) {
          throw invalid(`cluster network ${quote(name)} has the gateway ${gateway}, not ${req.Address}: leave --gateway out, or give the same one on every host`)
        }
        return { Address: `${gateway}/${subnet.split('/')[1]}`, Data: {} }
      }
      const claim = await this.networks.claim(name, `docker-${randomBytes(6).toString('hex')}`, asked ? formatIp(asked) : undefined, family)
      log.info({ ipam: 'cluster.address', network: name, address: claim.ip }, 'address claimed in the cluster store')
      return { Address: claim.address, Data: {} }
    } catch (err) {
      throw explained(err, name, 'an address')
    }
  }

  /** The subnet and gateway of one family (a spec without IPv6 is read again: another host may have added it). */
  private async familyOf(name: string, family: Family): Promise<{ subnet: string; gateway: string }> {
    let spec = await this.networks.spec(name)
    if (family === 4) return { subnet: spec.subnet, gateway: spec.gateway }
    if (!spec.ipv6Subnet) {
      this.networks.forget(name)
      spec = await this.networks.spec(name)
    }
    if (!spec.ipv6Subnet || !spec.ipv6Gateway) throw notFound(`cluster network ${quote(name)} has no IPv6 subnet`)
    return { subnet: spec.ipv6Subnet, gateway: spec.ipv6Gateway }
  }

  async releaseAddress(req: ReleaseAddressRequest, log: Logger) {
    const pool = clusterOfPool(req.PoolID)
    const ip = parseIp(req.Address) ?? parseCidr(req.Address)?.ip
    if (!pool || !ip || ip.family !== pool.family) return {}
    const { name } = pool
    const address = formatIp(ip)
    try {
      if (address === (await this.familyOf(name, pool.family)).gateway) return {}
      const outcome = await this.networks.release(name, address)
      log.info({ ipam: 'cluster.released', network: name, address, outcome }, 'address released in the cluster store')
    } catch (err) {
      if (err instanceof TsnetError && err.kind === 'notfound') return {} // the network left the cluster: nothing is held
      throw explained(err, name, 'releasing an address')
    }
    return {}
  }
}
