/**
 * Bridge mode: a Linux bridge per network carrying its gateways, a veth pair per endpoint, and
 * the full network edge (egress NAT, published ports, isolation, policies).
 */
import { invalid, quote } from '../errors.js'
import { deviceGroupOf, edgeObjects, needsRouteLocalnet, publishedObjects, type EdgeNetwork } from '../core/edge-plan.js'
import { formatIp, parseIp } from '../core/addr.js'
import { COMMON_OPTION } from '../core/docker-keys.js'
import { gatewayAddresses, gatewayFor } from '../core/network-plan.js'
import {
  BRIDGE_PREFIX, CONTAINER_VETH_PREFIX, HOST_VETH_PREFIX, bridgeNameFor, checkIfName, containerVethFor, endpointAlias, hostVethFor, macFromSeed, networkAlias,
} from '../core/names.js'
import type { HostObject, LinkObject } from '../core/objects.js'
import { parseBool } from '../core/options.js'
import type { EndpointRecord, NetworkRecord } from '../core/records.js'
import type { HostFacts } from '../core/host-facts.js'
import type { JoinAnswer, NetworkMode, RenderContext } from './mode.js'

export const BRIDGE_OPTION = {
  bridgeName: 'com.docker.network.bridge.name',
  masquerade: 'com.docker.network.bridge.enable_ip_masquerade',
  icc: 'com.docker.network.bridge.enable_icc',
  hostBinding: 'com.docker.network.bridge.host_binding_ipv4',
} as const

/** A user's bridge name must not collide with the names tsnet gives its own bridges and veths. */
function checkUserBridgeName(name: string): string {
  checkIfName(name, `bridge name (${BRIDGE_OPTION.bridgeName})`)
  const reserved = [BRIDGE_PREFIX, HOST_VETH_PREFIX, CONTAINER_VETH_PREFIX].find((p) => name.toLowerCase().startsWith(p))
  if (reserved) throw invalid(`bridge name ${quote(name)} starts with ${reserved}, which tsnet reserves for the interfaces it names itself`)
  return name
}

const conf = (family: 'ipv4' | 'ipv6', iface: string, leaf: string) => `net/${family}/conf/${checkIfName(iface, 'bridge name')}/${leaf}`

/** Host-wide settings a network with a bridge needs. */
export function hostSysctls(n: NetworkRecord, facts: HostFacts): HostObject[] {
  const out: HostObject[] = []
  if (facts.brNetfilter) {
    // Frames inside a bridge meet iptables: ICC off and anti-spoofing rely on it.
    out.push({ kind: 'sysctl', path: 'net/bridge/bridge-nf-call-iptables', value: '1' })
    if (facts.ipv6) out.push({ kind: 'sysctl', path: 'net/bridge/bridge-nf-call-ip6tables', value: '1' })
  }
  if (!n.internal) out.push({ kind: 'sysctl', path: 'net/ipv4/ip_forward', value: '1' })
  if (!n.internal && n.ipv6 && facts.ipv6) out.push({ kind: 'sysctl', path: 'net/ipv6/conf/all/forwarding', value: '1' })
  return out
}

/**
 * The settings of one bridge (or any host-side link a network's containers hang on).
 * route_localnet only while a port published on a loopback or wildcard IPv4 address needs it:
 * the host's own 127.0.0.1 → container path leaves through the bridge with a loopback source.
 * (Nothing from outside reaches 127.0.0.0/8 either way: the edge drops it in raw PREROUTING.)
 * accept_ra off: a container's Router Advertisement would otherwise give the host a default
 * route and addresses.
 */
export function bridgeSysctls(iface: string, endpoints: readonly EndpointRecord[], facts: HostFacts): HostObject[] {
  const loopback = needsRouteLocalnet(endpoints.flatMap((e) => e.published ?? []))
  const out: HostObject[] = [{ kind: 'sysctl', path: conf('ipv4', iface, 'route_localnet'), value: loopback ? '1' : '0' }]
  if (facts.ipv6) out.push({ kind: 'sysctl', path: conf('ipv6', iface, 'accept_ra'), value: '0' })
  return out
}

/**
 * The host address that mappings without a HostIP bind to on `n` (-o host_binding_ipv4), or ''
 * for every address. 0.0.0.0 is Docker's default, so it means every address too.
 */
export function defaultHostIp(n: NetworkRecord): string {
  const text = n.genericOptions[BRIDGE_OPTION.hostBinding]
  const ip = text === undefined ? undefined : parseIp(text)
  if (!ip || (ip.family === 4 && ip.value === 0n)) return ''
  return formatIp(ip)
}

export function vethObject(e: EndpointRecord, bridge: string): LinkObject {
  if (!e.hostIf) throw invalid(`endpoint ${e.id.slice(0, 12)} has no host link`)
  return {
    kind: 'link', name: e.hostIf, type: 'veth', alias: endpointAlias(e.id), mtu: e.mtu, master: bridge, up: true,
    recreate: !e.joined, veth: { peer: e.containerIf, peerMac: e.mac },
  }
}

export function bridgeEdge(n: NetworkRecord, iface: string): EdgeNetwork {
  return {
    id: n.id, iface, subnets: [...n.ipv4Subnets, ...n.ipv6Subnets].map((s) => s.pool),
    masquerade: n.enableIpMasquerade, internal: n.internal, ...(n.policy ? { policy: n.policy } : {}),
  }
}

export function joinAnswer(n: NetworkRecord, e: EndpointRecord): JoinAnswer {
  const answer: JoinAnswer = {
    InterfaceName: { SrcName: e.containerIf, DstPrefix: n.genericOptions[COMMON_OPTION.ifacePrefix] ?? 'eth' },
  }
  // An internal network gives no gateway, so the container gets no default route (as Docker's bridge).
  if (n.internal) return answer
  const gw4 = gatewayFor(n.ipv4Subnets, e.address)
  const gw6 = gatewayFor(n.ipv6Subnets, e.addressV6)
  if (gw4) answer.Gateway = gw4
  if (gw6) answer.GatewayIPv6 = gw6
  return answer
}

/** The bridge of a bridge-mode network, or of a cluster one, which is a bridge network with a VXLAN port (another mode here is a bug). */
export function bridgeOf(n: NetworkRecord): string {
  if (n.mode !== 'bridge' && n.mode !== 'cluster') throw new Error(`network ${n.id.slice(0, 12)} is a ${n.mode} network, not a bridge one`)
  return n.spec.bridge
}

export const bridgeMode: NetworkMode = {
  name: 'bridge',
  optionKeys: Object.values(BRIDGE_OPTION),
  supports: { policy: true, publish: true },

  planSpec(generic, common, ctx) {
    const userBridge = generic[BRIDGE_OPTION.bridgeName]
    const bridge = userBridge !== undefined ? checkUserBridgeName(userBridge) : bridgeNameFor(common.id)
    const masq = generic[BRIDGE_OPTION.masquerade]
    const icc = generic[BRIDGE_OPTION.icc]
    const n: NetworkRecord = {
      ...common,
      mode: 'bridge',
      spec: { bridge, bridgeNamedByUser: userBridge !== undefined },
      enableIpMasquerade: masq === undefined ? true : parseBool(BRIDGE_OPTION.masquerade, masq),
      enableIcc: icc === undefined ? true : parseBool(BRIDGE_OPTION.icc, icc),
    }
    const hostBinding = generic[BRIDGE_OPTION.hostBinding]
    if (hostBinding !== undefined && !parseIp(hostBinding)) {
      throw invalid(`${BRIDGE_OPTION.hostBinding}=${quote(hostBinding)} is not an IP address: it names the host address that ports published without one (-p 8080:80) bind to`)
    }
    if (!n.enableIcc && !ctx.facts.brNetfilter) {
      throw invalid('enable_icc=false needs the br_netfilter kernel module, which is not loaded (modprobe br_netfilter; Docker loads it when it starts)')
    }
    return n
  },

  linkNames: (endpointId) => ({ hostIf: hostVethFor(endpointId), containerIf: containerVethFor(endpointId) }),
  claimedNames: (n) => [bridgeOf(n)],

  renderNetwork(n, endpoints, ctx: RenderContext) {
    const bridge = bridgeOf(n)
    return [
      {
        kind: 'link', name: bridge, type: 'bridge', alias: networkAlias(n.id), mtu: n.mtu, mac: macFromSeed(n.id),
        group: deviceGroupOf(n), up: true, recreate: true,
      },
      ...gatewayAddresses(n).map((cidr): HostObject => ({ kind: 'addr', link: bridge, cidr })),
      ...bridgeSysctls(bridge, endpoints, ctx.facts),
      ...hostSysctls(n, ctx.facts),
      ...edgeObjects(bridgeEdge(n, bridge), endpoints, ctx.resolve),
    ]
  },

  // A policy's entries name the containers; route_localnet follows ports published on loopback.
  networkDependsOnEndpoints: (n, before, after) =>
    n.policy !== undefined || [before, after].some((e) => needsRouteLocalnet(e?.published ?? [])),
  defaultHostIp,

  renderEndpoint(e, n) {
    return [vethObject(e, bridgeOf(n)), ...publishedObjects(e)]
  },

  join: joinAnswer,
  edge: (n) => bridgeEdge(n, bridgeOf(n)),
}
