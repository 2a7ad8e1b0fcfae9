/** Docker's remote driver wire types, field for field as Docker sends them (PascalCase). */

export interface IpamData {
  AddressSpace?: string
  Pool: string
  Gateway?: string
  AuxAddresses?: Record<string, string> | null
}

/** A network with the pools IPAM gave it, as CreateNetwork and AllocateNetwork both carry it. */
interface NetworkWithPools {
  NetworkID: string
  IPv4Data?: IpamData[] | null
  IPv6Data?: IpamData[] | null
}

export interface CreateNetworkRequest extends NetworkWithPools {
  Options?: Record<string, unknown> | null
}

export interface NetworkRef {
  NetworkID: string
}

export interface EndpointRef {
  NetworkID: string
  EndpointID: string
}

export interface EndpointInterface {
  Address?: string
  AddressIPv6?: string
  MacAddress?: string
}

export interface CreateEndpointRequest extends EndpointRef {
  Interface?: EndpointInterface | null
  Options?: Record<string, unknown> | null
}

export interface JoinRequest extends EndpointRef {
  SandboxKey: string
  Options?: Record<string, unknown> | null
}

export interface ConnectivityRequest extends EndpointRef {
  Options?: Record<string, unknown> | null
}

export interface AllocateNetworkRequest extends NetworkWithPools {
  Options?: Record<string, string> | null
}

export interface DiscoveryRequest {
  DiscoveryType: number
  DiscoveryData?: unknown
}

export interface JoinResponse {
  InterfaceName: { SrcName: string; DstPrefix: string }
  Gateway?: string
  GatewayIPv6?: string
  StaticRoutes?: Array<{ Destination: string; RouteType: number; NextHop?: string }>
  DisableGatewayService?: boolean
}

export interface RequestPoolRequest {
  AddressSpace: string
  Pool?: string
  SubPool?: string
  Options?: Record<string, string> | null
  V6?: boolean
}

export interface RequestAddressRequest {
  PoolID: string
  Address?: string
  Options?: Record<string, string> | null
}

export interface ReleaseAddressRequest {
  PoolID: string
  Address: string
}

export interface ReleasePoolRequest {
  PoolID: string
}

/** Option keys Docker puts in CreateNetwork/CreateEndpoint/Join (defined with the planning code that reads them). */
export { OPT } from '../core/docker-keys.js'
