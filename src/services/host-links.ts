/** Host links a mode plans with (a macvlan parent), read fresh from the host. */
import type { LinkObject } from '../core/objects.js'
import type { Host } from '../host/host.js'

/** The links named, as they are now, by name; a name missing from the map does not exist. */
export async function currentLinks(host: Host, names: readonly string[]): Promise<Map<string, LinkObject>> {
  if (names.length === 0) return new Map()
  const seen = await host.observe({ keys: names.map((n) => `link ${n}`), fresh: true })
  return new Map([...seen.values()].flatMap((o) => (o.kind === 'link' ? [[o.name, o] as const] : [])))
}
