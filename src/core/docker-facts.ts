/** What tsnet learns from Docker's API (in the background), as plain data the pure code can judge. */

export interface DockerIpamConfig {
  subnet: string
  ipRange?: string
  gateway?: string
  auxAddresses: string[]
}

export interface DockerEndpoint {
  endpointId: string
  /** The container's name, as `docker ps` shows it. */
  container?: string
  ipv4?: string
  ipv6?: string
}

export interface DockerNetwork {
  id: string
  scope: string
  ipam: DockerIpamConfig[]
  /** Present when the network was inspected (tsnet's own networks, and those holding tsnet pools). */
  endpoints?: DockerEndpoint[]
}

export interface DockerSnapshot {
  engineId: string
  networks: DockerNetwork[]
}

/** A network as `docker network ls` knows it: what policies name, and what isolation keeps apart. */
export interface NamedNetwork {
  id: string
  name: string
  driver: string
  subnets: string[]
}
