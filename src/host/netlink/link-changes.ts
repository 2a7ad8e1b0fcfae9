/**
 * Changing links: create (bridge, veth pair, vxlan, macvlan, vlan), set attributes, delete.
 *
 * Kernel behaviour these functions account for:
 * - RTM_NEWLINK ignores IFLA_IFALIAS when it creates a link, so the alias is a second request
 *   (the link is deleted again if that one fails). A crash between the two leaves a link without
 *   its tag; callers that mark ownership by alias must treat an untagged link of theirs as theirs.
 * - A bridge created with an MTU forgets it when its last port goes (the MTU counts as chosen by
 *   the user only when set on an existing bridge), so a bridge's MTU is set in that second request.
 * - A change request is applied in the kernel's order (MAC, MTU, group, name, alias, master, flags)
 *   and is not atomic: when one step fails, the earlier ones stay applied.
 */
import { conflict, invalid, TsnetError } from '../../errors.js'
import { checkIfName, checkMac, checkTag } from '../../core/names.js'
import { MTU_MAX, MTU_MIN } from '../../core/options.js'
import { IFF_UP, IFLA, MACVLAN_MODES, NLM_F, RTM, VLAN_PROTOCOLS } from './constants.js'
import { explain, type Known } from './errno.js'
import { type BridgeOptions, encodeLinkInfo, type KindRequest, type MacvlanMode, type VethPeer, type VlanProtocol, type VxlanData } from './link-kinds.js'
import { getLink, linkIndex, linkSelector, noLink, requireLink } from './links.js'
import type { Rtnl } from './socket.js'
import { checkInt, checkIp, checkLinkRef, type LinkRef, linkWords, macBytes } from './values.js'
import { attr, ifinfomsg, str, u32 } from './wire.js'

/** Options of a vxlan device, as `ip link add ... type vxlan` takes them. */
export interface VxlanOptions {
  vni: number
  /** Source address of the tunnel (IPv4 or IPv6). */
  local?: string
  /** UDP destination port (the kernel's default is 8472; IANA's is 4789). */
  port?: number
  /** Underlay device. */
  dev?: LinkRef
  learning?: boolean
  proxy?: boolean
  /** Seconds a learned remote MAC is kept. */
  ageing?: number
  ttl?: number
}

interface CommonSpec {
  name: string
  mtu?: number
  mac?: string
  alias?: string
  group?: number
  up?: boolean
  master?: LinkRef
}

export type LinkSpec = CommonSpec & (
  | { kind: 'bridge'; bridge?: BridgeOptions }
  | { kind: 'veth'; peer: VethPeer }
  | { kind: 'vxlan'; vxlan: VxlanOptions }
  | { kind: 'macvlan'; parent: LinkRef; mode?: MacvlanMode }
  | { kind: 'vlan'; parent: LinkRef; id: number; protocol?: VlanProtocol }
)

export interface LinkChanges {
  mtu?: number
  mac?: string
  /** A master to join, or null to leave the current one. */
  master?: LinkRef | null
  /** A new alias, or null to clear it. */
  alias?: string | null
  group?: number
  up?: boolean
  /** A new name; the kernel refuses to rename a link that is up (EBUSY). */
  name?: string
}

const MASTER_KINDS = new Set(['bridge', 'bond', 'team', 'vrf', 'openvswitch'])
const checkMtu = (mtu: number) => checkInt(mtu, MTU_MIN, MTU_MAX, 'MTU')
const checkGroup = (g: number) => checkInt(g, 0, 0xffffffff, 'device group')

async function masterIndex(rtnl: Rtnl, ref: LinkRef): Promise<number> {
  const m = await requireLink(rtnl, ref, 'master name')
  if (!m.kind || !MASTER_KINDS.has(m.kind)) throw invalid(`link ${m.name} cannot be a master: it is ${m.kind ? `a ${m.kind}` : 'a plain device'}, not a bridge`)
  return m.index
}

/** Checks a spec and turns it into the kind part of the request, parents resolved to indexes. */
async function kindRequest(rtnl: Rtnl, spec: LinkSpec): Promise<{ req: KindRequest; parent?: number }> {
  switch (spec.kind) {
    case 'bridge':
      for (const k of ['forwardDelay', 'ageingTime'] as const) {
        const v = spec.bridge?.[k]
        if (v !== undefined) checkInt(v, 0, 0xffffffff, `bridge ${k}`)
      }
      return { req: { kind: 'bridge', ...(spec.bridge ? { bridge: spec.bridge } : {}) } }
    case 'veth': {
      const p = spec.peer
      checkIfName(p.name, 'veth peer name')
      if (p.name === spec.name) throw invalid(`a veth pair needs two names; both ends are called ${p.name}`)
      return { req: { kind: 'veth', peer: { name: p.name, ...(p.mac ? { mac: checkMac(p.mac) } : {}), ...(p.mtu !== undefined ? { mtu: checkMtu(p.mtu) } : {}) } } }
    }
    case 'vxlan': {
      const v = spec.vxlan
      checkInt(v.vni, 0, 0xffffff, 'VXLAN ID')
      if (v.port !== undefined) checkInt(v.port, 1, 65535, 'VXLAN port')
      if (v.ttl !== undefined) checkInt(v.ttl, 0, 255, 'VXLAN TTL')
      const local = v.local !== undefined ? checkIp(v.local, 'VXLAN local address') : undefined
      const devIndex = v.dev !== undefined ? await linkIndex(rtnl, v.dev, 'VXLAN underlay device') : undefined
      const vxlan: VxlanData = { vni: v.vni, ...(local ? { local } : {}), ...(devIndex ? { devIndex } : {}) }
      if (v.port !== undefined) vxlan.port = v.port
      if (v.ttl !== undefined) vxlan.ttl = v.ttl
      if (v.learning !== undefined) vxlan.learning = v.learning === true
      if (v.proxy !== undefined) vxlan.proxy = v.proxy === true
      if (v.ageing !== undefined) vxlan.ageing = checkInt(v.ageing, 0, 1_000_000, 'vxlan ageing')
      return { req: { kind: 'vxlan', vxlan } }
    }
    case 'macvlan': {
      const mode = spec.mode ?? 'bridge'
      if (!Object.hasOwn(MACVLAN_MODES, mode)) throw invalid(`macvlan mode ${JSON.stringify(mode)} is not one of ${Object.keys(MACVLAN_MODES).join(', ')}`)
      return { req: { kind: 'macvlan', mode }, parent: await linkIndex(rtnl, spec.parent, 'macvlan parent') }
    }
    case 'vlan': {
      const protocol = spec.protocol ?? '802.1Q'
      if (!Object.hasOwn(VLAN_PROTOCOLS, protocol)) throw invalid(`VLAN protocol ${JSON.stringify(protocol)} is not 802.1Q or 802.1ad`)
      checkInt(spec.id, 0, 4094, 'VLAN ID')
      return { req: { kind: 'vlan', id: spec.id, protocol }, parent: await linkIndex(rtnl, spec.parent, 'VLAN parent') }
    }
    default:
      throw invalid(`link kind ${JSON.stringify((spec as { kind: unknown }).kind)} is not one tsnet creates`)
  }
}

/** Creates a link (for a veth, both ends in one request). A name already taken is a conflict. */
export async function createLink(rtnl: Rtnl, spec: LinkSpec): Promise<void> {
  checkIfName(spec.name)
  if (spec.mtu !== undefined) checkMtu(spec.mtu)
  const mac = spec.mac !== undefined ? checkMac(spec.mac) : undefined
  if (spec.alias !== undefined) checkTag(spec.alias, 'link alias')
  if (spec.group !== undefined) checkGroup(spec.group)
  const { req, parent } = await kindRequest(rtnl, spec)
  const master = spec.master !== undefined ? await masterIndex(rtnl, spec.master) : undefined

  const flags = spec.up ? IFF_UP : 0
  const body = [ifinfomsg({ flags, change: flags }), attr(IFLA.IFNAME, str(spec.name))]
  // A bridge's MTU goes with the alias, after creation (see the top of this file).
  const mtuLater = spec.kind === 'bridge' && spec.mtu !== undefined
  if (spec.mtu !== undefined && !mtuLater) body.push(attr(IFLA.MTU, u32(spec.mtu)))
  if (mac) body.push(attr(IFLA.ADDRESS, macBytes(mac)))
  if (spec.group !== undefined) body.push(attr(IFLA.GROUP, u32(spec.group)))
  if (master !== undefined) body.push(attr(IFLA.MASTER, u32(master)))
  if (parent !== undefined) body.push(attr(IFLA.LINK, u32(parent)))
  body.push(encodeLinkInfo(req))

  const what = spec.kind === 'veth' ? `veth pair ${spec.name}/${spec.peer.name}` : `${spec.kind} link ${spec.name}`
  const doing = `create ${what}`
  try {
    await rtnl.request(RTM.NEWLINK, NLM_F.CREATE | NLM_F.EXCL, body, doing)
  } catch (err) {
    throw explain(err, doing, await createRefusals(rtnl, spec, what))
  }
  if (spec.alias === undefined && !mtuLater) return
  try {
    await setLink(rtnl, spec.name, { ...(spec.alias !== undefined ? { alias: spec.alias } : {}), ...(mtuLater ? { mtu: spec.mtu } : {}) })
  } catch (err) {
    await deleteLink(rtnl, spec.name).catch(() => undefined)
    const e = err instanceof TsnetError ? err : explain(err, doing)
    throw new TsnetError(e.kind, `${e.message} (the new ${what} was removed again)`, { cause: err, context: e.context })
  }
}

/** The sentences of a failed create; for a veth, EEXIST may be about either end, so ask which. */
async function createRefusals(rtnl: Rtnl, spec: LinkSpec, what: string): Promise<Known> {
  let taken = spec.name
  if (spec.kind === 'veth' && !(await getLink(rtnl, spec.name).catch(() => undefined))) taken = spec.peer.name
  // The kernel allows one device per VNI and UDP port in a namespace, and says EEXIST for that too.
  const vniTaken = spec.kind === 'vxlan' && !(await getLink(rtnl, spec.name).catch(() => undefined))
  return {
    EEXIST: () => (vniTaken && spec.kind === 'vxlan'
      ? conflict(`VNI ${spec.vxlan.vni} on UDP port ${spec.vxlan.port ?? 8472} is already used by another VXLAN device on this host (another tool's, or Docker's overlay if its VNIs overlap tsnet's range): choose a free range with TSNET_VNI_RANGE on the managers`, { link: spec.name })
      : conflict(`a link named ${taken} already exists`, { link: taken })),
    EBUSY: () => conflict('parent' in spec
      ? `cannot create ${spec.kind} link ${spec.name} on ${linkWords(spec.parent)}: the parent is busy (a bridge port, or taken by another kind of upper device)`
      : `cannot create ${what}: the kernel says a device it needs is busy (EBUSY)`, { link: spec.name }),
    // The kernel answers EOPNOTSUPP both for a kind it lacks and for a bridge option it was built without.
    EOPNOTSUPP: () => new TsnetError('host', spec.kind === 'bridge' && spec.bridge && Object.keys(spec.bridge).length
      ? `cannot create bridge link ${spec.name}: this kernel does not support one of the bridge options given (${Object.keys(spec.bridge).join(', ')})`
      : `this kernel has no ${spec.kind} support: cannot create ${spec.kind} link ${spec.name}`, { context: { link: spec.name } }),
    ENODEV: () => noLink('parent' in spec ? spec.parent : spec.kind === 'vxlan' && spec.vxlan.dev !== undefined ? spec.vxlan.dev : spec.name),
    // The kernel's reasons for a macvlan: a passthru link on a parent with others (or one beside it), an MTU above the parent's.
    ...(spec.kind === 'macvlan' ? {
      EINVAL: () => conflict(`cannot create macvlan link ${spec.name} on ${linkWords(spec.parent)}: the kernel refused it (EINVAL); ` +
        'a passthru macvlan link must be the only macvlan link of its parent, and a macvlan link cannot have a larger MTU than its parent', { link: spec.name }),
    } : {}),
  }
}

/** Changes attributes of an existing link in one request. */
export async function setLink(rtnl: Rtnl, ref: LinkRef, changes: LinkChanges): Promise<void> {
  checkLinkRef(ref)
  const body: Buffer[] = []
  if (changes.mac !== undefined) body.push(attr(IFLA.ADDRESS, macBytes(checkMac(changes.mac))))
  if (changes.mtu !== undefined) body.push(attr(IFLA.MTU, u32(checkMtu(changes.mtu))))
  if (changes.group !== undefined) body.push(attr(IFLA.GROUP, u32(checkGroup(changes.group))))
  if (changes.alias !== undefined) {
    // IFLA_IFALIAS is taken as bytes, without a terminating NUL; empty clears it.
    body.push(attr(IFLA.IFALIAS, Buffer.from(changes.alias === null ? '' : checkTag(changes.alias, 'link alias'))))
  }
  if (changes.name !== undefined) checkIfName(changes.name, 'new interface name')
  if (changes.master !== undefined) body.push(attr(IFLA.MASTER, u32(changes.master === null ? 0 : await masterIndex(rtnl, changes.master))))
  // A new name travels as IFLA_IFNAME, which cannot also select the link: select it by index then.
  const selector = changes.name !== undefined && typeof ref === 'string' ? (await requireLink(rtnl, ref)).index : ref
  if (changes.name !== undefined) body.push(attr(IFLA.IFNAME, str(changes.name)))
  const flags = changes.up === undefined ? 0 : IFF_UP
  const head = linkSelector(selector, changes.up ? IFF_UP : 0, flags)
  const what = Object.keys(changes).join(', ') || 'nothing'
  const doing = `change ${linkWords(ref)} (${what})`
  try {
    await rtnl.request(RTM.NEWLINK, 0, [...head, ...body], doing)
  } catch (err) {
    throw explain(err, doing, {
      ENODEV: () => noLink(ref),
      EEXIST: () => conflict(`a link named ${changes.name ?? '?'} already exists`, { link: changes.name }),
      EBUSY: () => conflict(changes.name !== undefined
        ? `cannot rename ${linkWords(ref)} to ${changes.name} while it is up: set it down first`
        : `${linkWords(ref)} is busy: the kernel refused to change its ${what} (EBUSY)`, { link: ref }),
    })
  }
}

/** Deletes a link (a veth pair goes as a whole). A missing link is "no link named X". */
export async function deleteLink(rtnl: Rtnl, ref: LinkRef): Promise<void> {
  checkLinkRef(ref)
  const doing = `delete ${linkWords(ref)}`
  try {
    await rtnl.request(RTM.DELLINK, 0, linkSelector(ref), doing)
  } catch (err) {
    throw explain(err, doing, { ENODEV: () => noLink(ref) })
  }
}
