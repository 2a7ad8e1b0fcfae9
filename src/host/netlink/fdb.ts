/**
 * Forwarding database entries (AF_BRIDGE neighbours) of one device, for vxlan devices above all:
 * the all-zeros entry that floods broadcast and unknown traffic to a remote VTEP, and per-MAC
 * entries pointing at the VTEP that hosts the MAC. Entries are added as `bridge fdb ... self
 * permanent` adds them: on the device itself (NTF_SELF), permanent.
 */
import { conflict, invalid, notFound } from '../../errors.js'
import { AF, NDA, NLM_F, NTF, NUD, RTM } from './constants.js'
import { explain } from './errno.js'
import { linkIndex, noLink } from './links.js'
import { nudNames } from './neighbours.js'
import type { Rtnl } from './socket.js'
import { checkFdbMac, checkInt, checkIp, type LinkRef, linkWords, macBytes, macText, ipText } from './values.js'
import { attr, Attrs, ifinfomsg, ndmsg, NDMSG_LEN, type NlMessage, readNdmsg, u16be, u32 } from './wire.js'

export interface FdbEntry {
  /** ifindex of the device the entry belongs to. */
  link: number
  mac: string
  /** Remote VTEP (vxlan entries). */
  dst?: string
  vni?: number
  port?: number
  vlan?: number
  /** ifindex of the bridge, for entries of a bridge port. */
  master?: number
  /** The entry is the device's own (NTF_SELF), not its bridge's. */
  self: boolean
  /** A bridge entry that no frame moves to another port (NTF_STICKY). */
  sticky: boolean
  state: string[]
}

export function decodeFdb(msg: NlMessage): FdbEntry | undefined {
  if (msg.type !== RTM.NEWNEIGH || msg.payload.length < NDMSG_LEN) return undefined
  const h = readNdmsg(msg.payload)
  if (h.family !== AF.BRIDGE) return undefined
  const a = new Attrs(msg.payload.subarray(NDMSG_LEN))
  const mac = macText(a.raw(NDA.LLADDR))
  if (!mac) return undefined
  const dst = ipText(a.raw(NDA.DST))
  const vni = a.u32(NDA.VNI)
  const port = a.u16be(NDA.PORT)
  const vlan = a.u16(NDA.VLAN)
  const master = a.u32(NDA.MASTER)
  return {
    link: h.index,
    mac,
    ...(dst ? { dst } : {}),
    ...(vni !== undefined ? { vni } : {}),
    ...(port !== undefined ? { port } : {}),
    ...(vlan !== undefined ? { vlan } : {}),
    ...(master ? { master } : {}),
    self: (h.flags & NTF.SELF) !== 0,
    sticky: (h.flags & NTF.STICKY) !== 0,
    state: nudNames(h.state),
  }
}

/** The FDB entries of one device (the kernel filters by device: an ifinfomsg carrying its index). */
export async function listFdb(rtnl: Rtnl, link: LinkRef): Promise<FdbEntry[]> {
  const index = await linkIndex(rtnl, link)
  const doing = `list the FDB entries of ${linkWords(link)}`
  try {
    const msgs = await rtnl.dump(RTM.GETNEIGH, [ifinfomsg({ family: AF.BRIDGE, index })], doing)
    return msgs.flatMap((m) => {
      const e = decodeFdb(m)
      return e && e.link === index ? [e] : []
    })
  } catch (err) {
    throw explain(err, doing, { ENODEV: () => noLink(link) })
  }
}

export interface FdbSpec {
  link: LinkRef
  /** A unicast MAC, or 00:00:00:00:00:00 for the flood entry. */
  mac: string
  /** Remote VTEP. */
  dst?: string
  /** VNI to send with (by default the device's own). */
  vni?: number
  /** UDP port to send to (by default the device's own). */
  port?: number
  /**
   * An entry of the bridge `link` is a port of, not of `link` itself: static and sticky, as
   * `bridge fdb add MAC dev PORT master static sticky` makes it (no dst: the port is where it is).
   */
  master?: boolean
}

/**
 * How an entry joins those already there: `append` adds one more remote for the MAC (the flood
 * entry has one per peer), `replace` makes this the MAC's only remote (a container that moved
 * host), `create` refuses a MAC that already has one.
 */
export type FdbMode = 'append' | 'replace' | 'create'

const MODE_FLAGS: Record<FdbMode, number> = { append: NLM_F.APPEND, replace: NLM_F.REPLACE, create: NLM_F.EXCL }

function fdbRequest(spec: FdbSpec, index: number, state: number, adding: boolean): { body: Buffer[]; shown: string } {
  const mac = checkFdbMac(spec.mac)
  if (spec.master && (spec.dst !== undefined || spec.vni !== undefined || spec.port !== undefined)) throw invalid('a bridge FDB entry has no VTEP, VNI or port')
  const flags = spec.master ? NTF.MASTER | (adding ? NTF.STICKY : 0) : NTF.SELF
  const body = [ndmsg({ family: AF.BRIDGE, index, state, flags }), attr(NDA.LLADDR, macBytes(mac))]
  let shown = mac
  if (spec.dst !== undefined) {
    const dst = checkIp(spec.dst, 'VTEP address')
    body.push(attr(NDA.DST, dst.bytes))
    shown += ` to ${dst.text}`
  }
  if (spec.vni !== undefined) body.push(attr(NDA.VNI, u32(checkInt(spec.vni, 0, 0xffffff, 'VXLAN ID'))))
  if (spec.port !== undefined) body.push(attr(NDA.PORT, u16be(checkInt(spec.port, 1, 65535, 'VXLAN port'))))
  return { body, shown }
}

export async function addFdb(rtnl: Rtnl, spec: FdbSpec, mode: FdbMode = 'append'): Promise<void> {
  if (!Object.hasOwn(MODE_FLAGS, mode)) throw invalid(`FDB mode ${JSON.stringify(mode)} is not append, replace or create`)
  fdbRequest(spec, 0, 0, true) // check the values before looking the link up
  const index = await linkIndex(rtnl, spec.link)
  const { body, shown } = fdbRequest(spec, index, spec.master ? NUD.NOARP : NUD.PERMANENT, true)
  const doing = `add FDB entry ${shown} on ${linkWords(spec.link)}`
  try {
    await rtnl.request(RTM.NEWNEIGH, NLM_F.CREATE | MODE_FLAGS[mode], body, doing)
  } catch (err) {
    throw explain(err, doing, {
      EEXIST: () => conflict(`FDB entry ${shown} already exists on ${linkWords(spec.link)}`, { link: spec.link, mac: spec.mac }),
      ENODEV: () => noLink(spec.link),
    })
  }
}

/** Deletes one remote of a MAC (with `dst`) or the MAC's whole entry (without). */
export async function deleteFdb(rtnl: Rtnl, spec: FdbSpec): Promise<void> {
  fdbRequest(spec, 0, 0, false)
  const index = await linkIndex(rtnl, spec.link)
  const { body, shown } = fdbRequest(spec, index, 0, false)
  const doing = `delete FDB entry ${shown} on ${linkWords(spec.link)}`
  try {
    await rtnl.request(RTM.DELNEIGH, 0, body, doing)
  } catch (err) {
    throw explain(err, doing, {
      ENOENT: () => notFound(`no FDB entry ${shown} on ${linkWords(spec.link)}`, { link: spec.link, mac: spec.mac }),
      ENODEV: () => noLink(spec.link),
    })
  }
}
