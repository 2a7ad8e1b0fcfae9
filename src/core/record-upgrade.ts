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

/**
 * A stored record of any earlier schema in today's shape, by collection: store/migrate.ts runs it
 * over every record when it migrates a store at open, and `tsnet status` reads an unmigrated
 * store through it. Only networks changed shape (schema 1 → 2); a value it cannot read throws,
 * and the migration then quarantines that record.
 */
export function upgradeRecord(collection: string, _id: string, value: unknown): unknown {
  if (collection !== 'networks') return value
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error('a network record must be a JSON object')
  return upgradeNetwork(value as Parameters<typeof upgradeNetwork>[0])
}
