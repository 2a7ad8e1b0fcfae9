/** Forgets connection-tracking entries of host ports whose DNAT rule went (placeholder until the parity change lands). */
import type { Logger } from 'pino'
import type { Proto } from '../core/objects.js'

export interface FlowCleaner {
  clear(ports: Array<{ proto: Proto; port: number }>, log: Logger): Promise<void>
}

export const NO_FLOW_CLEANER: FlowCleaner = { clear: async () => undefined }
