/**
 * Cluster mode (issue 14): one network across plain Docker hosts that share an etcd, chosen by
 * `-o tsnet.overlay=<name>`. On each host it is a bridge network (the cluster's gateway on the
 * bridge, egress NAT, published ports, isolation) whose bridge also has a VXLAN port. The port
 * neither floods nor learns: every remote endpoint gets a static FDB entry (its MAC behind its
 * host's VTEP) and a neighbour entry the port answers ARP and neighbour solicitations from, so no
 * broadcast ever crosses hosts and a stale entry is whatever the store no longer says. Only the
 * VTEPs of hosts that have endpoints may send the network's VXLAN here.
 */
import { invalid, quote } from '../errors.js'
import { formatIp, parseIp, type Family } from '../core/addr.js'
import { checkNetworkName } from '../core/cluster-spec.js'
import { COMMON_OPTION } from '../core/docker-keys.js'
import { VTEP_TAG, setName, vtepPassRule, vtepSpoofRule, vxlanGuardRule } from '../core/edge-rules.js'
import { networkAlias, networkTag } from '../core/names.js'
import type { HostObject } from '../core/objects.js'
import { parseMtu } from '../core/options.js'
import type { ClusterNetwork, NetworkRecord } from '../core/records.js'
import { BRIDGE_OPTION, bridgeMode, joinAnswer } from './bridge.js'
import type { ClusterPlan, NetworkMode, RemoteEndpoint, RenderContext } from './mode.js'
import { overlayMtu } from './overlay-options.js'
import { vxlanNameFor } from './overlay.js'

/** The smallest MTU an IPv6 link may have (RFC 8200). */
const IPV6_MIN_MTU = 1280

export const CLUSTER_OPTION = { name: 'tsnet.overlay' } as const

const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/

const isCluster = (n: NetworkRecord): n is ClusterNetwork => n.mode === 'cluster'
function clusterOf(n: NetworkRecord): ClusterNetwork {
  if (!isCluster(n)) throw invalid(`network ${n.id.slice(0, 12)} is not a cluster network`)
  return n
}

/** The pool Docker gave must be the cluster's subnet: only tsnet's IPAM with the same name hands it out. */
type Subnets = Array<{ pool: string; gateway?: string; auxAddresses?: Record<string, string> }>
function checkPool(name: string, n: { ipv4Subnets: Subnets; ipv6Subnets: Subnets; ipv6: boolean }, plan: ClusterPlan) {
  const { subnet, gateway } = plan
  const how = `create it with --ipam-driver tsnet --ipam-opt ${CLUSTER_OPTION.name}=${name} (tsnet's IPAM claims every address in the cluster store; another IPAM would hand out addresses other hosts use)`
  const [v4, ...more] = n.ipv4Subnets
  if (!v4 || more.length > 0) throw invalid(`cluster network ${quote(name)} takes exactly one IPv4 subnet, the cluster's ${subnet}: ${how}`)
  if (v4.pool !== subnet) throw invalid(`the network's subnet ${v4.pool} is not cluster network ${quote(name)}'s subnet ${subnet}: ${how}`)
  if ([...n.ipv4Subnets, ...n.ipv6Subnets].some((s) => Object.keys(s.auxAddresses ?? {}).length > 0)) {
    throw invalid(`cluster network ${quote(name)} takes no --aux-address: an address kept from containers would have to be kept on every host (leave it out)`)
  }
  if (v4.gateway !== undefined && v4.gateway.split('/')[0] !== gateway) {
    throw invalid(`the network's gateway ${v4.gateway} is not cluster network ${quote(name)}'s gateway ${gateway}: ${how}`)
  }
  if (!n.ipv6) return
  const [v6, ...more6] = n.ipv6Subnets
  if (!plan.ipv6Subnet || !v6 || more6.length > 0 || v6.pool !== plan.ipv6Subnet) {
    throw invalid(`the network's IPv6 subnet ${v6?.pool ?? '(none)'} is not cluster network ${quote(name)}'s ${plan.ipv6Subnet ?? '(none yet)'}: ${how}`)
  }
  if (v6.gateway !== undefined && parseIp(v6.gateway.split('/')[0] ?? '')?.value !== parseIp(plan.ipv6Gateway ?? '')?.value) {
    throw invalid(`the network's IPv6 gateway ${v6.gateway} is not cluster network ${quote(name)}'s gateway ${plan.ipv6Gateway}: ${how}`)
  }
}

/** Remote endpoints as the store gave them, checked: anything malformed is left out, never programmed. */
export function usableRemotes(remotes: readonly RemoteEndpoint[], family: Family, local: string): RemoteEndpoint[] {
  const seen = new Map<string, RemoteEndpoint>()
  for (const r of remotes) {
    const ip = parseIp(r.ip)
    const vtep = parseIp(r.vtep)
    if (!ip || ip.family !== 4 || !vtep || vtep.family !== family || r.vtep === local || !MAC.test(r.mac)) continue
    const v6 = r.ipv6 !== undefined ? parseIp(r.ipv6) : undefined
    seen.set(r.ip, { ip: r.ip, mac: r.mac, vtep: r.vtep, ...(v6?.family === 6 ? { ipv6: formatIp(v6) } : {}) })
  }
  return [...seen.values()].sort((a, b) => (a.ip < b.ip ? -1 : a.ip > b.ip ? 1 : 0))
}

function vxlanObjects(n: ClusterNetwork, remotes: readonly RemoteEndpoint[]): HostObject[] {
  const { vxlan, local, vni, port, bridge } = n.spec
  const f: Family = parseIp(local)?.family ?? 4
  const usable = usableRemotes(remotes, f, local)
  const vteps = [...new Set(usable.map((r) => r.vtep))].sort()
  return [
    {
      kind: 'link', name: vxlan, type: 'vxlan', alias: networkAlias(n.id), mtu: n.mtu, master: bridge, up: true, recreate: true,
      vxlan: { vni, port, local, learning: false, proxy: true },
    },
    ...usable.flatMap((r): HostObject[] => [
      { kind: 'fdb', link: vxlan, mac: r.mac, dst: r.vtep },
      // And in the bridge, static on the VXLAN port: frames to it go straight there (never flooded
      // to local ports), and the entry goes when the endpoint does, not after the bridge's ageing.
      { kind: 'fdb', link: vxlan, mac: r.mac },
      { kind: 'neigh', link: vxlan, ip: r.ip, mac: r.mac },
      ...(r.ipv6 ? [{ kind: 'neigh', link: vxlan, ip: r.ipv6, mac: r.mac } as const] : []),
    ]),
    ...vteps.map((dst): HostObject => ({ kind: 'setEntry', set: setName('vtep', f), entry: dst, comment: VTEP_TAG })),
    { kind: 'guard', family: f, rule: vxlanGuardRule(f, port, vni, networkTag(n.id)) },
    { kind: 'guard', family: f, rule: vtepPassRule(f, port) },
    { kind: 'guard', family: f, rule: vtepSpoofRule(f, port), table: 'mangle' },
  ]
}

export const clusterMode: NetworkMode = {
  name: 'cluster',
  optionKeys: [CLUSTER_OPTION.name, ...Object.values(BRIDGE_OPTION)],
  supports: { policy: false, publish: true },
  refusedOptions: {
    [COMMON_OPTION.allow]: 'policies are not available on cluster networks yet: a policy names containers of this host only',
  },

  planSpec(generic, common, ctx) {
    const name = checkNetworkName(generic[CLUSTER_OPTION.name])
    if (ctx.scope === 'global') {
      throw invalid(`${CLUSTER_OPTION.name} makes a network across hosts that share an etcd, without Swarm; in a swarm, create an overlay network (docs/overlay.md)`)
    }
    const plan = ctx.cluster
    if (!plan) throw invalid(`${CLUSTER_OPTION.name}=${name} needs the cluster store: start tsnet with --etcd-endpoints (docs/overlay.md)`)
    checkPool(name, common, plan)
    const { [CLUSTER_OPTION.name]: _, ...bridgeOptions } = generic
    const asBridge = bridgeMode.planSpec(bridgeOptions, common, ctx)
    if (asBridge.mode !== 'bridge') throw new Error('bridge mode planned another mode')
    const f: Family = parseIp(plan.vtep)?.family ?? 4
    const given = generic[COMMON_OPTION.mtu]
    // The cluster's agreed MTU when there is one (every host alike); the service refused an option that differs.
    const mtu = plan.mtu ?? (given !== undefined ? parseMtu(given, COMMON_OPTION.mtu) : overlayMtu(plan.smallestUnderlayMtu, f, common.ipv6))
    if (common.ipv6 && mtu < IPV6_MIN_MTU) throw invalid(`cluster network ${quote(name)} has MTU ${mtu}, below the ${IPV6_MIN_MTU} bytes IPv6 needs: give com.docker.network.driver.mtu of at least ${IPV6_MIN_MTU} on the host that creates it first`)
    const n: ClusterNetwork = {
      ...asBridge,
      mode: 'cluster',
      mtu,
      spec: { ...asBridge.spec, cluster: name, vxlan: vxlanNameFor(common.id), vni: plan.vni, port: plan.port, local: plan.vtep, underlayMtu: plan.underlayMtu },
    }
    return n
  },

  linkNames: bridgeMode.linkNames,
  claimedNames: (n) => [clusterOf(n).spec.bridge, clusterOf(n).spec.vxlan],

  renderNetwork(network, endpoints, ctx: RenderContext) {
    const n = clusterOf(network)
    return [...bridgeMode.renderNetwork(n, endpoints, ctx), ...vxlanObjects(n, ctx.cluster?.(n.spec.cluster) ?? [])]
  },

  networkDependsOnEndpoints: (n, before, after) => bridgeMode.networkDependsOnEndpoints(n, before, after),
  defaultHostIp: (n) => bridgeMode.defaultHostIp?.(n) ?? '',
  // The MAC pinned to its port: a frame from another host with this MAC as its source (a hostile
  // container there) cannot move it to the VXLAN port and take this container's traffic.
  renderEndpoint: (e, n, ctx) => [...bridgeMode.renderEndpoint(e, n, ctx), { kind: 'fdb', link: e.hostIf ?? e.containerIf, mac: e.mac }],
  join: joinAnswer,
  edge: (n) => bridgeMode.edge(n),
}
