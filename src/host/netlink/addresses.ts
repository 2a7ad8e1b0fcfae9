/** Interface addresses, both families: list (per link), add, replace, delete. IPv6 ones go on without DAD. */
import { conflict, notFound } from '../../errors.js'
import type { Family } from '../../core/addr.js'
import { AF, IFA, IFA_F, NLM_F, RT_SCOPES, RTM } from './constants.js'
import { explain } from './errno.js'
import { linkIndex, noLink } from './links.js'
import type { Rtnl } from './socket.js'
import { afOf, checkCidrValue, checkLinkRef, ipText, openReply, type LinkRef, linkWords } from './values.js'
import { attr, IFADDRMSG_LEN, ifaddrmsg, type NlMessage, readIfaddrmsg, u32 } from './wire.js'

export interface Address {
  /** ifindex of the link that has it. */
  link: number
  family: Family
  address: string
  prefixLength: number
  /** `address/prefixLength`, as `ip addr` prints it. */
  cidr: string
  scope: string
  label?: string
  tentative: boolean
  dadFailed: boolean
  nodad: boolean
  /** False for addresses with a lifetime (SLAAC, DHCP). */
  permanent: boolean
}

export function decodeAddress(msg: NlMessage): Address | undefined {
  const reply = openReply(msg, RTM.NEWADDR, IFADDRMSG_LEN, readIfaddrmsg)
  if (!reply) return undefined
  const { h, family, a } = reply
  // IFA_LOCAL is the address itself; IFA_ADDRESS is the peer on point-to-point links (and the address elsewhere).
  const address = ipText(a.raw(IFA.LOCAL)) ?? ipText(a.raw(IFA.ADDRESS))
  if (!address) return undefined
  const flags = a.u32(IFA.FLAGS) ?? h.flags
  const label = a.str(IFA.LABEL)
  return {
    link: h.index,
    family,
    address,
    prefixLength: h.prefixLength,
    cidr: `${address}/${h.prefixLength}`,
    scope: RT_SCOPES[h.scope] ?? String(h.scope),
    ...(label ? { label } : {}),
    tentative: (flags & IFA_F.TENTATIVE) !== 0,
    dadFailed: (flags & IFA_F.DADFAILED) !== 0,
    nodad: (flags & IFA_F.NODAD) !== 0,
    permanent: (flags & IFA_F.PERMANENT) !== 0,
  }
}

/** Addresses of every link, or of one; of both families, or of one. */
export async function listAddresses(rtnl: Rtnl, filter: { link?: LinkRef; family?: Family } = {}): Promise<Address[]> {
  const index = filter.link !== undefined ? await linkIndex(rtnl, filter.link) : undefined
  const doing = `list addresses${filter.link !== undefined ? ` of ${linkWords(filter.link)}` : ''}`
  try {
    const af = filter.family ? afOf(filter.family) : AF.UNSPEC
    const msgs = await rtnl.dump(RTM.GETADDR, [ifaddrmsg({ family: af, prefixLength: 0, flags: 0, scope: 0, index: index ?? 0 })], doing)
    return msgs.flatMap((m) => {
      const a = decodeAddress(m)
      return a && (index === undefined || a.link === index) && (!filter.family || a.family === filter.family) ? [a] : []
    })
  } catch (err) {
    throw explain(err, doing, filter.link !== undefined ? { ENODEV: () => noLink(filter.link as LinkRef) } : {})
  }
}

async function addressRequest(rtnl: Rtnl, link: LinkRef, cidr: string) {
  checkLinkRef(link)
  const c = checkCidrValue(cidr)
  const index = await linkIndex(rtnl, link)
  const flags = c.family === 6 ? IFA_F.NODAD : 0
  const body = [
    ifaddrmsg({ family: afOf(c.family), prefixLength: c.prefixLength, flags, scope: 0, index }),
    attr(IFA.LOCAL, c.bytes),
    attr(IFA.ADDRESS, c.bytes),
  ]
  return { body, flags, shown: `${c.text}/${c.prefixLength}` }
}

/**
 * Puts an address on a link. Plain add refuses one that is there already; `replace` (what
 * `ip addr replace` does) succeeds either way, which is what a reconcile wants.
 */
export async function addAddress(rtnl: Rtnl, link: LinkRef, cidr: string, opts: { replace?: boolean } = {}): Promise<void> {
  const { body, flags, shown } = await addressRequest(rtnl, link, cidr)
  if (flags) body.push(attr(IFA.FLAGS, u32(flags)))
  const doing = `add address ${shown} to ${linkWords(link)}`
  try {
    await rtnl.request(RTM.NEWADDR, NLM_F.CREATE | (opts.replace ? NLM_F.REPLACE : NLM_F.EXCL), body, doing)
  } catch (err) {
    throw explain(err, doing, {
      EEXIST: () => conflict(`address ${shown} is already on ${linkWords(link)}`, { link, address: shown }),
      ENODEV: () => noLink(link),
    })
  }
}

export const replaceAddress = (rtnl: Rtnl, link: LinkRef, cidr: string): Promise<void> => addAddress(rtnl, link, cidr, { replace: true })

/** Takes an address off a link; one that is not there is "address A is not on link X". */
export async function deleteAddress(rtnl: Rtnl, link: LinkRef, cidr: string): Promise<void> {
  const { body, shown } = await addressRequest(rtnl, link, cidr)
  const doing = `delete address ${shown} from ${linkWords(link)}`
  try {
    await rtnl.request(RTM.DELADDR, 0, body, doing)
  } catch (err) {
    throw explain(err, doing, {
      EADDRNOTAVAIL: () => notFound(`address ${shown} is not on ${linkWords(link)}`, { link, address: shown }),
      ENODEV: () => noLink(link),
    })
  }
}
