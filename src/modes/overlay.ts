/**
 * Overlay mode: one L2 network across the hosts of a swarm. Per host and network, a VXLAN device
 * with no address (VNI and UDP port from the Swarm leader, source address this node's data-path
 * address) that floods broadcast and unknown frames to every other host (head-end replication)
 * and learns where remote MACs live from what arrives; each endpoint is a macvlan child of it
 * (bridge mode), which Docker moves into the container. Frames between two containers of a host
 * go from one child to the other; the rest leave through the VXLAN device. No bridge and no veth
 * sit in the path, so the host's firewall never sees the frames (br_netfilter only hooks bridges),
 * only the VXLAN datagrams between hosts, as with Docker's overlay (docs/overlay.md, "Data path").
 *
 * Networks made before (their spec names a bridge) keep what they were made with: a bridge with
 * the VXLAN device as a port and a veth per endpoint, its MAC pinned to its port.
 *
 * Join gives no gateway, so Docker adds docker_gwbridge for egress, as for its own overlay.
 * Nothing is routed into or out of the network on the host.
 */
import { invalid } from '../errors.js'
import { parseIp, type Family } from '../core/addr.js'
import { COMMON_OPTION } from '../core/docker-keys.js'
import { IFNAME_MAX, containerVethFor, endpointAlias, hostVethFor, macFromSeed, macvlanNameFor, networkAlias, networkTag } from '../core/names.js'
import { OVERLAY_GROUP, OVERLAY_TO_HOST_RULE, VTEP_TAG, edgeObjects, setName, vtepPassRule, vtepSpoofRule, vxlanGuardRule } from '../core/edge-plan.js'
import type { HostObject, LinkObject } from '../core/objects.js'
import { parseMtu } from '../core/options.js'
import type { EndpointRecord, NetworkRecord, OverlayNetwork } from '../core/records.js'
import { bridgeEdge, vethObject } from './bridge.js'
import { NO_OVERLAY, type JoinAnswer, type NetworkMode, type RenderContext } from './mode.js'
import {
  DEFAULT_VXLAN_PORT, LEARNED_AGEING_SEC, OVERLAY_OPTION, encryptionRefusal, overlayMtu, parsePort, parseVni,
} from './overlay-options.js'

export const VXLAN_PREFIX = 'tsvx-'
/** The vxlan port of a network; `tsv` makes it tsnet's by name too (endpoint IDs are hex, so no veth ever starts `tsvx-`). */
export const vxlanNameFor = (networkId: string) => VXLAN_PREFIX + networkId.toLowerCase().slice(0, IFNAME_MAX - VXLAN_PREFIX.length)
/** The all-zeros MAC: its FDB entries say where broadcast and unknown frames go (one per remote host). */
export const FLOOD_MAC = '00:00:00:00:00:00'

const familyOf = (address: string): Family => parseIp(address)?.family ?? 4
const isOverlay = (n: NetworkRecord): n is OverlayNetwork => n.mode === 'overlay'
function overlayOf(n: NetworkRecord): OverlayNetwork {
  if (!isOverlay(n)) throw invalid(`network ${n.id.slice(0, 12)} is not an overlay network`)
  return n
}

/** Refusals that need no host: scope, encryption, VNI, port, one IPv4 subnet. */
function checkRequest(generic: Readonly<Record<string, string>>, n: { ipv4Subnets: unknown[] }, scope: string | undefined, wireguard: boolean) {
  if (scope !== 'global') {
    throw invalid(`${COMMON_OPTION.mode}=overlay needs the plugin in global scope, on every node of a swarm: docker plugin set <plugin> TSNET_SCOPE=global (docs/overlay.md)`)
  }
  if (generic[OVERLAY_OPTION.encrypted] !== undefined) throw invalid(encryptionRefusal(wireguard))
  if (generic[COMMON_OPTION.allow] !== undefined) {
    throw invalid(`${COMMON_OPTION.allow}: nothing is routed into or out of an overlay network on a host (its containers reach other networks through docker_gwbridge), so a policy would let nothing in; connect the containers that must talk to both networks instead`)
  }
  if (n.ipv4Subnets.length > 1) {
    throw invalid(`an overlay network takes one IPv4 subnet, not ${n.ipv4Subnets.length}: create one network per subnet`)
  }
  const vniText = generic[OVERLAY_OPTION.vni]
  if (vniText === undefined) {
    throw invalid(`the network has no ${OVERLAY_OPTION.vni}: overlay networks are created on a swarm manager, whose leader allocates the VNI (is this node in a swarm, and the plugin enabled with TSNET_SCOPE=global on the managers too?)`)
  }
  const vni = parseVni(vniText)
  const port = generic[OVERLAY_OPTION.port] !== undefined ? parsePort(generic[OVERLAY_OPTION.port] ?? '') : DEFAULT_VXLAN_PORT
  return { vni, port }
}

/** What the overlay's vxlan port and its FDB look like on this host, given the swarm's hosts. */
function vxlanObjects(n: OverlayNetwork, view: RenderContext['overlay'], ipv6: boolean): HostObject[] {
  const { local, peers } = view ?? NO_OVERLAY
  if (local === undefined) return []
  const f = familyOf(local)
  const others = [...new Set(peers)].filter((p) => p !== local && familyOf(p) === f).sort()
  const bridge = n.spec.bridge
  return [
    {
      kind: 'link', name: n.spec.vxlan, type: 'vxlan', alias: networkAlias(n.id), mtu: n.mtu, up: true, recreate: true,
      // Without a bridge, the VXLAN device is where the host meets the network: the edge's marker goes on it.
      ...(bridge ? { master: bridge } : { mac: macFromSeed(n.id), group: OVERLAY_GROUP }),
      vxlan: { vni: n.spec.vni, port: n.spec.port, local, learning: true, proxy: false, ageing: LEARNED_AGEING_SEC },
    },
    ...(bridge ? [] : hostTakesNoPart(n.spec.vxlan, ipv6)),
    // Head-end replication: a copy of each broadcast and unknown frame to every other host.
    ...others.map((dst): HostObject => ({ kind: 'fdb', link: n.spec.vxlan, mac: FLOOD_MAC, dst })),
    // Only those hosts may send this network's VXLAN here.
    ...others.map((dst): HostObject => ({ kind: 'setEntry', set: setName('vtep', f), entry: dst, comment: VTEP_TAG })),
    { kind: 'guard', family: f, rule: vxlanGuardRule(f, n.spec.port, n.spec.vni, networkTag(n.id)) },
    { kind: 'guard', family: f, rule: vtepPassRule(f, n.spec.port) },
    { kind: 'guard', family: f, rule: vtepSpoofRule(f, n.spec.port), table: 'mangle' },
  ]
}

const conf = (family: 'ipv4' | 'ipv6', iface: string, leaf: string) => `net/${family}/conf/${iface}/${leaf}`

/** The host takes no part in the overlay on the device it meets it at: no IPv6 there, no ARP answers, no Router Advertisements. */
function hostTakesNoPart(iface: string, ipv6: boolean): HostObject[] {
  return [
    { kind: 'sysctl', path: conf('ipv4', iface, 'arp_ignore'), value: '8' },
    ...(ipv6 ? [
      { kind: 'sysctl', path: conf('ipv6', iface, 'accept_ra'), value: '0' } as const,
      { kind: 'sysctl', path: conf('ipv6', iface, 'disable_ipv6'), value: '1' } as const,
    ] : []),
  ]
}

/** Where the host meets the network: the bridge of a network made before macvlan endpoints, else the VXLAN device. */
const hubOf = (n: OverlayNetwork) => n.spec.bridge ?? n.spec.vxlan

/** An endpoint's macvlan child of the VXLAN device; joined, it lives in the container, and only Docker can make it again. */
function childOf(e: EndpointRecord, vxlan: string): LinkObject {
  return {
    kind: 'link', name: e.containerIf, type: 'macvlan', alias: endpointAlias(e.id), mtu: e.mtu, mac: e.mac,
    // Down until Docker brings it up in the container.
    up: false,
    recreate: !e.joined,
    ...(e.joined ? { inSandbox: true } : {}),
    macvlan: { parent: vxlan, mode: 'bridge' },
  }
}

export const overlayMode: NetworkMode = {
  name: 'overlay',
  optionKeys: [...Object.values(OVERLAY_OPTION), COMMON_OPTION.allow],
  supports: { policy: false, publish: false },

  planSpec(generic, common, ctx) {
    const { vni, port } = checkRequest(generic, common, ctx.scope, ctx.facts.linkKinds.has('wireguard'))
    const local = ctx.underlay?.address
    if (local === undefined || parseIp(local) === undefined) {
      throw invalid("this node's data-path address is not known yet: Docker tells plugins when the node is in a swarm (DiscoverNew); wait for the node to join, or disable and enable the plugin once it has")
    }
    const given = generic[COMMON_OPTION.mtu]
    const underlayMtu = given !== undefined ? parseMtu(given, COMMON_OPTION.mtu) : ctx.underlay?.mtu ?? 1500
    const n: OverlayNetwork = {
      ...common,
      mode: 'overlay',
      mtu: overlayMtu(underlayMtu, familyOf(local), common.ipv6),
      // Nothing is routed out of the network on the host, so there is nothing to masquerade.
      enableIpMasquerade: false,
      spec: { vxlan: vxlanNameFor(common.id), vni, port, underlayMtu },
    }
    return n
  },

  linkNames: (endpointId, n) => (overlayOf(n).spec.bridge !== undefined
    ? { hostIf: hostVethFor(endpointId), containerIf: containerVethFor(endpointId) }
    : { containerIf: macvlanNameFor(endpointId) }),
  claimedNames: (n) => [overlayOf(n).spec.bridge, overlayOf(n).spec.vxlan].filter((x): x is string => x !== undefined),

  renderNetwork(network, endpoints, ctx) {
    const n = overlayOf(network)
    const bridge = n.spec.bridge
    return [
      ...(bridge ? [
        { kind: 'link', name: bridge, type: 'bridge', alias: networkAlias(n.id), mtu: n.mtu, mac: macFromSeed(n.id), group: OVERLAY_GROUP, up: true, recreate: true } as const,
        ...hostTakesNoPart(bridge, ctx.facts.ipv6),
      ] : []),
      ...edgeObjects(bridgeEdge(n, hubOf(n)), endpoints, ctx.resolve),
      { kind: 'guard', family: 4, rule: OVERLAY_TO_HOST_RULE },
      ...(ctx.facts.ipv6 ? [{ kind: 'guard', family: 6, rule: OVERLAY_TO_HOST_RULE } as const] : []),
      ...vxlanObjects(n, ctx.overlay, ctx.facts.ipv6),
    ]
  },

  networkDependsOnEndpoints: () => false,

  renderEndpoint(e, network) {
    const n = overlayOf(network)
    // A macvlan child takes the frames for its MAC before the VXLAN device's table is asked, so a
    // stale entry learned while the MAC lived on another host cannot take them away.
    if (!n.spec.bridge) return [childOf(e, n.spec.vxlan)]
    // The MAC pinned to its port, for the same reason.
    return [vethObject(e, n.spec.bridge), { kind: 'fdb', link: e.hostIf ?? e.containerIf, mac: e.mac }]
  },

  join(n, e): JoinAnswer {
    // No Gateway: Docker then connects the container to docker_gwbridge for egress, as for its own overlay.
    return { InterfaceName: { SrcName: e.containerIf, DstPrefix: n.genericOptions[COMMON_OPTION.ifacePrefix] ?? 'eth' } }
  },

  edge: (n) => bridgeEdge(n, hubOf(overlayOf(n))),
}
