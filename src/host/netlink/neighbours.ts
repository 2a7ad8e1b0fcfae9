/**
 * Neighbour entries (ARP for IPv4, NDP for IPv6) on a link: list, add (permanent, with a MAC,
 * replacing whatever entry the address had, as `ip neigh replace ... nud permanent` does), delete.
 */
import { notFound } from '../../errors.js'
import type { Family } from '../../core/addr.js'
import { checkMac } from '../../core/names.js'
import { NDA, NLM_F, NTF, NUD, RTM } from './constants.js'
import { explain } from './errno.js'
import { linkIndex, noLink } from './links.js'
import type { Rtnl } from './socket.js'
import { afOf, checkIp, ipText, openReply, type LinkRef, linkWords, macBytes, macText } from './values.js'
import { attr, ndmsg, NDMSG_LEN, type NlMessage, readNdmsg, u32 } from './wire.js'

export interface Neighbour {
  /** ifindex of the link the entry is on. */
  link: number
  family: Family
  address: string
  mac?: string
  /** NUD states, lower case: permanent, reachable, stale, noarp, failed, ... */
  state: string[]
  router: boolean
}

/** Names of the NUD_* bits set in a state. */
export function nudNames(state: number): string[] {
  return Object.entries(NUD).filter(([, bit]) => (state & bit) !== 0).map(([name]) => name.toLowerCase())
}

export function decodeNeighbour(msg: NlMessage): Neighbour | undefined {
  const reply = openReply(msg, RTM.NEWNEIGH, NDMSG_LEN, readNdmsg)
  if (!reply) return undefined
  const { h, family, a } = reply
  const address = ipText(a.raw(NDA.DST))
  if (!address) return undefined
  const mac = macText(a.raw(NDA.LLADDR))
  return { link: h.index, family, address, ...(mac ? { mac } : {}), state: nudNames(h.state), router: (h.flags & NTF.ROUTER) !== 0 }
}

/** The neighbour entries of one link, of both families or of one. */
export async function listNeighbours(rtnl: Rtnl, link: LinkRef, family?: Family): Promise<Neighbour[]> {
  const index = await linkIndex(rtnl, link)
  const doing = `list the neighbour entries of ${linkWords(link)}`
  const out: Neighbour[] = []
  try {
    for (const f of family ? [family] : ([4, 6] as const)) {
      const msgs = await rtnl.dump(RTM.GETNEIGH, [ndmsg({ family: afOf(f), index }), attr(NDA.IFINDEX, u32(index))], doing)
      for (const m of msgs) {
        const n = decodeNeighbour(m)
        if (n && n.link === index && n.family === f) out.push(n)
      }
    }
  } catch (err) {
    throw explain(err, doing, { ENODEV: () => noLink(link) })
  }
  return out
}


/** A permanent entry: `address` is at `mac` on `link`. Replaces any entry the address had there. */
export async function addNeighbour(rtnl: Rtnl, e: { link: LinkRef; address: string; mac: string }): Promise<void> {
  const ip = checkIp(e.address, 'neighbour address')
  const mac = checkMac(e.mac)
  const index = await linkIndex(rtnl, e.link)
  const doing = `add neighbour ${ip.text} at ${mac} on ${linkWords(e.link)}`
  const body = [ndmsg({ family: afOf(ip.family), index, state: NUD.PERMANENT }), attr(NDA.DST, ip.bytes), attr(NDA.LLADDR, macBytes(mac))]
  try {
    await rtnl.request(RTM.NEWNEIGH, NLM_F.CREATE | NLM_F.REPLACE, body, doing)
  } catch (err) {
    throw explain(err, doing, { ENODEV: () => noLink(e.link) })
  }
}

/** Deletes the entry of `address` on `link`; none there is "no neighbour entry for A on link X". */
export async function deleteNeighbour(rtnl: Rtnl, e: { link: LinkRef; address: string }): Promise<void> {
  const ip = checkIp(e.address, 'neighbour address')
  const index = await linkIndex(rtnl, e.link)
  const doing = `delete neighbour ${ip.text} on ${linkWords(e.link)}`
  try {
    await rtnl.request(RTM.DELNEIGH, 0, [ndmsg({ family: afOf(ip.family), index }), attr(NDA.DST, ip.bytes)], doing)
  } catch (err) {
    throw explain(err, doing, {
      ENOENT: () => notFound(`no neighbour entry for ${ip.text} on ${linkWords(e.link)}`, { link: e.link, address: ip.text }),
      ENODEV: () => noLink(e.link),
    })
  }
}
