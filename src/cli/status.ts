/**
 * `tsnet status`: networks, containers, published ports and health, whether the daemon runs or
 * not. The store is read read-only; health only the daemon knows comes from it over its socket;
 * names come from Docker's API when the operator gave one, else from the daemon's cached copy.
 */
import type { Config } from '../config.js'
import { statusModel, type NamesSource, type StatusModel } from '../observe/status-view.js'
import { statusText } from '../observe/status-text.js'
import { type Command, SHARED_SETTINGS } from './command.js'
import { readDocker } from './docker-read.js'
import { askDaemon, readStore } from './state-read.js'

export const statusCommand: Command = {
  name: 'status',
  synopsis: 'tsnet status [--json]',
  summary: 'networks, containers, published ports and health',
  usage: `usage: tsnet status [--json]
  Reads the store (read-only; it never takes the daemon's lock) and asks the daemon, if it answers
  on --socket, for what only it knows: the last reconcile, garbage collection, Docker's API.
  With --docker-host, container and network names come from Docker; else from the daemon's copy.
  --json   the same as one JSON document, for scripts

${SHARED_SETTINGS}`,
  options: { json: { type: 'boolean' } },
  async run({ config, values }) {
    const model = await readStatusModel(config)
    console.log(values.json ? JSON.stringify(model, null, 2) : statusText(model, Date.now()))
    return 0
  },
}

/** What `tsnet status` (and `tsnet topology`) show: the store, the daemon's health, Docker's names. */
export async function readStatusModel(config: Config): Promise<StatusModel> {
  const stored = await readStore(config.stateDir)
  const daemon = await askDaemon(config.socket)
  const ours = new Set(stored.networks.map((n) => n.id))
  let names: { source: NamesSource; networks: typeof stored.cachedNames; error?: string } =
    { source: stored.cachedNames.length ? 'cache' : 'none', networks: stored.cachedNames }
  const containers = new Map<string, string>()
  if (config.dockerHost !== undefined) {
    const docker = await readDocker(config.dockerHost, (n) => ours.has(n.id))
    if (docker.names) names = { source: 'docker', networks: docker.names }
    else if (docker.error) names = { ...names, error: docker.error }
    for (const n of docker.snapshot?.networks ?? []) {
      for (const e of n.endpoints ?? []) if (e.container) containers.set(e.endpointId, e.container)
    }
  }
  return statusModel({
    stateDir: config.stateDir, ...stored, names, containers, daemon,
    ...(stored.pinnedEngine ? { pinnedEngine: stored.pinnedEngine } : {}),
  })
}
