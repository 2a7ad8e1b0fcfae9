/**
 * The MTU of a cluster network, agreed in etcd (issue 14 step 2): the first host that creates the
 * network stores its choice (the MTU option, else the smallest underlay registered at that moment
 * minus the VXLAN headers) in the spec by compare-and-swap; every later host takes the stored one,
 * so containers on every host use one MTU. A host giving another MTU option is refused.
 */
import type { ClusterNetworkSpec } from '../core/cluster-spec.js'
import { conflict, quote } from '../errors.js'
import type { Store } from '../store/store.js'
import { type ClusterNetworks, networkKey } from './cluster-networks.js'

const ATTEMPTS = 16

/** `proposed`: this host's choice; `given`: true when it came from the MTU option (then it must match a stored one). */
export async function agreeMtu(store: Store, networks: ClusterNetworks, name: string, proposed: number, given: boolean): Promise<number> {
  for (let attempt = 1; attempt <= ATTEMPTS; attempt++) {
    const stored = await store.get<ClusterNetworkSpec>(networkKey(name))
    if (!stored) return proposed // removed meanwhile: CreateNetwork's own checks say so
    const spec = stored.value
    if (spec.mtu !== undefined) {
      if (given && proposed !== spec.mtu) {
        throw conflict(`cluster network ${quote(name)} is stored with MTU ${spec.mtu}, and this host asked for ${proposed}: give the same com.docker.network.driver.mtu on every host, or leave it out to take the cluster's`,
          { network: name, stored: spec.mtu, asked: proposed })
      }
      return spec.mtu
    }
    if ((await store.txn([{ key: networkKey(name), rev: stored.rev }], [{ put: networkKey(name), value: { ...spec, mtu: proposed } }])).ok) {
      networks.forget(name)
      return proposed
    }
  }
  throw conflict(`cluster network ${quote(name)}: other hosts changed its record ${ATTEMPTS} times first; try again`)
}
