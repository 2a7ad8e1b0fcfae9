/**
 * Records as earlier versions wrote them, brought to today's shape on read. Schema 1 (tsnet
 * 0.1) had no modes: every network was a bridge, its name at the top level.
 */
import type { NetworkRecord } from './records.js'

interface NetworkV1 {
  bridge: string
  bridgeNamedByUser: boolean
  mode?: undefined
}

/** A stored network in today's shape, whichever version wrote it. */
export function upgradeNetwork(stored: NetworkRecord | (Omit<NetworkRecord, 'mode' | 'spec'> & NetworkV1)): NetworkRecord {
  if (stored.mode !== undefined) return stored
  const { bridge, bridgeNamedByUser, ...rest } = stored
  return { ...rest, mode: 'bridge', spec: { bridge, bridgeNamedByUser } }
}
