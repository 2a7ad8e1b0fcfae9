/** Docker's route table: every NetworkDriver and IpamDriver call, mapped onto the services. */
import type { Logger } from 'pino'
import * as schemas from '../protocol/schemas.js'
import type { IpamService } from '../services/ipam-service.js'
import type { NetworkDriver } from '../services/network-driver.js'
import type { PolicyService } from '../services/policy-service.js'
import type { PortPublisher } from '../services/port-publisher.js'
import type { Reconciler } from '../engine/reconciler.js'
import type { DaemonInfo } from '../services/daemon-info.js'
import type { SwarmService } from '../services/swarm-service.js'
import type { VniService } from '../services/vni-service.js'
import type { ClusterService } from '../services/cluster-service.js'
import { refuseClusterPool } from '../services/cluster-ipam.js'

export interface Services {
  driver: NetworkDriver
  ports: PortPublisher
  policy: PolicyService
  ipam: IpamService
  /** The daemon's health for `/Tsnet.Status` (absent in tests that build the routes by hand). */
  daemon?: DaemonInfo
  reconciler: Reconciler
  /** Overlay mode (a global-scope plugin): node discovery, announcements, the leader's VNIs. */
  swarm?: SwarmService
  vnis?: VniService
  /** Cluster networks (--etcd-endpoints): their IPAM, and endpoint registrations. */
  cluster?: ClusterService
}

/**
 * Sends Docker the answer before the handler is done, for work Docker need not wait for (the
 * kernel's removal of a link, Leave's record), still under the network's lock, so the next call
 * on the network waits for it; a later failure is only logged.
 */
export type Answer = (value: unknown) => void
type Handler = (body: any, log: Logger, answer: Answer) => unknown

export interface Route {
  schema?: object
  handler: Handler
}

export const IMPLEMENTS = ['NetworkDriver', 'IpamDriver']

export function dockerRoutes(s: Services): Record<string, Route> {
  const n = s.driver
  const i = s.ipam
  const c = s.cluster?.ipam
  // The cluster store learns of an endpoint as soon as the host has it (other hosts program it from there).
  const registered = async <T>(answer: Promise<T>): Promise<T> => {
    try {
      return await answer
    } finally {
      s.cluster?.endpointsChanged()
    }
  }
  return {
    '/Plugin.Activate': { handler: () => ({ Implements: IMPLEMENTS }) },
    '/NetworkDriver.GetCapabilities': { handler: () => n.capabilities() },
    '/NetworkDriver.CreateNetwork': { schema: schemas.createNetwork, handler: (b, log) => n.createNetwork(b, log) },
    '/NetworkDriver.DeleteNetwork': { schema: schemas.networkRef, handler: (b, log) => n.deleteNetwork(b, log) },
    '/NetworkDriver.AllocateNetwork': { schema: schemas.allocateNetwork, handler: (b, log) => (s.vnis ? s.vnis.allocate(b, log) : n.allocateNetwork(b)) },
    '/NetworkDriver.FreeNetwork': { schema: schemas.networkRef, handler: (b, log) => s.vnis?.free(b, log) ?? {} },
    '/NetworkDriver.CreateEndpoint': { schema: schemas.createEndpoint, handler: (b, log) => registered(n.createEndpoint(b, log)) },
    '/NetworkDriver.EndpointOperInfo': { schema: schemas.endpointRef, handler: (b) => n.endpointOperInfo(b) },
    '/NetworkDriver.DeleteEndpoint': { schema: schemas.endpointRef, handler: (b, log, answer) => registered(n.deleteEndpoint(b, log, () => answer({}))) },
    '/NetworkDriver.Join': {
      schema: schemas.join,
      handler: async (b, log) => {
        const answer = await n.join(b, log)
        s.swarm?.joined(b, log)
        return answer
      },
    },
    '/NetworkDriver.Leave': { schema: schemas.endpointRef, handler: (b, log, answer) => n.leave(b, log, () => answer({})) },
    '/NetworkDriver.ProgramExternalConnectivity': { schema: schemas.connectivity, handler: (b, log) => s.ports.program(b, log) },
    '/NetworkDriver.RevokeExternalConnectivity': { schema: schemas.endpointRef, handler: (b, log) => s.ports.revoke(b, log) },
    '/NetworkDriver.DiscoverNew': { schema: schemas.discovery, handler: (b, log) => s.swarm?.discoverNew(b, log) ?? {} },
    '/NetworkDriver.DiscoverDelete': { schema: schemas.discovery, handler: (b, log) => s.swarm?.discoverDelete(b, log) ?? {} },
    '/IpamDriver.GetCapabilities': { handler: () => i.capabilities() },
    '/IpamDriver.GetDefaultAddressSpaces': { handler: () => i.defaultAddressSpaces() },
    '/IpamDriver.RequestPool': { schema: schemas.requestPool, handler: (b, log) => (c?.ownsPoolRequest(b) ? c.requestPool(b, log) : i.requestPool(refuseClusterPool(b), log)) },
    '/IpamDriver.ReleasePool': { schema: schemas.releasePool, handler: (b, log) => (c?.ownsPool(b.PoolID) ? c.releasePool(b, log) : i.releasePool(b, log)) },
    '/IpamDriver.RequestAddress': { schema: schemas.requestAddress, handler: (b, log) => (c?.ownsPool(b.PoolID) ? c.requestAddress(b, log) : i.requestAddress(b, log)) },
    '/IpamDriver.ReleaseAddress': { schema: schemas.releaseAddress, handler: (b, log) => (c?.ownsPool(b.PoolID) ? c.releaseAddress(b, log) : i.releaseAddress(b, log)) },
  }
}
