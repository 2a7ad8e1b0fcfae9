/** What `ip -j route get ADDRESS` says about the source address the kernel would use. Pure. */
import { formatIp, parseIp } from './addr.js'

/** The preferred source address of the route, canonical; undefined when the answer names none. */
export function parseRouteSource(json: string): string | undefined {
  let routes: unknown
  try {
    routes = JSON.parse(json)
  } catch {
    return undefined
  }
  if (!Array.isArray(routes)) return undefined
  const src = (routes[0] as { prefsrc?: unknown } | undefined)?.prefsrc
  const ip = typeof src === 'string' ? parseIp(src) : undefined
  return ip ? formatIp(ip) : undefined
}
