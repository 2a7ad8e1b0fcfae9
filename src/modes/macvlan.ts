/**
 * Macvlan mode: each container gets a macvlan link on a host interface (the parent) and with it
 * an address on the LAN that interface is on. The LAN's router is the gateway; nothing is
 * configured on the host for the network (no bridge, no address, no firewall rule), and host
 * netfilter never sees the containers' traffic, so nothing that needs the edge is offered.
 * Docker's macvlan driver is the model: its option names, its sub-interface rule (eth0.10).
 */
import { invalid, quote } from '../errors.js'
import { COMMON_OPTION } from '../core/docker-keys.js'
import { findSubnetOverlap } from '../core/network-plan.js'
import { endpointAlias, macvlanNameFor } from '../core/names.js'
import type { LinkObject } from '../core/objects.js'
import type { MacvlanMode, MacvlanNetwork, MacvlanSpec, NetworkRecord } from '../core/records.js'
import { BRIDGE_OPTION, joinAnswer } from './bridge.js'
import { parentLinks, planParent, vlanObject } from './macvlan-parent.js'
import type { NetworkMode } from './mode.js'

export const MACVLAN_OPTION = {
  parent: 'parent',
  mode: 'macvlan_mode',
} as const

const MACVLAN_MODES: readonly MacvlanMode[] = ['bridge', 'private', 'vepa', 'passthru']
const NO_NETFILTER = 'host netfilter never sees the traffic of macvlan containers (it goes between their interfaces and the LAN without passing through the host)'

function specOf(n: NetworkRecord): MacvlanSpec {
  if (n.mode !== 'macvlan') throw new Error(`network ${n.id.slice(0, 12)} is a ${n.mode} network, not a macvlan one`)
  return n.spec
}

function parseMode(value: string | undefined): MacvlanMode {
  if (value === undefined) return 'bridge'
  const mode = MACVLAN_MODES.find((m) => m === value)
  if (!mode) throw invalid(`${MACVLAN_OPTION.mode}=${quote(value)} is not a macvlan mode: it is one of ${MACVLAN_MODES.join(', ')} (bridge when not given)`)
  return mode
}

/** The link Docker moves into the container; joined, it lives there, and only Docker can make it again. */
function childObject(e: { id: string; containerIf: string; mtu: number; mac: string; joined: boolean }, spec: MacvlanSpec): LinkObject {
  return {
    kind: 'link', name: e.containerIf, type: 'macvlan', alias: endpointAlias(e.id), mtu: e.mtu,
    // passthru: the kernel gives the child its parent's MAC, and a MAC set on the child is set on the parent.
    ...(spec.macvlanMode === 'passthru' ? {} : { mac: e.mac }),
    // Down until Docker brings it up in the container: on the host it would be an interface on the LAN.
    up: false,
    recreate: !e.joined,
    ...(e.joined ? { inSandbox: true } : {}),
    macvlan: { parent: spec.parent, mode: spec.macvlanMode },
  }
}

export const macvlanMode: NetworkMode = {
  name: 'macvlan',
  optionKeys: Object.values(MACVLAN_OPTION),
  supports: { policy: false, publish: false },
  refusedOptions: {
    [BRIDGE_OPTION.icc]: `${NO_NETFILTER}, so tsnet cannot keep its containers apart; macvlan_mode=private keeps them apart on the host`,
    [BRIDGE_OPTION.masquerade]: `${NO_NETFILTER}: its containers have their own addresses on the LAN, so nothing is translated`,
  },

  hostLinks(generic) {
    const parent = generic[MACVLAN_OPTION.parent]
    return parent === undefined ? [] : parentLinks(parent)
  },

  planSpec(generic, common, ctx) {
    const parentName = generic[MACVLAN_OPTION.parent]
    if (parentName === undefined || parentName === '') {
      throw invalid(`a macvlan network needs -o ${MACVLAN_OPTION.parent}=<interface>: the host interface on the LAN its containers join (eth0, or eth0.10 for VLAN 10 of a trunk)`)
    }
    const macvlanMode = parseMode(generic[MACVLAN_OPTION.mode])
    if (common.internal) {
      throw invalid('--internal cannot be given to a macvlan network: its containers sit on the LAN itself, and no missing route keeps them off it; ' +
        "tsnet's bridge mode makes an internal network (leave out tsnet.mode=macvlan)")
    }
    const v4 = common.ipv4Subnets
    if (v4.length === 0) throw invalid('a macvlan network needs the IPv4 subnet of the LAN it joins: give --subnet, and --gateway (the LAN\'s router)')
    const unbounded = [...v4, ...common.ipv6Subnets].find((s) => /\/0$/.test(s.pool))
    if (unbounded) throw invalid(`a macvlan network needs the subnet of the LAN it joins, not ${unbounded.pool} (the null IPAM driver hands out no addresses): give --subnet`)
    const parent = planParent(parentName, ctx.links ?? new Map(), ctx.facts)
    const mtuGiven = generic[COMMON_OPTION.mtu] !== undefined
    if (mtuGiven && common.mtu > parent.mtu) {
      throw invalid(`${COMMON_OPTION.mtu}=${common.mtu} is larger than the MTU of the parent ${parentName} (${parent.mtu}): a macvlan link cannot send larger packets than its parent`)
    }
    if (macvlanMode === 'passthru' && !parent.mac) throw invalid(`-o parent=${parentName}: the parent has no MAC address, which a passthru macvlan child takes`)
    const n: MacvlanNetwork = {
      ...common,
      mtu: mtuGiven ? common.mtu : parent.mtu,
      mode: 'macvlan',
      spec: { ...parent.spec, macvlanMode, ...(macvlanMode === 'passthru' && parent.mac ? { parentMac: parent.mac } : {}) },
      // Nothing is translated, and containers of one network reach each other on the LAN (private mode aside).
      enableIpMasquerade: false,
      enableIcc: true,
    }
    return n
  },

  conflictWith(planned, other, label) {
    if (other.mode !== 'macvlan') return undefined
    const mine = specOf(planned)
    if (other.spec.parent !== mine.parent) return undefined
    if (mine.macvlanMode === 'passthru' || other.spec.macvlanMode === 'passthru') {
      return `-o parent=${mine.parent} is already the parent of macvlan network ${label(other)}, and a passthru macvlan network needs its parent for itself alone`
    }
    const overlap = findSubnetOverlap(planned, [other])
    if (!overlap) return undefined
    return `subnet ${overlap.mine} overlaps subnet ${overlap.theirs} of macvlan network ${label(other)}, which is on the same parent ${mine.parent}: ` +
      'two networks on one LAN segment would hand out the same addresses (give the subnet that network does not use, or use that network)'
  },

  fixedMac: (n) => (n.mode === 'macvlan' ? n.spec.parentMac : undefined),
  linkNames: (endpointId) => ({ containerIf: macvlanNameFor(endpointId) }),
  // Two networks may share a parent (and a sub-interface tsnet made): nothing is theirs alone.
  claimedNames: () => [],

  renderNetwork(n) {
    const vlan = vlanObject(specOf(n))
    return vlan ? [vlan] : []
  },

  networkDependsOnEndpoints: () => false,

  renderEndpoint(e, n) {
    return [childObject(e, specOf(n))]
  },

  // The gateway is the LAN's router, from IPAM data; an internal macvlan network is refused.
  join: joinAnswer,
  edge: () => undefined,
}
