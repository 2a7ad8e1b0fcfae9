/**
 * The cluster store as `tsnet serve` opens it when --etcd-endpoints is given (issue 14). Opening
 * never waits for etcd: tsnet starts, and bridge networks work, while etcd is unreachable. What
 * it finds (etcd reachable or not, this host's VTEP address) is said in the log, in the
 * background. Nothing on the request path uses it yet.
 */
import type { Logger } from 'pino'
import type { Config } from '../config.js'
import { errorMessage } from '../errors.js'
import { vtepAddress } from '../host/vtep-address.js'
import { EtcdStore } from '../store/etcd-store.js'

export interface ClusterStore {
  store: EtcdStore
  /** This host's address on cluster networks, once found (undefined until then, or when it cannot be). */
  vtep: Promise<string | undefined>
  close(): Promise<void>
}

export function openClusterStore(config: Config, log: Logger): ClusterStore | undefined {
  const etcd = config.etcd
  if (!etcd) return undefined
  const tls = { ...(etcd.caFile ? { caFile: etcd.caFile } : {}), ...(etcd.certFile ? { certFile: etcd.certFile } : {}), ...(etcd.keyFile ? { keyFile: etcd.keyFile } : {}) }
  const store = new EtcdStore({ endpoints: etcd.endpoints, tls, log })
  // File names only: the certificates and the key stay out of the log.
  log.info({ etcdEndpoints: etcd.endpoints, prefix: store.root, tls: Object.keys(tls).length > 0 ? tls : 'off' }, 'cluster store on etcd')
  store.get('meta/schema').then(
    () => log.info({ etcdEndpoints: etcd.endpoints }, 'etcd answers'),
    (err: unknown) => log.warn({ etcdEndpoints: etcd.endpoints }, `${errorMessage(err)}; bridge networks work without it, cluster networks wait for it`),
  )
  const vtep = vtepAddress({ endpoints: etcd.endpoints, ...(config.advertiseAddress ? { advertiseAddress: config.advertiseAddress } : {}) }).then(
    (choice) => {
      log.info({ vtep: choice.address, from: choice.source }, 'address on cluster networks')
      return choice.address
    },
    (err: unknown) => {
      log.warn({ err }, 'no address on cluster networks')
      return undefined
    },
  )
  return { store, vtep, close: () => store.close() }
}
