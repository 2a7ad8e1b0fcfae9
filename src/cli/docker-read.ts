/** What the commands read from Docker's API when the operator gave one (never the daemon's request path). */
import type { DockerSnapshot, NamedNetwork } from '../core/docker-facts.js'
import { errorMessage } from '../errors.js'

/** A command waits this long for Docker before it says Docker did not answer. */
const DOCKER_TIMEOUT_MS = 5_000

export interface DockerRead {
  names?: NamedNetwork[]
  snapshot?: DockerSnapshot
  error?: string
}

/** Docker's networks, and an inspection of those `inspect` picks; an error is returned, not thrown. */
export async function readDocker(dockerHost: string, inspect: (n: { id: string; subnets: string[] }) => boolean): Promise<DockerRead> {
  try {
    const { DockerodeView } = await import('../docker/docker-view.js')
    const view = new DockerodeView(dockerHost, DOCKER_TIMEOUT_MS)
    const names = await view.listNetworks()
    const snapshot = await view.snapshot(inspect)
    return { names, snapshot }
  } catch (err) {
    return { error: `${dockerHost} did not answer: ${errorMessage(err)}` }
  }
}
