/**
 * Which link kinds the kernel can create, asked without creating anything: a create request for
 * a kind that needs a lower device, sent without one. A kernel that has the kind refuses the
 * missing device (EINVAL); one without it answers that the kind is not supported (EOPNOTSUPP,
 * after trying to load its module). Only kinds that cannot exist without a lower device are
 * asked about this way, so the request can never make a link.
 */
import { IFLA, IFLA_INFO, NLM_F, RTM } from './constants.js'
import { isErrno } from './errno.js'
import { deleteLink } from './link-changes.js'
import type { Rtnl } from './socket.js'
import { attr, ifinfomsg, nest, str } from './wire.js'

/** Kinds whose creation needs IFLA_LINK (vlan_newlink, macvlan_common_newlink, ipvlan_link_new refuse without it). */
export const LOWER_DEVICE_KINDS = ['vlan', 'macvlan', 'ipvlan'] as const
export type LowerDeviceKind = (typeof LOWER_DEVICE_KINDS)[number]

/** The name the request carries, so that a kernel that did make the link (none does) lets it be removed. */
const PROBE_NAME = 'tsnet-probe0'

/**
 * Whether the kernel can create links of `kind`: false only when it says the kind is not
 * supported; any other answer (no permission, a name taken) leaves it to the real request to
 * explain itself.
 */
export async function kernelHasLinkKind(rtnl: Rtnl, kind: LowerDeviceKind): Promise<boolean> {
  const body = [ifinfomsg(), attr(IFLA.IFNAME, str(PROBE_NAME)), nest(IFLA.LINKINFO, [attr(IFLA_INFO.KIND, str(kind))])]
  try {
    await rtnl.request(RTM.NEWLINK, NLM_F.CREATE | NLM_F.EXCL, body, `ask whether the kernel has ${kind} links`)
  } catch (err) {
    return !isErrno(err, 'EOPNOTSUPP')
  }
  await deleteLink(rtnl, PROBE_NAME).catch(() => undefined)
  return true
}
