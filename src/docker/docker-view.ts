/**
 * What tsnet reads from Docker: only for garbage collection, in the background, never on a
 * request's path (Docker serves its API only after restarting containers, which need tsnet).
 */
import Docker from 'dockerode'

import type { DockerIpamConfig, DockerNetwork, DockerSnapshot, NamedNetwork } from '../core/docker-facts.js'
export type { DockerEndpoint, DockerIpamConfig, DockerNetwork, DockerSnapshot, NamedNetwork } from '../core/docker-facts.js'

export interface DockerView {
  /** Reads Docker's networks, inspecting those for which `inspect(id, subnets)` says so. */
  snapshot(inspect: (network: { id: string; subnets: string[] }) => boolean): Promise<DockerSnapshot>
  /** Names, drivers and subnets of every network. */
  listNetworks(): Promise<NamedNetwork[]>
  /** Calls `onEvent` for each network event until the stream ends; resolves when it does. */
  watchNetworkEvents(onEvent: () => void): Promise<void>
}

interface RawIpamConfig {
  Subnet?: string
  IPRange?: string
  Gateway?: string
  AuxiliaryAddresses?: Record<string, string> | null
}
interface RawNetwork {
  Id: string
  Name?: string
  Driver?: string
  Scope?: string
  IPAM?: { Config?: RawIpamConfig[] | null }
  Containers?: Record<string, { Name?: string; EndpointID?: string; IPv4Address?: string; IPv6Address?: string }> | null
}

const ipamOf = (n: RawNetwork): DockerIpamConfig[] =>
  (n.IPAM?.Config ?? []).flatMap((c) => (c.Subnet ? [{
    subnet: c.Subnet,
    ...(c.IPRange ? { ipRange: c.IPRange } : {}),
    ...(c.Gateway ? { gateway: c.Gateway } : {}),
    auxAddresses: Object.values(c.AuxiliaryAddresses ?? {}),
  }] : []))

export class DockerodeView implements DockerView {
  private readonly docker: Docker
  private readonly streamer: Docker

  /** `host` is unix:///path; each API call gives up after `timeoutMs`. */
  constructor(host: string, timeoutMs = 5000) {
    const socketPath = host.replace(/^unix:\/\//, '')
    this.docker = new Docker({ socketPath, timeout: timeoutMs })
    this.streamer = new Docker({ socketPath })
  }

  async snapshot(inspect: (network: { id: string; subnets: string[] }) => boolean): Promise<DockerSnapshot> {
    const info = (await this.docker.info()) as { ID?: string }
    if (!info.ID) throw new Error('Docker did not say its engine ID')
    const list = (await this.docker.listNetworks()) as RawNetwork[]
    const networks: DockerNetwork[] = []
    for (const n of list) {
      const ipam = ipamOf(n)
      const net: DockerNetwork = { id: n.Id, scope: n.Scope ?? 'local', ipam }
      if (inspect({ id: n.Id, subnets: ipam.map((c) => c.subnet) })) {
        const full = (await this.docker.getNetwork(n.Id).inspect()) as RawNetwork
        net.endpoints = Object.values(full.Containers ?? {}).flatMap((c) => (c.EndpointID ? [{
          endpointId: c.EndpointID,
          ...(c.Name ? { container: c.Name } : {}),
          ...(c.IPv4Address ? { ipv4: c.IPv4Address } : {}),
          ...(c.IPv6Address ? { ipv6: c.IPv6Address } : {}),
        }] : []))
      }
      networks.push(net)
    }
    return { engineId: info.ID, networks }
  }

  async listNetworks(): Promise<NamedNetwork[]> {
    const list = (await this.docker.listNetworks()) as RawNetwork[]
    return list.map((n) => ({ id: n.Id, name: n.Name ?? '', driver: n.Driver ?? '', subnets: ipamOf(n).map((c) => c.subnet) }))
  }

  async watchNetworkEvents(onEvent: () => void): Promise<void> {
    // No timeout here: the stream stays open for as long as Docker runs.
    const stream = (await this.streamer.getEvents({ filters: { type: ['network'] } })) as NodeJS.ReadableStream
    await new Promise<void>((resolve) => {
      stream.on('data', () => onEvent())
      stream.on('end', () => resolve())
      stream.on('error', () => resolve())
      stream.on('close', () => resolve())
    })
  }
}
