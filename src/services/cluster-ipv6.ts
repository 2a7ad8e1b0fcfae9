/**
 * IPv6 on a cluster network (issue 14 step 5). Docker asks for the IPv4 pool first and the IPv6
 * pool after it, in two calls, so the IPv6 subnet joins the spec the IPv4 call stored: by one
 * compare-and-swap on the spec and the index, checked against every other cluster network's
 * subnets. A host asking for another IPv6 subnet than the stored one is refused, as for IPv4.
 */
import { formatPrefix } from '../core/addr.js'
import { type ClusterIndex, type ClusterNetworkSpec, checkNetworkName, chooseSubnet, gatewayOf, parseSubnet } from '../core/cluster-spec.js'
import { conflict, invalid, notFound, quote } from '../errors.js'
import type { Store } from '../store/store.js'
import { INDEX_KEY, type ClusterNetworks, networkKey } from './cluster-networks.js'

const ATTEMPTS = 16

export async function agreeIpv6(store: Store, networks: ClusterNetworks, name: string, asked: string | undefined): Promise<ClusterNetworkSpec> {
  checkNetworkName(name)
  const wanted = asked ? formatPrefix(parseSubnet(asked, 6, 'IPv6 subnet')) : undefined
  for (let attempt = 1; attempt <= ATTEMPTS; attempt++) {
    const stored = await store.get<ClusterNetworkSpec>(networkKey(name))
    if (!stored) throw notFound(`cluster network ${quote(name)} has no IPv4 pool yet: Docker asks for it first (is --ipam-opt tsnet.overlay=${name} given?)`)
    const spec = stored.value
    if (spec.ipv6Subnet) {
      if (wanted && wanted !== spec.ipv6Subnet) {
        throw conflict(`cluster network ${quote(name)} is stored with IPv6 subnet ${spec.ipv6Subnet}, and this host asked for ${wanted}: give the same IPv6 subnet on every host, or leave it out to take the cluster's`,
          { network: name, stored: spec.ipv6Subnet, asked: wanted })
      }
      networks.forget(name)
      return spec
    }
    if (!wanted) throw invalid(`cluster network ${quote(name)} has no IPv6 subnet yet: give one with --subnet (for example fd00:dc::/64) on the host that adds IPv6 first`)
    const index = await store.get<ClusterIndex>(INDEX_KEY)
    const indexNetworks = index?.value.networks ?? {}
    chooseSubnet(name, { subnet: spec.subnet, ipv6Subnet: wanted }, { networks: indexNetworks }, [], []) // refuses an overlap with another network
    const next: ClusterNetworkSpec = { ...spec, ipv6Subnet: wanted, ipv6Gateway: gatewayOf(parseSubnet(wanted, 6, 'IPv6 subnet')) }
    const entry = indexNetworks[name] ?? { subnet: spec.subnet, vni: spec.vni }
    const when = [{ key: networkKey(name), rev: stored.rev }, index ? { key: INDEX_KEY, rev: index.rev } : { key: INDEX_KEY, absent: true as const }]
    const then = [{ put: networkKey(name), value: next }, { put: INDEX_KEY, value: { networks: { ...indexNetworks, [name]: { ...entry, ipv6Subnet: wanted } } } }]
    if ((await store.txn(when, then)).ok) {
      networks.forget(name)
      return next
    }
  }
  throw conflict(`cluster network ${quote(name)}: other hosts changed the cluster's networks ${ATTEMPTS} times first; try again`)
}
