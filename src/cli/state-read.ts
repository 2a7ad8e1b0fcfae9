/** What the commands read beside (or without) the daemon: the store, read-only, and the daemon's own word. */
import type { NamedNetwork } from '../core/docker-facts.js'
import type { EndpointRecord, LeaseRecord, NetworkRecord, PoolRecord } from '../core/records.js'
import { checkStoredRecord } from '../core/record-check.js'
import { upgradeNetwork, upgradeRecord } from '../core/record-upgrade.js'
import { errorMessage } from '../errors.js'
import type { PeerBook } from '../modes/overlay-peers.js'
import type { DaemonStatus } from '../observe/daemon-status.js'
import type { Records } from '../observe/record-checks.js'
import type { DaemonView } from '../observe/status-view.js'
import { FileStore } from '../store/file-store.js'
import { DaemonAbsent, callDaemon } from './daemon-client.js'

export interface StoredState extends Records {
  /** Docker's names as the daemon last saw them (it keeps them only with a Docker API). */
  cachedNames: NamedNetwork[]
  /** The Docker engine garbage collection is pinned to. */
  pinnedEngine?: string
  /** The swarm's hosts as the daemon last wrote them (overlay networks). */
  peerBook?: PeerBook
}

/**
 * The store, read-only: never the daemon's state lock, never a write, never a removal of the
 * daemon's temporary files. A record the daemon would refuse is an error here.
 */
export async function readStore(stateDir: string): Promise<StoredState> {
  // A store the daemon has not migrated yet is read through the same upgrade it will apply.
  const store = await FileStore.open(stateDir, undefined, { readOnly: true, check: checkStoredRecord, upgrade: upgradeRecord })
  const values = async <T>(c: 'networks' | 'endpoints' | 'pools' | 'leases') => (await store.list<T>(`${c}/`)).map((r) => r.value)
  const metaOf = async <T>(id: string) => (await store.get<T>(`meta/${id}`))?.value
  const pinned = (await metaOf<{ id?: string }>('engine'))?.id
  const cached = await metaOf<{ networks?: NamedNetwork[] }>('docker-networks')
  const peerBook = await metaOf<PeerBook>('swarm-peers')
  const state: StoredState = {
    // As NetworkState loads them: a schema-1 record in a migrated store is read in today's shape too.
    networks: (await values<NetworkRecord>('networks')).map(upgradeNetwork),
    endpoints: await values<EndpointRecord>('endpoints'),
    pools: await values<PoolRecord>('pools'),
    leases: await values<LeaseRecord>('leases'),
    cachedNames: cached?.networks ?? [],
    ...(typeof pinned === 'string' ? { pinnedEngine: pinned } : {}),
    ...(peerBook ? { peerBook } : {}),
  }
  await store.close()
  return state
}

/** The daemon's health, or why there is none. */
export async function askDaemon(socket: string, timeoutMs = 5_000): Promise<DaemonView> {
  try {
    const { Status } = await callDaemon<{ Status: DaemonStatus }>(socket, '/Tsnet.Status', {}, timeoutMs)
    return { running: true, socket, status: Status }
  } catch (err) {
    if (err instanceof DaemonAbsent) return { running: false, socket, reason: `not running (${err.reason} at ${socket})` }
    return { running: false, socket, reason: `not answering on ${socket} (${errorMessage(err)})` }
  }
}
