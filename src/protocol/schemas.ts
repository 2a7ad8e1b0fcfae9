/**
 * JSON schemas for request bodies, checked by fastify before a handler runs. They pin down
 * types only; meaning (valid CIDRs, names, ranges) is checked by the core with clearer errors.
 */
const str = { type: 'string', maxLength: 4096 } as const
const id = { type: 'string', minLength: 1, maxLength: 64 } as const
const optionalObject = { type: ['object', 'null'] } as const
const stringMap = { type: ['object', 'null'], additionalProperties: { type: 'string', maxLength: 4096 } } as const

const ipamData = {
  type: 'object',
  required: ['Pool'],
  properties: {
    AddressSpace: str,
    Pool: str,
    Gateway: str,
    AuxAddresses: stringMap,
  },
} as const
const ipamList = { type: ['array', 'null'], maxItems: 64, items: ipamData } as const

export const networkRef = { type: 'object', required: ['NetworkID'], properties: { NetworkID: id } } as const
export const endpointRef = {
  type: 'object',
  required: ['NetworkID', 'EndpointID'],
  properties: { NetworkID: id, EndpointID: id },
} as const

export const createNetwork = {
  type: 'object',
  required: ['NetworkID'],
  properties: { NetworkID: id, Options: optionalObject, IPv4Data: ipamList, IPv6Data: ipamList },
} as const

export const allocateNetwork = {
  type: 'object',
  required: ['NetworkID'],
  properties: { NetworkID: id, Options: stringMap, IPv4Data: ipamList, IPv6Data: ipamList },
} as const

export const createEndpoint = {
  type: 'object',
  required: ['NetworkID', 'EndpointID'],
  properties: {
    NetworkID: id,
    EndpointID: id,
    Interface: {
      type: ['object', 'null'],
      properties: { Address: str, AddressIPv6: str, MacAddress: str },
    },
    Options: optionalObject,
  },
} as const

export const join = {
  type: 'object',
  required: ['NetworkID', 'EndpointID', 'SandboxKey'],
  properties: { NetworkID: id, EndpointID: id, SandboxKey: str, Options: optionalObject },
} as const

export const connectivity = {
  type: 'object',
  required: ['NetworkID', 'EndpointID'],
  properties: { NetworkID: id, EndpointID: id, Options: optionalObject },
} as const

export const discovery = {
  type: 'object',
  required: ['DiscoveryType'],
  properties: { DiscoveryType: { type: 'integer' } },
} as const

export const requestPool = {
  type: 'object',
  required: ['AddressSpace'],
  properties: {
    AddressSpace: str,
    Pool: str,
    SubPool: str,
    Options: stringMap,
    V6: { type: 'boolean' },
  },
} as const

export const requestAddress = {
  type: 'object',
  required: ['PoolID'],
  properties: { PoolID: str, Address: str, Options: stringMap },
} as const

export const releaseAddress = {
  type: 'object',
  required: ['PoolID', 'Address'],
  properties: { PoolID: str, Address: str },
} as const

export const releasePool = { type: 'object', required: ['PoolID'], properties: { PoolID: str } } as const

/** tsnet's own call (not Docker's): show a network's policy, or replace it when Allow is given. */
export const policy = {
  type: 'object',
  properties: { Network: { type: 'string', minLength: 1, maxLength: 128 }, Allow: str },
  additionalProperties: false,
} as const

/** tsnet's own call: compare the host with the records (DryRun: only report), as doctor and tests do. */
export const reconcile = {
  type: 'object',
  properties: { DryRun: { type: 'boolean' } },
  additionalProperties: false,
} as const

/** tsnet's own call: the running daemon's health (`tsnet status`). */
export const status = {
  type: 'object',
  properties: {},
  additionalProperties: false,
} as const

/** tsnet's own call: one garbage collection pass now (`tsnet doctor --fix`); DryRun only reports. */
export const collect = {
  type: 'object',
  properties: { DryRun: { type: 'boolean' } },
  additionalProperties: false,
} as const
