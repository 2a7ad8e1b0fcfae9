/** The modes tsnet knows, and which one a network's options choose. */
import { invalid, quote } from '../errors.js'
import { COMMON_OPTION } from '../core/docker-keys.js'
import type { HostFacts } from '../core/host-facts.js'
import type { ModeName, NetworkRecord } from '../core/records.js'
import { bridgeMode } from './bridge.js'
import { CLUSTER_OPTION, clusterMode } from './cluster.js'
import { macvlanMode } from './macvlan.js'
import type { NetworkMode } from './mode.js'
import { overlayMode } from './overlay.js'

const MODES: Partial<Record<ModeName, NetworkMode>> = { bridge: bridgeMode, macvlan: macvlanMode, overlay: overlayMode, cluster: clusterMode }
/** Modes asked for that tsnet does not serve, and why (some depend on what the kernel has). */
const PLANNED: Record<string, (facts: HostFacts | undefined) => string> = {
  ipvlan: (facts) => facts && !facts.linkKinds.has('ipvlan')
    ? 'this kernel has no ipvlan support (it refuses to create an ipvlan link: operation not supported), so tsnet cannot offer ipvlan mode here; tsnet.mode=macvlan gives containers addresses on the LAN too'
    : 'ipvlan mode is not available in this version of tsnet (docs/macvlan.md says what it would take); tsnet.mode=macvlan gives containers addresses on the LAN too',
}

/**
 * The mode `-o tsnet.mode=` asks for; without it cluster when `-o tsnet.overlay` names a cluster
 * network, else `fallback` (bridge, or overlay for a plugin in global scope, whose networks span
 * the hosts of a swarm). `facts` let a refusal give the kernel's reason.
 */
export function modeFor(generic: Readonly<Record<string, string>>, fallback: ModeName = 'bridge', facts?: HostFacts): NetworkMode {
  const cluster = generic[CLUSTER_OPTION.name] !== undefined
  const name = generic[COMMON_OPTION.mode] ?? (cluster ? 'cluster' : fallback)
  if (cluster && name !== 'cluster') {
    throw invalid(`${CLUSTER_OPTION.name} makes a cluster network, which is a mode of its own: leave out ${COMMON_OPTION.mode}=${name}`)
  }
  const mode = Object.hasOwn(MODES, name) ? MODES[name as ModeName] : undefined
  if (mode) return mode
  const planned = Object.hasOwn(PLANNED, name) ? PLANNED[name] : undefined
  if (planned) throw invalid(`${COMMON_OPTION.mode}=${name}: ${planned(facts)}`)
  throw invalid(`${COMMON_OPTION.mode}=${quote(name)} is not a mode tsnet knows; it knows ${Object.keys(MODES).join(', ')}`)
}

/** The mode of a stored network. */
export function modeOf(n: NetworkRecord): NetworkMode {
  const mode = Object.hasOwn(MODES, n.mode) ? MODES[n.mode] : undefined
  if (!mode) throw invalid(`network ${n.id.slice(0, 12)} has mode ${n.mode}, which this version of tsnet cannot serve`)
  return mode
}
