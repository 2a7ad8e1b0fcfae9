/** Reading links: the whole table, one link by name or index, a name's index. */
import { notFound } from '../../errors.js'
import { AF, IFF_UP, IFLA, OPERSTATES, RTEXT_FILTER, RTM } from './constants.js'
import { explain, isErrno } from './errno.js'
import { decodeLinkInfo, type KindInfo } from './link-kinds.js'
import type { Rtnl } from './socket.js'
import { checkLinkRef, type LinkRef, linkWords, macText } from './values.js'
import { attr, Attrs, ifinfomsg, type NlMessage, readIfinfomsg, str, u32, IFINFOMSG_LEN } from './wire.js'

export interface Link extends KindInfo {
  name: string
  index: number
  alias?: string
  /** ifindex of the master (the bridge a port is on). */
  master?: number
  mtu: number
  mac?: string
  group: number
  /** Administratively up (IFF_UP). */
  up: boolean
  /** RFC 2863 state: up, down, lowerlayerdown, unknown, ... */
  operstate: string
}

/**
 * A link from an RTM_NEWLINK/RTM_DELLINK (a reply or an event), or undefined for a message that
 * is not about a link as such: the bridge sends AF_BRIDGE ones about its ports on the same group.
 */
export function decodeLink(msg: NlMessage): Link | undefined {
  if (msg.payload.length < IFINFOMSG_LEN) return undefined
  const h = readIfinfomsg(msg.payload)
  if (h.family !== AF.UNSPEC) return undefined
  const a = new Attrs(msg.payload.subarray(IFINFOMSG_LEN))
  const name = a.str(IFLA.IFNAME)
  if (name === undefined) return undefined
  const alias = a.str(IFLA.IFALIAS)
  const master = a.u32(IFLA.MASTER)
  const mac = macText(a.raw(IFLA.ADDRESS))
  const oper = a.u8(IFLA.OPERSTATE) ?? 0
  return {
    name,
    index: h.index,
    ...decodeLinkInfo(a),
    ...(alias ? { alias } : {}),
    ...(master ? { master } : {}),
    mtu: a.u32(IFLA.MTU) ?? 0,
    ...(mac ? { mac } : {}),
    group: a.u32(IFLA.GROUP) ?? 0,
    up: (h.flags & IFF_UP) !== 0,
    operstate: OPERSTATES[oper] ?? `state-${oper}`,
  }
}

/** The ifinfomsg and attributes that name one link: by index in the header, by name as IFLA_IFNAME. */
export function linkSelector(ref: LinkRef, flags = 0, change = 0): Buffer[] {
  return typeof ref === 'number'
    ? [ifinfomsg({ index: ref, flags, change })]
    : [ifinfomsg({ flags, change }), attr(IFLA.IFNAME, str(ref))]
}

export async function listLinks(rtnl: Rtnl): Promise<Link[]> {
  const doing = 'list links'
  try {
    // Without counters, which tsnet never reads: half the bytes, and the dump of 6,000 links takes half the time.
    const msgs = await rtnl.dump(RTM.GETLINK, [ifinfomsg(), attr(IFLA.EXT_MASK, u32(RTEXT_FILTER.SKIP_STATS))], doing)
    return msgs.flatMap((m) => (m.type === RTM.NEWLINK ? [decodeLink(m)].filter((l): l is Link => l !== undefined) : []))
  } catch (err) {
    throw explain(err, doing)
  }
}

/** One link, or undefined when there is none by that name or index. */
export async function getLink(rtnl: Rtnl, ref: LinkRef): Promise<Link | undefined> {
  checkLinkRef(ref)
  const doing = `read ${linkWords(ref)}`
  try {
    const [msg] = await rtnl.request(RTM.GETLINK, 0, linkSelector(ref), doing)
    return msg ? decodeLink(msg) : undefined
  } catch (err) {
    if (isErrno(err, 'ENODEV')) return undefined
    throw explain(err, doing)
  }
}

export const noLink = (ref: LinkRef) => notFound(typeof ref === 'number' ? `no link with index ${ref}` : `no link named ${ref}`)

/** A link that must exist; a missing one is "no link named X". */
export async function requireLink(rtnl: Rtnl, ref: LinkRef, what = 'interface name'): Promise<Link> {
  checkLinkRef(ref, what)
  const link = await getLink(rtnl, ref)
  if (!link) throw noLink(ref)
  return link
}

/** The ifindex of a link: an index is taken as it is (the operation using it reports ENODEV), a name is looked up. */
export async function linkIndex(rtnl: Rtnl, ref: LinkRef, what = 'interface name'): Promise<number> {
  checkLinkRef(ref, what)
  return typeof ref === 'number' ? ref : (await requireLink(rtnl, ref, what)).index
}
