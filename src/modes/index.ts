/** The modes tsnet knows, and which one a network's options choose. */
import { invalid, quote } from '../errors.js'
import { COMMON_OPTION } from '../core/docker-keys.js'
import type { ModeName, NetworkRecord } from '../core/records.js'
import { bridgeMode } from './bridge.js'
import type { NetworkMode } from './mode.js'
import { overlayMode } from './overlay.js'

const MODES: Partial<Record<ModeName, NetworkMode>> = { bridge: bridgeMode, overlay: overlayMode }
const PLANNED: Record<string, string> = {
  macvlan: 'macvlan mode is not available in this version of tsnet',
}

/**
 * The mode `-o tsnet.mode=` asks for; without it `fallback` (bridge, or overlay for a plugin in
 * global scope, whose networks span the hosts of a swarm).
 */
export function modeFor(generic: Readonly<Record<string, string>>, fallback: ModeName = 'bridge'): NetworkMode {
  const name = generic[COMMON_OPTION.mode] ?? fallback
  const mode = MODES[name as ModeName]
  if (mode) return mode
  const planned = PLANNED[name]
  if (planned) throw invalid(`${COMMON_OPTION.mode}=${name}: ${planned}`)
  throw invalid(`${COMMON_OPTION.mode}=${quote(name)} is not a mode tsnet knows; it knows ${Object.keys(MODES).join(', ')}`)
}

/** The mode of a stored network. */
export function modeOf(n: NetworkRecord): NetworkMode {
  const mode = MODES[n.mode]
  if (!mode) throw invalid(`network ${n.id.slice(0, 12)} has mode ${n.mode}, which this version of tsnet cannot serve`)
  return mode
}
