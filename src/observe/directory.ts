/**
 * Names for what a finding is about: which network owns a bridge, a subnet or a set member,
 * which container an endpoint, a veth or a published port belongs to. Built from the store's
 * records, Docker's names (or the cached copy) and container names; pure.
 */
import type { EndpointRecord, NetworkRecord } from '../core/records.js'
import { linkOfNetwork } from './status-view.js'

const short = (id: string) => id.slice(0, 12)

export interface Directory {
  /** "network web (0a12b3c4d5e6)" */
  network(id: string): string
  /** "container c2 on network web" */
  endpoint(id: string): string
  /** Whose link this is, if a record says so. */
  ownerOfLink(link: string): string | undefined
  /** Whose subnet holds this address or prefix text (the start of a set member). */
  ownerOfMember(entry: string): string | undefined
  /** The endpoint a 12-character ID prefix (a tag tsnet:ep:<id12>) names. */
  endpointByTag(tag: string): string | undefined
  /** Who publishes this host port (`tcp/8080`). */
  publishersOf(protoPort: string): string[]
  /** A container's name, for commands that fix (docker restart NAME). */
  containerOf(endpointId: string): string | undefined
  /** The endpoint whose host-side link this is. */
  endpointOfLink(link: string): EndpointRecord | undefined
}

export function buildDirectory(
  networks: readonly NetworkRecord[],
  endpoints: readonly EndpointRecord[],
  networkNames: ReadonlyMap<string, string>,
  containers: ReadonlyMap<string, string>,
): Directory {
  const network = (id: string) => {
    const name = networkNames.get(id)
    return name ? `network ${name} (${short(id)})` : `network ${short(id)}`
  }
  const byId = new Map(endpoints.map((e) => [e.id, e]))
  const endpoint = (id: string) => {
    const e = byId.get(id)
    const c = containers.get(id)
    const who = c ? `container ${c}` : `endpoint ${short(id)}`
    return e ? `${who} on ${network(e.networkId)}` : who
  }
  const links = new Map<string, string>()
  const endpointLinks = new Map<string, EndpointRecord>()
  for (const n of networks) {
    const own = n.mode === 'overlay' || n.mode === 'cluster' ? [n.spec.bridge, n.spec.vxlan] : [linkOfNetwork(n)]
    for (const link of own) if (link) links.set(link, network(n.id))
  }
  for (const e of endpoints) {
    // A veth's host end; a macvlan endpoint's only link while it is on the host.
    const link = e.hostIf ?? e.containerIf
    links.set(link, endpoint(e.id))
    endpointLinks.set(link, e)
  }
  const subnets = networks.flatMap((n) => [...n.ipv4Subnets, ...n.ipv6Subnets].map((s) => ({ pool: s.pool, owner: network(n.id) })))
  return {
    network,
    endpoint,
    ownerOfLink: (link) => links.get(link),
    ownerOfMember: (entry) => {
      const [first, second] = entry.split(',')
      if (second !== undefined && links.has(second)) return links.get(second)
      return subnets.find((s) => s.pool === first)?.owner
    },
    endpointByTag: (tag) => {
      const e = endpoints.find((x) => x.id.startsWith(tag))
      return e ? endpoint(e.id) : undefined
    },
    publishersOf: (protoPort) => endpoints.filter((e) => (e.published ?? []).some((p) => `${p.proto}/${p.hostPort}` === protoPort)).map((e) => endpoint(e.id)),
    containerOf: (id) => containers.get(id),
    endpointOfLink: (link) => endpointLinks.get(link),
  }
}
