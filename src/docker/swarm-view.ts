/**
 * What overlay mode reads from Docker's API, in the background only: a swarm network's peers
 * (the nodes that have it, from Docker's gossip: the list survives a plugin restart, unlike
 * DiscoverNew) and the services on it that use a VIP, which nothing answers on a plugin network.
 */
import Docker from 'dockerode'

export interface SwarmNetworkView {
  /** Undefined when Docker does not know the network (yet, or any more). */
  network(id: string): Promise<{ peers: string[]; vipServices: string[] } | undefined>
}

interface RawSwarmNetwork {
  Peers?: Array<{ Name?: string; IP?: string }> | null
  Services?: Record<string, { VIP?: string }> | null
}

export class DockerodeSwarmView implements SwarmNetworkView {
  private readonly docker: Docker

  constructor(host: string, timeoutMs = 5000) {
    this.docker = new Docker({ socketPath: host.replace(/^unix:\/\//, ''), timeout: timeoutMs })
  }

  async network(id: string): Promise<{ peers: string[]; vipServices: string[] } | undefined> {
    let raw: RawSwarmNetwork
    try {
      // dockerode passes options as the query string; its types omit them for networks.
      const network = this.docker.getNetwork(id) as unknown as { inspect(opts: { verbose: boolean }): Promise<unknown> }
      raw = (await network.inspect({ verbose: true })) as RawSwarmNetwork
    } catch (err) {
      if ((err as { statusCode?: number }).statusCode === 404) return undefined
      throw err
    }
    const peers = (raw.Peers ?? []).flatMap((p) => (p.IP ? [p.IP] : []))
    const vipServices = Object.entries(raw.Services ?? {}).flatMap(([name, s]) => (name !== '' && s.VIP && s.VIP !== '<nil>' ? [name] : []))
    return { peers, vipServices }
  }
}
