/**
 * Routes of the main table, per family: what the host already routes (pools must avoid those
 * prefixes) and which device carries the default route (its MTU bounds tsnet's). Read only.
 */
import type { Family } from '../../core/addr.js'
import { RT_PROTOCOLS, RT_SCOPES, RT_TABLE_MAIN, RT_TYPES, RTA, RTAX_MTU, RTM } from './constants.js'
import { explain } from './errno.js'
import type { Rtnl } from './socket.js'
import { afOf, ipText, openReply } from './values.js'
import { type NlMessage, readRtmsg, RTMSG_LEN, rtmsg } from './wire.js'

export interface Route {
  family: Family
  /** `default`, or the destination prefix (`10.0.0.0/24`, `fd00::1/128`). */
  dst: string
  /** ifindex of the output device (absent on multipath and blackhole routes). */
  dev?: number
  gateway?: string
  /** The route's own MTU (`ip route ... mtu N`), not the device's. */
  mtu?: number
  scope: string
  protocol: string
  type: string
  table: number
  priority?: number
  prefsrc?: string
}

export function decodeRoute(msg: NlMessage): Route | undefined {
  const reply = openReply(msg, RTM.NEWROUTE, RTMSG_LEN, readRtmsg)
  if (!reply) return undefined
  const { h, family, a } = reply
  const dstIp = ipText(a.raw(RTA.DST))
  const dst = h.dstLength === 0 && !dstIp ? 'default' : `${dstIp ?? (family === 4 ? '0.0.0.0' : '::')}/${h.dstLength}`
  const dev = a.u32(RTA.OIF)
  const gateway = ipText(a.raw(RTA.GATEWAY))
  const mtu = a.nested(RTA.METRICS)?.u32(RTAX_MTU)
  const priority = a.u32(RTA.PRIORITY)
  const prefsrc = ipText(a.raw(RTA.PREFSRC))
  return {
    family,
    dst,
    ...(dev ? { dev } : {}),
    ...(gateway ? { gateway } : {}),
    ...(mtu ? { mtu } : {}),
    scope: RT_SCOPES[h.scope] ?? String(h.scope),
    protocol: RT_PROTOCOLS[h.protocol] ?? String(h.protocol),
    type: RT_TYPES[h.type] ?? String(h.type),
    table: a.u32(RTA.TABLE) ?? h.table,
    ...(priority !== undefined ? { priority } : {}),
    ...(prefsrc ? { prefsrc } : {}),
  }
}

/** The routes of the main table of one family. */
export async function listRoutes(rtnl: Rtnl, family: Family): Promise<Route[]> {
  const doing = `list the IPv${family} routes`
  try {
    const msgs = await rtnl.dump(RTM.GETROUTE, [rtmsg({ family: afOf(family) })], doing)
    return msgs.flatMap((m) => {
      const r = decodeRoute(m)
      return r && r.table === RT_TABLE_MAIN && r.family === family ? [r] : []
    })
  } catch (err) {
    throw explain(err, doing)
  }
}
