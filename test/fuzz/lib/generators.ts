/**
 * Generators of Docker requests, all starting from the recorded request bodies in
 * test/fixtures/wire (every method Docker calls), retargeted to the small universe of
 * universe.ts and then:
 *  - valid:     what Docker would send in some state (whether it is accepted depends on the state);
 *  - semantic:  well-formed JSON of the right types that passes the schema, with a wrong meaning
 *               (bad CIDRs, gateways outside pools, bad MACs/MTUs/bridge names/ports, unknown or
 *               mismatched objects, clashing names, overlaps, …), so it reaches the planner/services;
 *  - malformed: structural mutations (wrong types, missing/extra fields, null, huge strings, odd
 *               unicode, odd numbers, deep nesting, arrays for objects, invalid JSON, odd bytes,
 *               oversized bodies, other verbs/URLs/content types).
 * Every choice is an integer index into a list, so fast-check shrinks towards the first (simplest)
 * entry of every list.
 */
import fc from 'fast-check'
import { cloneBody, listScenarios, loadScenarios, type Json } from '../../fixtures/wire/loader.js'
import {
  type Kind, type Op, type Step, type TextMut, deep, huge, leasePoolRef, leaseRef, numTok, poolRef, UNITS,
} from './ops.js'
import {
  EPS, NETS, POOLS_V4, POOLS_V6, PREFERRED, SUBPOOLS, UNKNOWN_EP, UNKNOWN_NET, epV4, epV6, gwV4, gwV6, netV4, netV6, userBridge,
} from './universe.js'

type Obj = { [k: string]: Json }
const isObj = (v: Json | undefined): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v)
const pick = <T>(list: readonly T[], n: number): T => list[n % list.length] as T

// ---------------------------------------------------------------- the recorded bodies

export const NETWORK_METHODS = [
  'Plugin.Activate', 'NetworkDriver.GetCapabilities', 'NetworkDriver.CreateNetwork', 'NetworkDriver.DeleteNetwork',
  'NetworkDriver.AllocateNetwork', 'NetworkDriver.FreeNetwork', 'NetworkDriver.CreateEndpoint', 'NetworkDriver.EndpointOperInfo',
  'NetworkDriver.DeleteEndpoint', 'NetworkDriver.Join', 'NetworkDriver.Leave', 'NetworkDriver.ProgramExternalConnectivity',
  'NetworkDriver.RevokeExternalConnectivity', 'NetworkDriver.DiscoverNew', 'NetworkDriver.DiscoverDelete',
] as const
export const IPAM_METHODS = [
  'IpamDriver.GetCapabilities', 'IpamDriver.GetDefaultAddressSpaces', 'IpamDriver.RequestPool', 'IpamDriver.ReleasePool',
  'IpamDriver.RequestAddress', 'IpamDriver.ReleaseAddress',
] as const
export const METHODS: readonly string[] = [...NETWORK_METHODS, ...IPAM_METHODS]

function loadRecorded(): Record<string, Json[]> {
  const out: Record<string, Json[]> = {}
  const seen = new Set<string>()
  for (const call of loadScenarios(...listScenarios())) {
    const key = `${call.method} ${JSON.stringify(call.body)}`
    if (seen.has(key)) continue
    seen.add(key)
    ;(out[call.method] ??= []).push(call.body)
  }
  // Docker 20.10 never sent DiscoverDelete in the recordings; it has DiscoverNew's shape.
  out['NetworkDriver.DiscoverDelete'] ??= (out['NetworkDriver.DiscoverNew'] ?? []).map(cloneBody)
  for (const m of METHODS) if (!out[m]?.length) throw new Error(`no recorded body for ${m}`)
  return out
}

export const RECORDED = loadRecorded()

const recorded = (method: string, r: number): Json => cloneBody(pick(RECORDED[method] as Json[], r))
const recordedObj = (method: string, r: number): Obj => {
  const b = recorded(method, r)
  return isObj(b) ? b : {}
}

// ---------------------------------------------------------------- retargeting to the universe

const GENERIC = 'com.docker.network.generic'
const OPT_V6 = 'com.docker.network.enable_ipv6'
const OPT_INTERNAL = 'com.docker.network.internal'
const OPT_MTU = 'com.docker.network.driver.mtu'
const OPT_BRIDGE = 'com.docker.network.bridge.name'
const OPT_ICC = 'com.docker.network.bridge.enable_icc'
const OPT_MASQ = 'com.docker.network.bridge.enable_ip_masquerade'
const OPT_PREFIX = 'com.docker.network.container_iface_prefix'
const PORTMAP = 'com.docker.network.portmap'
const EXPOSED = 'com.docker.network.endpoint.exposedports'

function fixIpamList(list: Json | undefined, pool: string, gw: string): Json | undefined {
  if (!Array.isArray(list)) return list
  return list.map((d) => {
    if (!isObj(d)) return d
    const out: Obj = { ...d, Pool: pool }
    if ('Gateway' in d) out.Gateway = gw
    if (d.AddressSpace === 'labnet-local') out.AddressSpace = 'LocalDefault'
    if (isObj(d.AuxAddresses)) out.AuxAddresses = {}
    return out
  })
}

/** A recorded CreateNetwork/AllocateNetwork body made about NETS[i] and its subnets. */
function networkBody(method: string, r: number, i: number): Obj {
  const b = recordedObj(method, r)
  b.NetworkID = pick(NETS, i)
  const v4 = fixIpamList(b.IPv4Data, netV4(i % NETS.length), gwV4(i % NETS.length))
  const v6 = fixIpamList(b.IPv6Data, netV6(i % NETS.length), gwV6(i % NETS.length))
  if (v4 !== undefined) b.IPv4Data = v4
  if (v6 !== undefined) b.IPv6Data = v6
  if (isObj(b.Options) && isObj(b.Options[GENERIC]) && method === 'NetworkDriver.CreateNetwork') b.Options = { ...b.Options, [GENERIC]: {} }
  return b
}

/** A recorded endpoint-level body made about EPS[j] in NETS[i]. */
function endpointBody(method: string, r: number, i: number, j: number): Obj {
  const b = recordedObj(method, r)
  b.NetworkID = pick(NETS, i)
  b.EndpointID = pick(EPS, j)
  const iface = b.Interface
  if (isObj(iface)) {
    const ni = i % NETS.length
    const ej = j % EPS.length
    b.Interface = {
      ...iface,
      ...(typeof iface.Address === 'string' && iface.Address !== '' ? { Address: epV4(ni, ej) } : {}),
      ...(typeof iface.AddressIPv6 === 'string' && iface.AddressIPv6 !== '' ? { AddressIPv6: epV6(ni, ej) } : {}),
    }
  }
  if ('SandboxKey' in b) b.SandboxKey = `/var/run/docker/netns/${(0xabc000000000 + i * 16 + j).toString(16)}`
  return b
}

// ---------------------------------------------------------------- valid requests

const nat = (max = 1_000_000) => fc.nat({ max })
const NETWORK_VARIANTS = ['recorded', 'mtu', 'bridge', 'icc', 'prefix', 'internal', 'ipv6', 'masq'] as const

const validCreateNetwork = fc.record({ r: nat(), i: nat(), v: nat() }).map(({ r, i, v }): Op => {
  const b = networkBody('NetworkDriver.CreateNetwork', r, i)
  const ni = i % NETS.length
  const variant = pick(NETWORK_VARIANTS, v)
  const opts: Obj = isObj(b.Options) ? { ...b.Options } : {}
  const generic: Obj = isObj(opts[GENERIC]) ? { ...(opts[GENERIC] as Obj) } : {}
  if (variant === 'mtu') generic[OPT_MTU] = pick(['1400', '9000', '1280', '68'], v >> 3)
  if (variant === 'bridge') generic[OPT_BRIDGE] = userBridge(ni)
  if (variant === 'icc') generic[OPT_ICC] = 'false'
  if (variant === 'masq') generic[OPT_MASQ] = 'true'
  if (variant === 'prefix') generic[OPT_PREFIX] = 'eth'
  if (variant === 'internal') opts[OPT_INTERNAL] = true
  if (variant === 'ipv6') {
    opts[OPT_V6] = true
    b.IPv6Data = [{ AddressSpace: 'LocalDefault', Gateway: gwV6(ni), Pool: netV6(ni) }]
  }
  opts[GENERIC] = generic
  b.Options = opts
  return { method: 'NetworkDriver.CreateNetwork', kind: 'valid', tag: `valid:CreateNetwork:${variant}`, body: b }
})

/** Endpoint j mostly lives in network j mod 4 (its "home"), so that valid calls line up. */
const homeNet = fc.record({ j: nat(), away: nat(3), other: nat() }).map(({ j, away, other }) => ({ j, i: away === 0 ? other : j % NETS.length }))

const validCreateEndpoint = fc.record({ r: nat(), ij: homeNet, v6: fc.boolean(), mac: nat(3) }).map(({ r, ij: { i, j }, v6, mac }): Op => {
  const b = endpointBody('NetworkDriver.CreateEndpoint', r, i, j)
  const ni = i % NETS.length
  const ej = j % EPS.length
  const iface = isObj(b.Interface) ? b.Interface : {}
  iface.Address = epV4(ni, ej)
  iface.AddressIPv6 = v6 ? epV6(ni, ej) : ''
  if (mac === 1) iface.MacAddress = `02:42:0a:${(200 + ni).toString(16)}:00:${(10 + ej).toString(16).padStart(2, '0')}`
  else if (mac !== 3 || typeof iface.MacAddress !== 'string') iface.MacAddress = ''
  b.Interface = iface
  return { method: 'NetworkDriver.CreateEndpoint', kind: 'valid', tag: 'valid:CreateEndpoint', body: b }
})

const endpointCall = (method: string) =>
  fc.record({ r: nat(), ij: homeNet }).map(({ r, ij: { i, j } }): Op => ({
    method, kind: 'valid', tag: `valid:${method.split('.')[1]}`, body: endpointBody(method, r, i, j),
  }))

const networkCall = (method: string) =>
  fc.record({ r: nat(), i: nat() }).map(({ r, i }): Op => ({ method, kind: 'valid', tag: `valid:${method.split('.')[1]}`, body: networkBody(method, r, i) }))

const recordedCall = (method: string) =>
  nat().map((r): Op => ({ method, kind: 'valid', tag: `valid:${method.split('.')[1]}`, body: recorded(method, r) }))

const validRequestPool = fc.record({ r: nat(), space: nat(), how: nat(), p: nat(), opt: nat() }).map(({ r, space, how, p, opt }): Op => {
  const b = recordedObj('IpamDriver.RequestPool', r)
  b.AddressSpace = pick(['LocalDefault', 'LocalDefault', 'GlobalDefault'], space)
  const mode = pick(['v4', 'auto4', 'v6', 'sub', 'auto6', 'size4', 'size6'], how)
  b.SubPool = ''
  b.V6 = false
  if (mode === 'v4') b.Pool = pick(POOLS_V4, p)
  if (mode === 'auto4') b.Pool = ''
  if (mode === 'v6') Object.assign(b, { Pool: pick(POOLS_V6, p), V6: true })
  if (mode === 'auto6') Object.assign(b, { Pool: '', V6: true })
  if (mode === 'size4') b.Pool = pick(['0.0.0.0/24', '0.0.0.0/28', '0.0.0.0/16'], p)
  if (mode === 'size6') Object.assign(b, { Pool: pick(['::/64', '::/120', '::/56'], p), V6: true })
  if (mode === 'sub') {
    const [pool, sub] = pick(SUBPOOLS, p)
    Object.assign(b, { Pool: pool, SubPool: sub, V6: pool.includes(':') })
  }
  b.Options = pick<Json>([b.Options ?? null, null, {}], opt)
  return { method: 'IpamDriver.RequestPool', kind: 'valid', tag: `valid:RequestPool:${mode}`, body: b }
})

const validRequestAddress = fc.record({ r: nat(), k: nat(8), pref: nat(), opt: nat() }).map(({ r, k, pref, opt }): Op => {
  const b = recordedObj('IpamDriver.RequestAddress', r)
  b.PoolID = poolRef(k)
  b.Address = pref % 3 === 0 ? pick(PREFERRED, pref) : ''
  b.Options = pick<Json>([null, { RequestAddressType: 'com.docker.network.gateway' }, { 'com.docker.network.endpoint.name': 'c1' }, {}], opt)
  return { method: 'IpamDriver.RequestAddress', kind: 'valid', tag: 'valid:RequestAddress', body: b }
})

const validReleaseAddress = fc.record({ r: nat(), k: nat(8), mask: fc.boolean() }).map(({ r, k, mask }): Op => {
  const b = recordedObj('IpamDriver.ReleaseAddress', r)
  b.PoolID = leasePoolRef(k)
  b.Address = leaseRef(k, mask)
  return { method: 'IpamDriver.ReleaseAddress', kind: 'valid', tag: 'valid:ReleaseAddress', body: b }
})

const validReleasePool = fc.record({ r: nat(), k: nat(8) }).map(({ r, k }): Op => {
  const b = recordedObj('IpamDriver.ReleasePool', r)
  b.PoolID = poolRef(k)
  return { method: 'IpamDriver.ReleasePool', kind: 'valid', tag: 'valid:ReleasePool', body: b }
})

/**
 * Short valid stories, as Docker tells them: `docker network create` then `docker run` (CreateNetwork,
 * CreateEndpoint, Join, ProgramExternalConnectivity), or an IPAM pool with a gateway and addresses.
 * They build the state that the other requests then try to corrupt.
 */
export const storyArb: fc.Arbitrary<Op[]> = fc.oneof(
  { weight: 10, arbitrary: fc.record({ net: validCreateNetwork, r: nat(), j: nat(), v6: fc.boolean(), upTo: nat(6) }).map(({ net, r, j, v6, upTo }): Op[] => {
    const id = (net.body as Obj).NetworkID
    const i = Math.max(0, NETS.indexOf(id as (typeof NETS)[number]))
    const ipv6 = Array.isArray((net.body as Obj).IPv6Data) && ((net.body as Obj).IPv6Data as Json[]).length > 0 && v6
    const ep = endpointBody('NetworkDriver.CreateEndpoint', r, i, j)
    ep.Interface = { Address: epV4(i, j % EPS.length), AddressIPv6: ipv6 ? epV6(i, j % EPS.length) : '', MacAddress: '' }
    const tag = (m: string) => `valid:story:${m}`
    return [
      { ...net, tag: tag('CreateNetwork') },
      { method: 'NetworkDriver.CreateEndpoint', kind: 'valid', tag: tag('CreateEndpoint'), body: ep },
      { method: 'NetworkDriver.Join', kind: 'valid', tag: tag('Join'), body: endpointBody('NetworkDriver.Join', r, i, j) },
      { method: 'NetworkDriver.ProgramExternalConnectivity', kind: 'valid', tag: tag('ProgramExternalConnectivity'), body: endpointBody('NetworkDriver.ProgramExternalConnectivity', r, i, j) },
      // docker rm:
      { method: 'NetworkDriver.RevokeExternalConnectivity', kind: 'valid', tag: tag('RevokeExternalConnectivity'), body: endpointBody('NetworkDriver.RevokeExternalConnectivity', r, i, j) },
      { method: 'NetworkDriver.Leave', kind: 'valid', tag: tag('Leave'), body: endpointBody('NetworkDriver.Leave', r, i, j) },
      { method: 'NetworkDriver.DeleteEndpoint', kind: 'valid', tag: tag('DeleteEndpoint'), body: endpointBody('NetworkDriver.DeleteEndpoint', r, i, j) },
      { method: 'NetworkDriver.DeleteNetwork', kind: 'valid', tag: tag('DeleteNetwork'), body: { NetworkID: id } },
    ].slice(0, 2 + upTo) as Op[]
  }) },
  // A network whose bridge is named like the host or container veth of the endpoint created in it next.
  { weight: 1, arbitrary: fc.record({ r: nat(), i: nat(), j: nat(), end: fc.boolean() }).map(({ r, i, j, end }): Op[] => {
    const ni = i % NETS.length
    const ej = j % EPS.length
    const bridge = `${end ? 'tsc' : 'tsv'}${EPS[ej]!.slice(0, 12).toLowerCase()}`
    const ep = endpointBody('NetworkDriver.CreateEndpoint', r, ni, ej)
    ep.Interface = { Address: epV4(ni, ej), AddressIPv6: '', MacAddress: '' }
    return [
      { method: 'NetworkDriver.CreateNetwork', kind: 'semantic', tag: 'semantic:story:bridge-named-like-a-veth', body: withGeneric(networkBody('NetworkDriver.CreateNetwork', r, ni), { [OPT_BRIDGE]: bridge }) },
      { method: 'NetworkDriver.CreateEndpoint', kind: 'semantic', tag: 'semantic:story:endpoint-whose-veth-is-named-like-the-bridge', body: ep },
    ]
  }) },
  { weight: 6, arbitrary: fc.record({ p: nat(), space: nat(1), n: nat(3) }).map(({ p, space, n }): Op[] => {
    const pool = pick([...POOLS_V4, ...POOLS_V6], p)
    const v6 = pool.includes(':')
    const sp = space ? 'GlobalDefault' : 'LocalDefault'
    const id = `${sp}/${pool}`
    const tag = (m: string) => `valid:story:${m}`
    return [
      { method: 'IpamDriver.RequestPool', kind: 'valid', tag: tag('RequestPool'), body: { AddressSpace: sp, Pool: pool, SubPool: '', Options: {}, V6: v6 } },
      { method: 'IpamDriver.RequestAddress', kind: 'valid', tag: tag('RequestAddress'), body: { PoolID: id, Address: '', Options: { RequestAddressType: 'com.docker.network.gateway' } } },
      ...Array.from({ length: n }, (): Op => ({ method: 'IpamDriver.RequestAddress', kind: 'valid', tag: tag('RequestAddress'), body: { PoolID: id, Address: '', Options: null } })),
    ]
  }) },
)

/** Valid requests, weighted towards those that build state. */
export const validOp: fc.Arbitrary<Op> = fc.oneof(
  { arbitrary: validCreateNetwork, weight: 10 },
  { arbitrary: validCreateEndpoint, weight: 12 },
  { arbitrary: endpointCall('NetworkDriver.Join'), weight: 7 },
  { arbitrary: endpointCall('NetworkDriver.Leave'), weight: 3 },
  { arbitrary: endpointCall('NetworkDriver.DeleteEndpoint'), weight: 4 },
  { arbitrary: endpointCall('NetworkDriver.ProgramExternalConnectivity'), weight: 2 },
  { arbitrary: endpointCall('NetworkDriver.RevokeExternalConnectivity'), weight: 2 },
  { arbitrary: endpointCall('NetworkDriver.EndpointOperInfo'), weight: 2 },
  { arbitrary: networkCall('NetworkDriver.DeleteNetwork'), weight: 3 },
  { arbitrary: networkCall('NetworkDriver.AllocateNetwork'), weight: 1 },
  { arbitrary: networkCall('NetworkDriver.FreeNetwork'), weight: 1 },
  { arbitrary: recordedCall('NetworkDriver.DiscoverNew'), weight: 1 },
  { arbitrary: recordedCall('NetworkDriver.DiscoverDelete'), weight: 1 },
  { arbitrary: recordedCall('NetworkDriver.GetCapabilities'), weight: 1 },
  { arbitrary: recordedCall('Plugin.Activate'), weight: 1 },
  { arbitrary: recordedCall('IpamDriver.GetCapabilities'), weight: 1 },
  { arbitrary: recordedCall('IpamDriver.GetDefaultAddressSpaces'), weight: 1 },
  { arbitrary: validRequestPool, weight: 8 },
  { arbitrary: validRequestAddress, weight: 10 },
  { arbitrary: validReleaseAddress, weight: 4 },
  { arbitrary: validReleasePool, weight: 3 },
)

// ---------------------------------------------------------------- values that are well-typed but wrong

/** IDs the schema accepts (1 to 64 characters) but that are not Docker IDs, or that clash. */
export const ODD_IDS = [
  UNKNOWN_NET, 'x/y', '..', '.', 'a b', 'a\nb', '\u0000', 'caf\u00e9', '\u{1F600}'.repeat(16), '\u202Eabc', '-'.repeat(64),
  NETS[0].toUpperCase(), 'constructor', '__proto__', 'a'.repeat(64), 'tsbr-x', '\ud800', 'ab\tcd', '../../etc/passwd', '%2e%2e',
]
export const BAD_CIDR_V4 = [
  '10.0.0.0/33', '10.0.0.256/24', '10.0.0/24', '10.200.0.0', '', ' 10.200.0.0/24', '10.200.0.0/24 ', '10.200.0.0/-1', '0x0a.0.0.0/8',
  '010.200.0.0/24', '10.200.0.0/24/24', '10.200.0.0\n/24', '\uFF11\uFF10.200.0.0/24', 'fd00::/64', '10.200.0.0/0', '0.0.0.0/0',
  '255.255.255.255/32', '224.0.0.0/4', '127.0.0.0/8', '10.200.0.0/1000', '10.200.0.0/', '10.200.0.0/08', '::ffff:10.200.0.0/120',
]
export const BAD_CIDR_V6 = ['fd00::/129', 'ff02::/16', '::/0', 'fd00::%eth0/64', 'fd00:::/64', '10.200.0.0/24', 'fe80::/64', 'fd00::/64 ', '::ffff:10.0.0.0/104', 'gggg::/64']
export const BAD_GATEWAYS = ['10.99.0.1/24', '10.200.0.1', 'fd00::1/64', 'gateway', '10.200.0.0/24', '10.200.0.255/24', '10.200.0.1/32', '10.200.0.1/16', '224.0.0.1/24', '', '10.200.0.1/33']
export const BAD_MTUS = ['0', '67', '65536', '-1', '1e3', ' 1500', '1500 ', '\uFF11\uFF15\uFF10\uFF10', '0x5dc', '99999999999999999999', '1500.0', '', '00001500', '68', '65535']
export const BAD_BRIDGES = [
  'abcdefghijklmnop', 'br 0', 'br/0', '..', '.', '', 'lo', 'eth0', 'docker0', `tsbr-${NETS[1].slice(0, 10)}`, `tsv${EPS[0].slice(0, 12)}`,
  `tsc${EPS[1].slice(0, 12)}`, 'a:b', 'br\n0', 'br\u00e9', '-j', '--help', 'all', 'default', 'a.b', '...', userBridge(1), '\uFF22R0',
  'br0\u0000', 'up', 'type', '+', 'br*', 'br%d',
]
export const BAD_BOOLS: Json[] = ['yes', '2', 'TRUE ', '', 'maybe', 'tRUE', 1, 0, [], {}, 'on', deep(20_000, 'arr'), [huge(70_000, 'a')]]
export const BAD_PREFIXES = ['ETH', '1eth', 'eth_0', 'a'.repeat(11), '', 'eth-', 'e\u00e9']
export const BAD_MACS = [
  '01:00:5e:00:00:01', '00:00:00:00:00:00', '02:42:0a:09:00', 'zz:zz:zz:zz:zz:zz', '02-42-0a-09-00-03', 'ff:ff:ff:ff:ff:ff',
  '02:42:0a:09:00:03:04', '0242.0a09.0003', ' 02:42:0a:09:00:03', '02:42:0a:09:00:3', '02:42:0A:09:00:03', '03:00:00:00:00:01',
]
export const BAD_EP_ADDRESSES = ['10.99.0.2/24', 'fd00:1::5/64', '10.200.0.5', '10.200.0.5/33', 'abc', '10.200.0.0/24', '10.200.0.255/24', '10.200.0.5/24\n', '::ffff:10.200.0.5/120', '10.200.0.5/8']
export const BAD_PORTMAPS: Json[] = [
  [{ Proto: 99, Port: 80 }], [{ Proto: -1, Port: 80 }], [{ Proto: 6.5, Port: 80 }], [{ Proto: '6', Port: 80 }], [{ Proto: null, Port: 80 }],
  [{ Proto: 6, Port: 0 }], [{ Proto: 6, Port: 70000 }], [{ Proto: 6, Port: -1 }], [{ Proto: 6, Port: 1.5 }], [{ Proto: 6, Port: '80' }],
  [{ Proto: 6, Port: 80, HostPort: 70000 }], [{ Proto: 6, Port: 80, HostPort: 9000, HostPortEnd: 8000 }],
  [{ Proto: 6, Port: 80, HostIP: 'x' }], [{ Proto: 6, Port: 80, HostIP: '1.2.3.4.5' }], [{ Proto: 6, Port: 80, HostIP: 5 }],
  ['tcp/80'], [null], [[]], { Proto: 6 }, 'tcp/80', 7, [{ Proto: 6, Port: deep(20_000, 'arr') }], [{ Proto: 6, Port: 80, HostIP: huge(70_000, 'a') }],
]
export const BAD_SANDBOX = ['', 'a\u0000b', '\u0000', '\n', '../../etc', '\u{1F600}', ' ', '\ud800']
export const ODD_SPACES = ['labnet-local', '', 'localdefault', 'LocalDefault ', 'GlobalDefault\u0000', '__proto__', 'constructor']

/** Sets one field of a body. */
const withField = (b: Obj, key: string, value: Json): Obj => ({ ...b, [key]: value })
const genericOf = (b: Obj): Obj => (isObj(b.Options) && isObj(b.Options[GENERIC]) ? (b.Options[GENERIC] as Obj) : {})
const withGeneric = (b: Obj, extra: Obj): Obj => {
  const opts = isObj(b.Options) ? b.Options : {}
  return { ...b, Options: { ...opts, [GENERIC]: { ...genericOf(b), ...extra } } }
}
const withOption = (b: Obj, key: string, value: Json): Obj => ({ ...b, Options: { ...(isObj(b.Options) ? b.Options : {}), [key]: value } })
const withIface = (b: Obj, extra: Obj): Obj => ({ ...b, Interface: { ...(isObj(b.Interface) ? b.Interface : {}), ...extra } })

type Twist = (b: Obj, n: number, i: number, j: number) => Obj
interface SemanticFamily {
  method: string
  base: (r: number, i: number, j: number) => Obj
  twists: Record<string, Twist>
}

const netBase = (method: string) => (r: number, i: number) => networkBody(method, r, i)
const epBase = (method: string) => (r: number, i: number, j: number) => endpointBody(method, r, i, j)

const endpointRefTwists: Record<string, Twist> = {
  'unknown-endpoint': (b) => withField(b, 'EndpointID', UNKNOWN_EP),
  'unknown-network': (b) => withField(b, 'NetworkID', UNKNOWN_NET),
  'endpoint-of-another-network': (b, n, i) => withField(b, 'NetworkID', pick(NETS, i + 1 + (n % (NETS.length - 1)))),
  'odd-endpoint-id': (b, n) => withField(b, 'EndpointID', pick(ODD_IDS, n)),
  'odd-network-id': (b, n) => withField(b, 'NetworkID', pick(ODD_IDS, n)),
}

const SEMANTIC: SemanticFamily[] = [
  {
    method: 'NetworkDriver.CreateNetwork',
    base: netBase('NetworkDriver.CreateNetwork'),
    twists: {
      'odd-network-id': (b, n) => withField(b, 'NetworkID', pick(ODD_IDS, n)),
      'bad-v4-pool': (b, n) => withField(b, 'IPv4Data', [{ AddressSpace: 'LocalDefault', Pool: pick(BAD_CIDR_V4, n), Gateway: '10.200.0.1/24' }]),
      'bad-v4-pool-no-gateway': (b, n) => withField(b, 'IPv4Data', [{ AddressSpace: 'LocalDefault', Pool: pick(BAD_CIDR_V4, n) }]),
      'bad-v6-pool': (b, n) => withOption(withField(b, 'IPv6Data', [{ AddressSpace: 'LocalDefault', Pool: pick(BAD_CIDR_V6, n), Gateway: 'fd00::1/64' }]), OPT_V6, true),
      'gateway-wrong': (b, n, i) => withField(b, 'IPv4Data', [{ AddressSpace: 'LocalDefault', Pool: netV4(i % NETS.length), Gateway: pick(BAD_GATEWAYS, n).replace('10.200', `10.${200 + (i % NETS.length)}`) }]),
      'aux-outside': (b, n, i) => withField(b, 'IPv4Data', [{ AddressSpace: 'LocalDefault', Pool: netV4(i % NETS.length), Gateway: gwV4(i % NETS.length), AuxAddresses: { [pick(['r', '__proto__', '', 'a b', '\u{1F600}'], n)]: pick(['10.99.0.5/24', '10.200.0.5', 'x', `10.${200 + (i % NETS.length)}.0.5/24`], n >> 3) } }]),
      'overlapping-subnet': (b, n, i) => withField(b, 'IPv4Data', [{ AddressSpace: 'LocalDefault', Pool: netV4((i + 1 + n) % NETS.length), Gateway: gwV4((i + 1 + n) % NETS.length) }]),
      'same-id-other-settings': (b, n, i) => withGeneric(withField(b, 'IPv4Data', [{ AddressSpace: 'LocalDefault', Pool: netV4(i + 1), Gateway: gwV4(i + 1) }]), n % 2 ? { [OPT_MTU]: '1300' } : {}),
      'two-subnets': (b, _n, i) => withField(b, 'IPv4Data', [{ AddressSpace: 'LocalDefault', Pool: netV4(i % NETS.length), Gateway: gwV4(i % NETS.length) }, { AddressSpace: 'LocalDefault', Pool: '10.230.0.0/24', Gateway: '10.230.0.1/24' }]),
      'many-subnets': (b) => withField(b, 'IPv4Data', Array.from({ length: 64 }, (_x, k) => ({ AddressSpace: 'LocalDefault', Pool: `10.240.${k}.0/24`, Gateway: `10.240.${k}.1/24` }))),
      'unknown-option': (b, n) => withGeneric(b, { [pick(['com.example.vlan', 'foo', '', '__proto__', 'com.docker.network.bridge.Name', OPT_MTU.toUpperCase()], n)]: '42' }),
      'bad-mtu': (b, n) => withGeneric(b, { [OPT_MTU]: pick(BAD_MTUS, n) }),
      'mtu-not-string': (b, n) => withGeneric(b, { [OPT_MTU]: pick<Json>([1400, true, null, ['1400'], { v: 1 }, [huge(70_000, 'a')], deep(20_000, 'arr'), deep(5_000, 'obj')], n) }),
      'bad-bridge-name': (b, n) => withGeneric(b, { [OPT_BRIDGE]: pick(BAD_BRIDGES, n) }),
      'bad-icc': (b, n) => withGeneric(b, { [pick([OPT_ICC, OPT_MASQ], n)]: pick(['yes', '2', '', 'TRUE', 'off'], n >> 1) }),
      'bad-iface-prefix': (b, n) => withGeneric(b, { [OPT_PREFIX]: pick(BAD_PREFIXES, n) }),
      'bad-enable-ipv6': (b, n) => withOption(b, OPT_V6, pick(BAD_BOOLS, n)),
      'ipv6-without-pool': (b) => withField(withOption(b, OPT_V6, true), 'IPv6Data', []),
      'bad-internal': (b, n) => withOption(b, OPT_INTERNAL, pick(BAD_BOOLS, n)),
      'generic-not-a-map': (b, n) => withOption(b, GENERIC, pick<Json>(['mtu=1400', 7, ['a'], true], n)),
      'mtu-too-small-for-ipv6': (b, _n, i) => withGeneric(withOption(withField(b, 'IPv6Data', [{ AddressSpace: 'LocalDefault', Pool: netV6(i % NETS.length), Gateway: gwV6(i % NETS.length) }]), OPT_V6, true), { [OPT_MTU]: '1000' }),
    },
  },
  {
    method: 'NetworkDriver.CreateEndpoint',
    base: epBase('NetworkDriver.CreateEndpoint'),
    twists: {
      ...endpointRefTwists,
      'address-wrong': (b, n) => withIface(b, { Address: pick(BAD_EP_ADDRESSES, n) }),
      'v6-address-wrong': (b, n) => withIface(b, { AddressIPv6: pick(['fd00:99::5/64', '10.200.0.5/24', 'fd00:1::5', 'zz::1/64', 'fd00:1::5/129'], n) }),
      'bad-mac': (b, n) => withIface(b, { MacAddress: pick(BAD_MACS, n) }),
      'bad-portmap': (b, n) => withOption(b, PORTMAP, pick(BAD_PORTMAPS, n)),
      'bad-exposed': (b, n) => withOption(b, EXPOSED, pick(BAD_PORTMAPS, n)),
      'portmap-too-long': (b) => withOption(b, PORTMAP, Array.from({ length: 4097 }, () => ({ Proto: 6, Port: 80 }))),
      'same-id-other-address': (b, n, i) => withIface(b, { Address: epV4(i % NETS.length, 40 + (n % 10)) }),
      'interface-null': (b) => withField(b, 'Interface', null),
    },
  },
  {
    method: 'NetworkDriver.Join',
    base: epBase('NetworkDriver.Join'),
    twists: {
      ...endpointRefTwists,
      'bad-sandbox-key': (b, n) => withField(b, 'SandboxKey', pick(BAD_SANDBOX, n)),
      'bad-portmap': (b, n) => withOption(b, PORTMAP, pick(BAD_PORTMAPS, n)),
      'other-sandbox': (b, n) => withField(b, 'SandboxKey', `/var/run/docker/netns/other${n % 7}`),
    },
  },
  { method: 'NetworkDriver.Leave', base: epBase('NetworkDriver.Leave'), twists: endpointRefTwists },
  { method: 'NetworkDriver.DeleteEndpoint', base: epBase('NetworkDriver.DeleteEndpoint'), twists: endpointRefTwists },
  { method: 'NetworkDriver.EndpointOperInfo', base: epBase('NetworkDriver.EndpointOperInfo'), twists: endpointRefTwists },
  { method: 'NetworkDriver.RevokeExternalConnectivity', base: epBase('NetworkDriver.RevokeExternalConnectivity'), twists: endpointRefTwists },
  {
    method: 'NetworkDriver.ProgramExternalConnectivity',
    base: epBase('NetworkDriver.ProgramExternalConnectivity'),
    twists: { ...endpointRefTwists, 'bad-portmap': (b, n) => withOption(b, PORTMAP, pick(BAD_PORTMAPS, n)), 'bad-exposed': (b, n) => withOption(b, EXPOSED, pick(BAD_PORTMAPS, n)) },
  },
  {
    method: 'NetworkDriver.DeleteNetwork',
    base: netBase('NetworkDriver.DeleteNetwork'),
    twists: { 'odd-network-id': (b, n) => withField(b, 'NetworkID', pick(ODD_IDS, n)), 'unknown-network': (b) => withField(b, 'NetworkID', UNKNOWN_NET) },
  },
  {
    method: 'NetworkDriver.FreeNetwork',
    base: netBase('NetworkDriver.FreeNetwork'),
    twists: { 'odd-network-id': (b, n) => withField(b, 'NetworkID', pick(ODD_IDS, n)) },
  },
  {
    method: 'NetworkDriver.AllocateNetwork',
    base: netBase('NetworkDriver.AllocateNetwork'),
    twists: {
      'odd-options': (b, n) => withField(b, 'Options', { [pick(['', '__proto__', 'x'], n)]: pick(['\u0000', '\u{1F600}', 'a\nb'], n >> 2) }),
      'bad-pool': (b, n) => withField(b, 'IPv4Data', [{ AddressSpace: '', Pool: pick(BAD_CIDR_V4, n), Gateway: 'x' }]),
    },
  },
  {
    method: 'NetworkDriver.DiscoverNew',
    base: (r) => recordedObj('NetworkDriver.DiscoverNew', r),
    twists: {
      'odd-type': (b, n) => withField(b, 'DiscoveryType', pick([-1, 0, 2, 999, 2 ** 31, Number.MAX_SAFE_INTEGER], n)),
      'odd-data': (b, n) => withField(b, 'DiscoveryData', pick<Json>([null, 'x', [], { Address: '::' }], n)),
    },
  },
  {
    method: 'NetworkDriver.DiscoverDelete',
    base: (r) => recordedObj('NetworkDriver.DiscoverDelete', r),
    twists: { 'odd-type': (b, n) => withField(b, 'DiscoveryType', pick([-1, 0, 2, 999], n)) },
  },
  {
    method: 'IpamDriver.RequestPool',
    base: (r) => ({ ...recordedObj('IpamDriver.RequestPool', r), AddressSpace: 'LocalDefault', Options: null }),
    twists: {
      'unknown-space': (b, n) => withField(b, 'AddressSpace', pick(ODD_SPACES, n)),
      'bad-pool': (b, n) => withField(b, 'Pool', pick(BAD_CIDR_V4, n)),
      'bad-v6-pool': (b, n) => ({ ...b, Pool: pick(BAD_CIDR_V6, n), V6: true }),
      'host-bits': (b, n) => withField(b, 'Pool', pick(['10.210.0.1/24', '10.211.0.2/30', 'fd10:1::1/64'], n)),
      'subpool-outside': (b, n) => ({ ...b, Pool: '10.215.0.0/24', SubPool: pick(['10.99.0.0/25', '10.215.0.0/16', '10.215.0.1/25', 'fd10:3::/126', 'x', '10.215.0.0/24'], n) }),
      'subpool-without-pool': (b) => ({ ...b, Pool: '', SubPool: '10.215.0.128/25' }),
      'family-mismatch': (b, n) => (n % 2 ? { ...b, Pool: 'fd10:1::/64', V6: false } : { ...b, Pool: '10.210.0.0/24', V6: true }),
      'overlap': (b, n) => withField(b, 'Pool', pick(['10.210.0.0/16', '10.210.0.128/25', '10.0.0.0/8', '10.211.0.0/31', '172.18.0.0/15'], n)),
      'size-only-odd': (b, n) => ({ ...b, ...pick<Obj>([{ Pool: '0.0.0.0/8' }, { Pool: '0.0.0.0/31' }, { Pool: '0.0.0.0/32' }, { Pool: '::/40', V6: true }, { Pool: '::/128', V6: true }, { Pool: '0.0.0.0/0' }], n) }),
      'odd-options': (b, n) => withField(b, 'Options', { [pick(['x', '__proto__', '', 'constructor'], n)]: pick(['\u0000', 'a'.repeat(4096), '\ud800'], n >> 2) }),
      'routed-by-host': (b, n) => withField(b, 'Pool', pick(['172.17.0.0/16', '192.168.1.0/24', '172.17.5.0/24'], n)),
    },
  },
  {
    method: 'IpamDriver.RequestAddress',
    base: (r, k) => ({ ...recordedObj('IpamDriver.RequestAddress', r), PoolID: poolRef(k) }),
    twists: {
      'unknown-pool': (b, n) => withField(b, 'PoolID', pick(['LocalDefault/10.99.0.0/24', '', 'pool-10.81.0.0/24', '__proto__', 'LocalDefault/10.210.0.0/24/'], n)),
      'bad-preferred': (b, n) => withField(b, 'Address', pick(['10.99.0.5', 'x', 'fd99::5', '10.210.0.5/99', '10.210.0.256', ' 10.210.0.5', '::ffff:10.210.0.5', '0.0.0.0', '255.255.255.255'], n)),
      'preferred-edge': (b, n) => withField(b, 'Address', pick(PREFERRED, n)),
      'odd-type-option': (b, n) => withField(b, 'Options', { RequestAddressType: pick(['x', '', 'com.docker.network.gateway\u0000'], n) }),
    },
  },
  {
    method: 'IpamDriver.ReleaseAddress',
    base: (r, k) => ({ ...recordedObj('IpamDriver.ReleaseAddress', r), PoolID: leasePoolRef(k), Address: leaseRef(k) }),
    twists: {
      'unknown-pool': (b) => withField(b, 'PoolID', 'LocalDefault/10.99.0.0/24'),
      'bad-address': (b, n) => withField(b, 'Address', pick(['x', '', '10.210.0.5/99', '10.210.0.256', 'fd10:1::/64', '10.210.0.77'], n)),
      'address-of-other-pool': (b, n) => withField(b, 'PoolID', poolRef(n)),
      'address-in-other-family': (b, n, k) => withField(b, 'Address', leaseRef(k, n % 2 ? 3 : 2)),
    },
  },
  {
    method: 'IpamDriver.ReleasePool',
    base: (r) => recordedObj('IpamDriver.ReleasePool', r),
    twists: { 'unknown-pool': (b, n) => withField(b, 'PoolID', pick(['LocalDefault/10.99.0.0/24', 'pool-10.81.0.0/24', '', '__proto__', 'x'.repeat(4096)], n)) },
  },
]

const familyWeights: Record<string, number> = {
  'NetworkDriver.CreateNetwork': 14, 'NetworkDriver.CreateEndpoint': 12, 'NetworkDriver.Join': 6, 'IpamDriver.RequestPool': 8,
  'IpamDriver.RequestAddress': 7, 'IpamDriver.ReleaseAddress': 2,
}

export const semanticOp: fc.Arbitrary<Op> = fc.oneof(
  ...SEMANTIC.map((f) => ({
    weight: familyWeights[f.method] ?? 2,
    arbitrary: fc.record({ r: nat(), i: nat(), j: nat(), t: nat(), n: nat() }).map(({ r, i, j, t, n }): Op => {
      const names = Object.keys(f.twists)
      const name = pick(names, t)
      const body = (f.twists[name] as Twist)(f.base(r, i, j), n, i, j)
      return { method: f.method, kind: 'semantic', tag: `semantic:${f.method.split('.')[1]}:${name}`, body }
    }),
  })),
)

// ---------------------------------------------------------------- structural mutations

type Path = Array<string | number>

function nodes(v: Json, at: Path = [], out: Path[] = []): Path[] {
  out.push(at)
  if (Array.isArray(v)) v.forEach((x, k) => nodes(x, [...at, k], out))
  else if (isObj(v)) for (const [k, x] of Object.entries(v)) nodes(x, [...at, k], out)
  return out
}

function getAt(v: Json, path: Path): Json | undefined {
  let cur: Json | undefined = v
  for (const k of path) cur = Array.isArray(cur) ? cur[k as number] : isObj(cur) ? cur[k as string] : undefined
  return cur
}

/** Returns a copy of `root` with the node at `path` replaced (undefined: removed). */
function setAt(root: Json, path: Path, value: Json | undefined): Json {
  if (path.length === 0) return value === undefined ? null : value
  const copy = cloneBody(root)
  const parent = getAt(copy, path.slice(0, -1))
  const last = path[path.length - 1] as string | number
  if (Array.isArray(parent)) {
    if (value === undefined) parent.splice(last as number, 1)
    else parent[last as number] = value
  } else if (isObj(parent)) {
    if (value === undefined) delete parent[last as string]
    else Object.defineProperty(parent, last as string, { value, enumerable: true, writable: true, configurable: true })
  }
  return copy
}

const WRONG_VALUES: Json[] = [0, -1, 1.5, true, false, null, [], {}, '', 'x', [1, 2], { a: 1 }, '10.0.0.0/24', 2 ** 53 + 2, -(2 ** 31), 1e308, [null], [{}]]
const EXTRA_KEYS = ['extra', '__proto__', 'constructor', 'NetworkID', '', '\u0000', '\u{1F600}', 'a'.repeat(300), 'toString', 'Options']
export const ODD_STRINGS = [
  '\u0000', 'a\u0000b', '\u202Eevil', '\u{1F600}\u{1F4A9}', '\ud800', '\udc00x', 'line\nbreak', 'cr\r\n', '\t', '\u2028\u2029', '\ufeff',
  '\u200D\u200B', 'e\u0301', '\uFF11\uFF10.0.0.1/24', '\u0661\u0660.0.0.1', '\u0130', 'ß', '\u{10FFFF}', '"quoted"', '\\', '%00', '$(reboot)',
  '; rm -rf /', '`id`', '\x1b[31m', '<script>',
]
const NUMBER_TOKENS = ['1e400', '-1e400', '-0', '1E+2', '1e-400', '123456789012345678901234567890', '-9007199254740993', '1.0', '0e0', '4294967296', '-2147483649', '6.0000000000000001']
/** Target sizes in bytes for huge strings: over the schema's 4096, large, just under and over the 1 MiB body limit. */
const HUGE_BYTES = [4097, 65_536, 900_000, 1_048_600, 1_300_000]
const DEPTHS = [64, 1000, 20_000, 200_000]
const GARBAGE = ['}', ']', 'x', '\n{}', ',', '\u0000', '{"a":1}', ' '.repeat(1000), '//c', '\r\n\r\n', '\ud800', 'null']
const PREFIXES = ['\ufeff', ' ', 'x', '[', '\u0000', '\ud800', '\n\n\n']
const RAW_BODIES = [
  'NaN', 'Infinity', "{'NetworkID':'a'}", '{NetworkID:"a"}', '{"NetworkID":"a",}', '[1,]', '{"a":01}', '"\\ud800"', '{"NetworkID":"\\u00"}',
  'undefined', 'null', 'true', '0', '[]', '""', '{}', '{"__proto__":{"NetworkID":"x"}}', '{"a":1}{"b":2}', '\u0000',
  `{"NetworkID":${JSON.stringify(deep(300_000, 'arr'))}}`, JSON.stringify(deep(400_000, 'arr')), JSON.stringify(deep(100_000, 'obj')),
  JSON.stringify(huge(1_100_000, 'a')), '{"NetworkID":"a","NetworkID":"b"}', '   ',
]
const BYTES = ['ff', 'fe', 'c0af', 'eda080', '00', 'e282', 'f4908080', 'efbbbf']
const URLS = (m: string) => [`/${m}?x=1`, `/${m.toLowerCase()}`, `/${m}/`, `/NetworkDriver.Bogus`, `/${m}%00`, `/${'A'.repeat(5000)}`, `/${m}#frag`, '/', `/${m}.`]
const CONTENT_TYPES = ['application/json', 'text/plain; charset=utf-16le', 'multipart/form-data; boundary=x', 'application/x-www-form-urlencoded', 'application/vnd.docker.plugins.v1.2+json', '']

const MUTATIONS = ['type', 'delete', 'extra', 'null', 'huge', 'unicode', 'insert-unicode', 'number', 'deep', 'wrap-array', 'truncate', 'append', 'prepend', 'raw', 'bytes', 'http', 'dup-key', 'empty'] as const

function hugeFor(bytes: number, unitIndex: number): string {
  const names = Object.keys(UNITS) as Array<keyof typeof UNITS>
  const unit = pick(names, unitIndex)
  const perUnit = Buffer.byteLength(JSON.parse(`"${UNITS[unit]}"`) as string) || 1
  return huge(Math.ceil(bytes / perUnit), unit)
}

export function mutate(base: Op, mutation: number, at: number, n: number, m: number): Op {
  const kind: Kind = 'malformed'
  const which = pick(MUTATIONS, mutation)
  const tag = `malformed:${base.method.split('.')[1]}:${which}`
  const all = nodes(base.body)
  const inner = all.length > 1 ? all.slice(1) : all
  const path = pick(inner, at)
  const op = (body: Json, text?: TextMut, http?: Op['http']): Op => ({
    method: base.method, kind, tag, body, ...(text ? { text } : {}), ...(http ? { http } : {}),
  })
  switch (which) {
    case 'type': {
      const cur = getAt(base.body, path)
      const candidates = WRONG_VALUES.filter((v) => typeof v !== typeof cur || Array.isArray(v) !== Array.isArray(cur) || (v === null) !== (cur === null))
      return op(setAt(base.body, path, pick(candidates, n)))
    }
    case 'delete':
      return op(setAt(base.body, path, undefined))
    case 'extra': {
      const objs = all.filter((p) => isObj(getAt(base.body, p) ?? null))
      const target = objs.length ? pick(objs, at) : []
      const obj = getAt(base.body, target)
      const copy: Obj = isObj(obj ?? null) ? { ...(obj as Obj) } : {}
      Object.defineProperty(copy, pick(EXTRA_KEYS, n), { value: pick(WRONG_VALUES, m), enumerable: true, writable: true, configurable: true })
      return op(setAt(base.body, target, copy))
    }
    case 'null':
      return op(setAt(base.body, path, null))
    case 'huge':
      return op(setAt(base.body, path, hugeFor(pick(HUGE_BYTES, n), m)))
    case 'unicode':
      return op(setAt(base.body, path, pick(ODD_STRINGS, n)))
    case 'insert-unicode': {
      const cur = getAt(base.body, path)
      const s = typeof cur === 'string' ? cur : String(cur)
      const pos = s.length ? m % (s.length + 1) : 0
      return op(setAt(base.body, path, s.slice(0, pos) + pick(ODD_STRINGS, n) + s.slice(pos)))
    }
    case 'number':
      return op(setAt(base.body, path, numTok(pick(NUMBER_TOKENS, n))))
    case 'deep':
      return op(setAt(base.body, path, deep(pick(DEPTHS, n), m % 2 ? 'obj' : 'arr')))
    case 'wrap-array':
      return op([base.body])
    case 'truncate':
      return op(base.body, { t: 'truncate', at: ((n % 97) + 1) / 100 })
    case 'append':
      return op(base.body, { t: 'append', s: pick(GARBAGE, n) })
    case 'prepend':
      return op(base.body, { t: 'prepend', s: pick(PREFIXES, n) })
    case 'raw':
      return op(base.body, { t: 'replace', s: pick(RAW_BODIES, n) })
    case 'bytes':
      return op(base.body, { t: 'bytes', at: (m % 101) / 100, hex: pick(BYTES, n) })
    case 'dup-key': {
      // A second copy of a top-level key with another value, written last so that it wins.
      const keys = isObj(base.body) ? Object.keys(base.body) : []
      const key = keys.length ? pick(keys, n) : 'NetworkID'
      const text = base.body === null ? '{}' : JSON.stringify(base.body)
      const dup = `${JSON.stringify(key)}:${JSON.stringify(pick(WRONG_VALUES, m))}`
      const s = text.endsWith('}') ? `${text.slice(0, -1)}${text === '{}' ? '' : ','}${dup}}` : text
      return op(base.body, { t: 'replace', s })
    }
    case 'empty':
      return op(base.body, { t: 'empty' })
    case 'http': {
      const v = n % 3
      if (v === 0) return op(base.body, undefined, { verb: pick(['GET', 'PUT', 'DELETE'] as const, m) })
      if (v === 1) return op(base.body, undefined, { url: pick(URLS(base.method), m) })
      return op(base.body, undefined, { contentType: pick(CONTENT_TYPES, m) })
    }
  }
}

export const malformedOp: fc.Arbitrary<Op> = fc
  .record({ base: fc.oneof(validOp, semanticOp), mutation: nat(), at: nat(), n: nat(), m: nat() })
  .map(({ base, mutation, at, n, m }) => mutate(base, mutation, at, n, m))

export interface Weights {
  valid: number
  semantic: number
  malformed: number
  /** Two requests sent at once (percentage of steps). */
  parallel: number
  /** Valid stories of 2 to 5 requests (percentage of steps). */
  story: number
}

export function opArb(w: Weights): fc.Arbitrary<Op> {
  return fc.oneof(
    { arbitrary: validOp, weight: w.valid },
    { arbitrary: semanticOp, weight: w.semantic },
    { arbitrary: malformedOp, weight: w.malformed },
  )
}

/**
 * Pairs sent at the same time that contend for one thing: two networks wanting one bridge name,
 * two endpoints whose veth names collide, a create racing its delete, the same create twice.
 */
export const racePairArb: fc.Arbitrary<[Op, Op]> = fc.record({ r: nat(), k: nat(), i: nat(), j: nat(), b: nat() }).map(({ r, k, i, j, b }): [Op, Op] => {
  const tag = (what: string) => `valid:race:${what}`
  const net = (ni: number, generic: Obj = {}): Op => {
    const body = networkBody('NetworkDriver.CreateNetwork', r, ni)
    return { method: 'NetworkDriver.CreateNetwork', kind: 'valid', tag: tag('CreateNetwork'), body: withGeneric(body, generic) }
  }
  const ep = (ni: number, ej: number): Op => {
    const body = endpointBody('NetworkDriver.CreateEndpoint', r, ni, ej)
    body.Interface = { Address: epV4(ni % NETS.length, ej % EPS.length), AddressIPv6: '', MacAddress: '' }
    return { method: 'NetworkDriver.CreateEndpoint', kind: 'valid', tag: tag('CreateEndpoint'), body }
  }
  const call = (method: string, body: Obj): Op => ({ method, kind: 'valid', tag: tag(method.split('.')[1] ?? method), body })
  switch (k % 8) {
    case 0: return [net(0), net(3)] // default bridge names collide: tsbr-d1165a9890
    case 1: return [net(i, { [OPT_BRIDGE]: userBridge(b % 3) }), net(i + 1 + (j % 3), { [OPT_BRIDGE]: userBridge(b % 3) })]
    case 2: return [ep(i, 0), ep(i + (j % 2), 4)] // EPS[0] and EPS[4] share the veth name tsv433d8bbee599
    case 3: return [ep(i, 1), ep(i + (j % 2), 5)] // EPS[1] and EPS[5] too, once lowercased
    case 4: return [net(i), call('NetworkDriver.DeleteNetwork', { NetworkID: pick(NETS, i) })]
    case 5: return [ep(i, j), call('NetworkDriver.DeleteNetwork', { NetworkID: pick(NETS, i) })]
    case 6: return [net(i), net(i)]
    default: return [ep(i, j), ep(i, j)]
  }
})

export function stepArb(w: Weights): fc.Arbitrary<Step> {
  const single = opArb(w)
  const any = fc.oneof({ arbitrary: validOp, weight: 3 }, { arbitrary: semanticOp, weight: 1 })
  const pair = fc.oneof(fc.tuple(any, any), racePairArb).map(([a, b]): Step => ({ parallel: [a, b] }))
  return w.parallel > 0 ? fc.oneof({ arbitrary: single, weight: 100 - w.parallel }, { arbitrary: pair, weight: w.parallel }) : single
}

/** A sequence as chunks: single steps, or stories whose requests stay together and in order. */
export function sequenceArb(w: Weights, minLength: number, maxLength: number): fc.Arbitrary<Step[][]> {
  const item = fc.oneof({ arbitrary: stepArb(w).map((x) => [x]), weight: 100 - w.story }, { arbitrary: storyArb, weight: w.story })
  return fc.array(item, { minLength, maxLength, size: 'max' })
}
