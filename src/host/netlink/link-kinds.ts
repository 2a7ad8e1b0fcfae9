/**
 * IFLA_LINKINFO, the nested attribute that says what kind a link is and carries its kind's data:
 * encoders for creating bridges, veth pairs (the peer is a nested ifinfomsg with attributes of
 * its own), vxlan, macvlan and vlan devices, and the decoder for what the kernel reports back.
 * The `netlink` package types this attribute as raw bytes, so both directions are here.
 */
import { IFLA, IFLA_BR, IFLA_INFO, IFLA_MACVLAN_MODE, IFLA_VLAN, IFLA_VXLAN, MACVLAN_MODES, VETH_INFO_PEER, VLAN_PROTOCOLS } from './constants.js'
import { type Attrs, attr, ifinfomsg, nest, str, u16, u16be, u32, u8 } from './wire.js'
import { ipText, type IpValue, macBytes } from './values.js'

export type MacvlanMode = keyof typeof MACVLAN_MODES
export type VlanProtocol = keyof typeof VLAN_PROTOCOLS

/** Bridge options; times are in the kernel's unit, hundredths of a second (as `ip -d` prints them). */
export interface BridgeOptions {
  stpState?: boolean
  forwardDelay?: number
  ageingTime?: number
  vlanFiltering?: boolean
  mcastSnooping?: boolean
}

export interface VethPeer {
  name: string
  mac?: string
  mtu?: number
}

/** What a vxlan device is made with, its parent (`dev`) already resolved to an index. */
export interface VxlanData {
  vni: number
  local?: IpValue
  port?: number
  devIndex?: number
  learning?: boolean
  proxy?: boolean
  /** Seconds a learned entry lives without traffic from its MAC (the kernel's default: 300). */
  ageing?: number
  ttl?: number
  l2miss?: boolean
  l3miss?: boolean
}

/** The kind part of a create request, parents already resolved to indexes. */
export type KindRequest =
  | { kind: 'bridge'; bridge?: BridgeOptions }
  | { kind: 'veth'; peer: VethPeer }
  | { kind: 'vxlan'; vxlan: VxlanData }
  | { kind: 'macvlan'; mode: MacvlanMode }
  | { kind: 'vlan'; id: number; protocol: VlanProtocol }

const bool = (b: boolean) => u8(b ? 1 : 0)

function bridgeData(o: BridgeOptions): Buffer[] {
  const out: Buffer[] = []
  if (o.forwardDelay !== undefined) out.push(attr(IFLA_BR.FORWARD_DELAY, u32(o.forwardDelay)))
  if (o.ageingTime !== undefined) out.push(attr(IFLA_BR.AGEING_TIME, u32(o.ageingTime)))
  if (o.stpState !== undefined) out.push(attr(IFLA_BR.STP_STATE, u32(o.stpState ? 1 : 0)))
  if (o.vlanFiltering !== undefined) out.push(attr(IFLA_BR.VLAN_FILTERING, bool(o.vlanFiltering)))
  if (o.mcastSnooping !== undefined) out.push(attr(IFLA_BR.MCAST_SNOOPING, bool(o.mcastSnooping)))
  return out
}

/** VETH_INFO_PEER: an ifinfomsg followed by the peer's own attributes. */
function vethPeer(p: VethPeer): Buffer {
  const attrs = [attr(IFLA.IFNAME, str(p.name))]
  if (p.mac !== undefined) attrs.push(attr(IFLA.ADDRESS, macBytes(p.mac)))
  if (p.mtu !== undefined) attrs.push(attr(IFLA.MTU, u32(p.mtu)))
  return nest(VETH_INFO_PEER, [ifinfomsg(), ...attrs])
}

function vxlanData(v: VxlanData): Buffer[] {
  const out = [attr(IFLA_VXLAN.ID, u32(v.vni))]
  if (v.local) out.push(attr(v.local.family === 4 ? IFLA_VXLAN.LOCAL : IFLA_VXLAN.LOCAL6, v.local.bytes))
  if (v.devIndex !== undefined) out.push(attr(IFLA_VXLAN.LINK, u32(v.devIndex)))
  if (v.port !== undefined) out.push(attr(IFLA_VXLAN.PORT, u16be(v.port)))
  if (v.ttl !== undefined) out.push(attr(IFLA_VXLAN.TTL, u8(v.ttl)))
  if (v.learning !== undefined) out.push(attr(IFLA_VXLAN.LEARNING, bool(v.learning)))
  if (v.proxy !== undefined) out.push(attr(IFLA_VXLAN.PROXY, bool(v.proxy)))
  if (v.ageing !== undefined) out.push(attr(IFLA_VXLAN.AGEING, u32(v.ageing)))
  out.push(attr(IFLA_VXLAN.L2MISS, bool(v.l2miss ?? false)), attr(IFLA_VXLAN.L3MISS, bool(v.l3miss ?? false)))
  return out
}

/** The IFLA_LINKINFO attribute of a create request. */
export function encodeLinkInfo(k: KindRequest): Buffer {
  const kind = attr(IFLA_INFO.KIND, str(k.kind))
  let data: Buffer[]
  switch (k.kind) {
    case 'bridge': data = bridgeData(k.bridge ?? {}); break
    case 'veth': data = [vethPeer(k.peer)]; break
    case 'vxlan': data = vxlanData(k.vxlan); break
    case 'macvlan': data = [attr(IFLA_MACVLAN_MODE, u32(MACVLAN_MODES[k.mode]))]; break
    case 'vlan': data = [attr(IFLA_VLAN.ID, u16(k.id)), attr(IFLA_VLAN.PROTOCOL, u16be(VLAN_PROTOCOLS[k.protocol]))]; break
  }
  return nest(IFLA.LINKINFO, data.length ? [kind, nest(IFLA_INFO.DATA, data)] : [kind])
}

// ---------------------------------------------------------------- what the kernel reports

export interface VxlanInfo {
  vni: number
  port: number
  local?: string
  /** ifindex of the underlay device, when one was given. */
  dev?: number
  learning: boolean
  proxy: boolean
  ttl: number
  l2miss: boolean
  l3miss: boolean
}

export interface KindInfo {
  kind?: string
  /** The kind of the master this link is a port of ('bridge' for bridge ports). */
  portKind?: string
  /** A veth's peer: its index (in `peerNetnsId`'s namespace when that is set, else this one). */
  veth?: { peerIndex?: number; peerNetnsId?: number }
  vxlan?: VxlanInfo
  macvlan?: { mode: MacvlanMode | `unknown-${number}`; parent?: number }
  vlan?: { id: number; protocol: VlanProtocol | `0x${string}`; parent?: number }
  bridge?: Required<BridgeOptions>
}

const nameOf = <T extends Record<string, number>>(table: T, value: number): keyof T | undefined =>
  (Object.keys(table) as Array<keyof T>).find((k) => table[k] === value)

/** Decodes IFLA_LINKINFO; the top-level attributes give the parent (IFLA_LINK) of veth, macvlan and vlan. */
export function decodeLinkInfo(top: Attrs): KindInfo {
  const info = top.nested(IFLA.LINKINFO)
  if (!info) return {}
  const kind = info.str(IFLA_INFO.KIND)
  const portKind = info.str(IFLA_INFO.SLAVE_KIND)
  const data = info.nested(IFLA_INFO.DATA)
  const parent = top.u32(IFLA.LINK)
  const out: KindInfo = { ...(kind ? { kind } : {}), ...(portKind ? { portKind } : {}) }
  if (kind === 'veth') {
    const netnsId = top.u32(IFLA.LINK_NETNSID)
    out.veth = { ...(parent ? { peerIndex: parent } : {}), ...(netnsId !== undefined ? { peerNetnsId: netnsId } : {}) }
  } else if (kind === 'vxlan' && data) {
    const local = ipText(data.raw(IFLA_VXLAN.LOCAL)) ?? ipText(data.raw(IFLA_VXLAN.LOCAL6))
    const dev = data.u32(IFLA_VXLAN.LINK)
    out.vxlan = {
      vni: data.u32(IFLA_VXLAN.ID) ?? 0,
      port: data.u16be(IFLA_VXLAN.PORT) ?? 0,
      ...(local && local !== '0.0.0.0' && local !== '::' ? { local } : {}),
      ...(dev ? { dev } : {}),
      learning: data.u8(IFLA_VXLAN.LEARNING) === 1,
      proxy: data.u8(IFLA_VXLAN.PROXY) === 1,
      ttl: data.u8(IFLA_VXLAN.TTL) ?? 0,
      l2miss: data.u8(IFLA_VXLAN.L2MISS) === 1,
      l3miss: data.u8(IFLA_VXLAN.L3MISS) === 1,
    }
  } else if (kind === 'macvlan' || kind === 'macvtap') {
    const mode = data?.u32(IFLA_MACVLAN_MODE) ?? 0
    out.macvlan = { mode: nameOf(MACVLAN_MODES, mode) ?? `unknown-${mode}`, ...(parent ? { parent } : {}) }
  } else if (kind === 'vlan' && data) {
    const proto = data.u16be(IFLA_VLAN.PROTOCOL) ?? VLAN_PROTOCOLS['802.1Q']
    out.vlan = { id: data.u16(IFLA_VLAN.ID) ?? 0, protocol: nameOf(VLAN_PROTOCOLS, proto) ?? `0x${proto.toString(16)}`, ...(parent ? { parent } : {}) }
  } else if (kind === 'bridge' && data) {
    out.bridge = {
      stpState: (data.u32(IFLA_BR.STP_STATE) ?? 0) !== 0,
      forwardDelay: data.u32(IFLA_BR.FORWARD_DELAY) ?? 0,
      ageingTime: data.u32(IFLA_BR.AGEING_TIME) ?? 0,
      vlanFiltering: data.u8(IFLA_BR.VLAN_FILTERING) === 1,
      mcastSnooping: data.u8(IFLA_BR.MCAST_SNOOPING) === 1,
    }
  }
  return out
}
