// core/network-plan: CreateNetwork / CreateEndpoint / Join requests → records → responses.
import t from 'tap'
import {
  type NetworkInput, checkOptionKeys, checkSandboxKey, findSubnetOverlap, gatewayAddresses, planEndpoint, planNetwork, sameEndpoint, sameNetwork,
} from '../../src/core/network-plan.js'
import { COMMON_OPTION, DAEMON_KEYS } from '../../src/core/docker-keys.js'
import { FULL_HOST, type HostFacts } from '../../src/core/host-facts.js'
import { MTU_MAX, MTU_MIN, genericOptions, parseBool, parseMtu } from '../../src/core/options.js'
import { BRIDGE_OPTION, bridgeMode, defaultHostIp } from '../../src/modes/bridge.js'
import { modeFor } from '../../src/modes/index.js'
import { parsePolicy } from '../../src/core/policy.js'
import type { EndpointRecord, NetworkRecord } from '../../src/core/records.js'
import { OPT, type CreateEndpointRequest, type CreateNetworkRequest } from '../../src/protocol/types.js'
import { dockerId } from './fixtures/util.js'

const NET = dockerId('aa11')
const EP = dockerId('bb22')
const NOW = '2026-01-01T00:00:00.000Z'
const defaults = { mtu: 1500 }
const OPTION = { ...COMMON_OPTION, ...BRIDGE_OPTION }

/** CreateNetwork's planning as the driver runs it: the -o map, the mode it chooses, its keys, then the record. */
function planNet(req: NetworkInput, d: { mtu: number } = defaults, now = NOW, facts: HostFacts = FULL_HOST): NetworkRecord {
  const generic = genericOptions(req.Options ?? {})
  const mode = modeFor(generic)
  checkOptionKeys(generic, mode, DAEMON_KEYS)
  return planNetwork(req, mode, generic, { defaultMtu: d.mtu, facts }, now)
}
const epPlan = (req: CreateEndpointRequest, n: NetworkRecord, now = NOW) => planEndpoint(req, n, bridgeMode, now)
const planJoin = (n: NetworkRecord, e: EndpointRecord) => bridgeMode.join(n, e)

/** A CreateNetwork body as Docker 20.10 sends it for `docker network create -d tsnet n`. */
function netReq(over: Partial<CreateNetworkRequest> = {}, generic: Record<string, unknown> = {}): CreateNetworkRequest {
  return {
    NetworkID: NET,
    Options: { [OPT.generic]: generic, [OPT.enableIpv6]: false },
    IPv4Data: [{ AddressSpace: 'LocalDefault', Pool: '172.18.0.0/16', Gateway: '172.18.0.1/16' }],
    IPv6Data: [],
    ...over,
  }
}

function epReq(iface: CreateEndpointRequest['Interface'], options: Record<string, unknown> = {}): CreateEndpointRequest {
  return { NetworkID: NET, EndpointID: EP, Interface: iface, Options: options }
}

const v6Net = () => planNet(netReq({
  Options: { [OPT.generic]: {}, [OPT.enableIpv6]: true },
  IPv6Data: [{ AddressSpace: 'LocalDefault', Pool: 'fd00:1::/64', Gateway: 'fd00:1::1/64' }],
}), defaults, NOW)

t.test('planNetwork: a plain network', async (t) => {
  const n = planNet(netReq(), defaults, NOW)
  t.same(n, {
    id: NET,
    mode: 'bridge',
    spec: { bridge: 'tsbr-aa11012345', bridgeNamedByUser: false },
    mtu: 1500,
    internal: false,
    ipv6: false,
    ipv4Subnets: [{ pool: '172.18.0.0/16', gateway: '172.18.0.1/16' }],
    ipv6Subnets: [],
    enableIpMasquerade: true,
    enableIcc: true,
    genericOptions: {},
    createdAt: NOW,
  })
  t.same(gatewayAddresses(n), ['172.18.0.1/16'])
  t.equal(planNet(netReq(), { mtu: 9000 }, NOW).mtu, 9000, 'default MTU comes from the caller')
})

t.test('planNetwork: null/absent Options and IPAM data are accepted', async (t) => {
  const n = planNet({ NetworkID: NET, Options: null, IPv4Data: null, IPv6Data: null }, defaults, NOW)
  t.same(n.ipv4Subnets, [])
  t.same(n.ipv6Subnets, [])
  t.same(n.genericOptions, {})
  t.same(gatewayAddresses(n), [])
  const m = planNet({ NetworkID: NET, Options: { [OPT.generic]: null } }, defaults, NOW)
  t.same(m.genericOptions, {})
})

t.test('planNetwork: MTU option range 68..65535', async (t) => {
  t.equal(MTU_MIN, 68)
  t.equal(MTU_MAX, 65535)
  t.equal(planNet(netReq({}, { [OPTION.mtu]: '68' }), defaults, NOW).mtu, 68)
  t.equal(planNet(netReq({}, { [OPTION.mtu]: '65535' }), defaults, NOW).mtu, 65535)
  t.equal(planNet(netReq({}, { [OPTION.mtu]: '9000' }), defaults, NOW).mtu, 9000)
  for (const bad of ['67', '65536', '0', '-1', '1500.0', '1e3', '', ' 1500', 'abc', '1000000']) {
    t.throws(() => planNet(netReq({}, { [OPTION.mtu]: bad }), defaults, NOW), {
      name: 'TsnetError', kind: 'invalid', message: /com\.docker\.network\.driver\.mtu=.* is (out of range|not a number): the MTU must be a whole number from 68 to 65535/,
    }, `MTU ${JSON.stringify(bad)} refused`)
  }
  t.equal(parseMtu('1500', 'x'), 1500)
  t.throws(() => parseMtu('67', 'the MTU'), { message: /^the MTU="67"/ })
})

t.test('planNetwork: bridge name option', async (t) => {
  const n = planNet(netReq({}, { [OPTION.bridgeName]: 'mybr0' }), defaults, NOW)
  t.same(n.spec, { bridge: 'mybr0', bridgeNamedByUser: true })
  t.same(n.genericOptions, { [OPTION.bridgeName]: 'mybr0' })
  t.same(planNet(netReq({}, { [OPTION.bridgeName]: 'a'.repeat(15) }), defaults, NOW).spec, { bridge: 'a'.repeat(15), bridgeNamedByUser: true })
  for (const bad of ['a'.repeat(16), 'a/b', 'br 0', '.', '..', '']) {
    t.throws(() => planNet(netReq({}, { [OPTION.bridgeName]: bad }), defaults, NOW),
      { name: 'TsnetError', kind: 'invalid', message: /bridge name \(com\.docker\.network\.bridge\.name\) .* is not usable/ }, `bridge name ${JSON.stringify(bad)} refused`)
  }
})

t.test('planNetwork: unknown options are refused with a list of the known ones', async (t) => {
  const err = t.throws(() => planNet(netReq({}, { 'com.example.nope': 'x' }), defaults, NOW), { name: 'TsnetError', kind: 'invalid' }) as Error
  t.match(err.message, /unknown network option com\.example\.nope/)
  for (const key of Object.values(OPTION)) t.ok(err.message.includes(key), `the message lists ${key}`)
  t.throws(() => planNet(netReq({}, { [OPTION.mtu]: 1500 }), defaults, NOW), { name: 'TsnetError', kind: 'invalid', message: /option com\.docker\.network\.driver\.mtu must be a string, got 1500/ })
  t.throws(() => planNet(netReq({ Options: { [OPT.generic]: 'x' } }), defaults, NOW), { name: 'TsnetError', kind: 'invalid', message: /must be a map of strings/ })
  t.throws(() => planNet(netReq({ Options: { [OPT.generic]: ['x'] } }), defaults, NOW), { name: 'TsnetError', kind: 'invalid', message: /must be a map of strings/ })
  const daemon = planNet(netReq({}, { [OPT.enableIpv6]: 'false', [OPT.internal]: 'false', [OPT.enableIpv4]: 'true', 'com.docker.network.bridge.default_bridge': 'false' }), defaults, NOW)
  t.equal(Object.keys(daemon.genericOptions).length, 4, 'keys the daemon interprets may be echoed in -o')
})

t.test('planNetwork: boolean options (Go ParseBool)', async (t) => {
  for (const v of ['1', 't', 'T', 'true', 'TRUE', 'True']) {
    t.equal(planNet(netReq({}, { [OPTION.icc]: v }), defaults, NOW).enableIcc, true, `icc=${v}`)
  }
  for (const v of ['0', 'f', 'F', 'false', 'FALSE', 'False']) {
    t.equal(planNet(netReq({}, { [OPTION.icc]: v }), defaults, NOW).enableIcc, false, `icc=${v}`)
    t.equal(planNet(netReq({}, { [OPTION.masquerade]: v }), defaults, NOW).enableIpMasquerade, false, `masquerade=${v}`)
  }
  for (const v of ['yes', 'no', 'tRUE', '', ' true', '2']) {
    t.throws(() => planNet(netReq({}, { [OPTION.masquerade]: v }), defaults, NOW),
      { name: 'TsnetError', kind: 'invalid', message: /option com\.docker\.network\.bridge\.enable_ip_masquerade=.* must be true or false/ }, `masquerade=${JSON.stringify(v)} refused`)
  }
  t.equal(parseBool('k', 'true'), true)
  t.throws(() => parseBool('k', 'yes'), { message: /^option k="yes" must be true or false$/ })
})

t.test('planNetwork: ICC off needs br_netfilter', async (t) => {
  const noBrNetfilter = { ...FULL_HOST, brNetfilter: false }
  t.throws(() => planNet(netReq({}, { [OPTION.icc]: 'false' }), defaults, NOW, noBrNetfilter),
    { name: 'TsnetError', kind: 'invalid', message: /enable_icc=false needs the br_netfilter kernel module, which is not loaded/ })
  t.equal(planNet(netReq(), defaults, NOW, noBrNetfilter).enableIcc, true, 'control: ICC on needs nothing')
})

t.test('planNetwork: container interface prefix option', async (t) => {
  t.equal(planNet(netReq({}, { [OPTION.ifacePrefix]: 'ens' }), defaults, NOW).genericOptions[OPTION.ifacePrefix], 'ens')
  for (const bad of ['Eth', '1eth', 'a'.repeat(11), 'e-th', '']) {
    t.throws(() => planNet(netReq({}, { [OPTION.ifacePrefix]: bad }), defaults, NOW),
      { name: 'TsnetError', kind: 'invalid', message: /container_iface_prefix=.* must be 1 to 10 lowercase letters and digits/ }, `prefix ${JSON.stringify(bad)} refused`)
  }
})

t.test('planNetwork: internal', async (t) => {
  t.equal(planNet(netReq({ Options: { [OPT.generic]: {}, [OPT.internal]: true } }), defaults, NOW).internal, true)
  t.equal(planNet(netReq({ Options: { [OPT.generic]: {}, [OPT.internal]: false } }), defaults, NOW).internal, false)
  t.equal(planNet(netReq({ Options: { [OPT.generic]: {}, [OPT.internal]: 'true' } }), defaults, NOW).internal, true, 'as a string')
  t.equal(planNet(netReq({ Options: { [OPT.generic]: {} } }), defaults, NOW).internal, false, 'absent')
  t.throws(() => planNet(netReq({ Options: { [OPT.internal]: 1 } }), defaults, NOW), { name: 'TsnetError', kind: 'invalid', message: /com\.docker\.network\.internal must be true or false, got 1/ })
  t.throws(() => planNet(netReq({ Options: { [OPT.internal]: 'maybe' } }), defaults, NOW), { name: 'TsnetError', kind: 'invalid', message: /must be true or false/ })
})

t.test('planNetwork: IPv6', async (t) => {
  const n = v6Net()
  t.equal(n.ipv6, true)
  t.same(n.ipv6Subnets, [{ pool: 'fd00:1::/64', gateway: 'fd00:1::1/64' }])
  t.same(gatewayAddresses(n), ['172.18.0.1/16', 'fd00:1::1/64'], 'both gateways go on the bridge')
  t.throws(() => planNet(netReq({ Options: { [OPT.generic]: {}, [OPT.enableIpv6]: true }, IPv6Data: [] }), defaults, NOW),
    { name: 'TsnetError', kind: 'invalid', message: /IPv6 is enabled but no IPv6 pool was given/ }, 'IPv6 without a pool')
  const implied = planNet(netReq({ IPv6Data: [{ Pool: 'fd00:2::/64' }] }), defaults, NOW)
  t.equal(implied.ipv6, true, 'an IPv6 pool turns IPv6 on')
  t.same(implied.ipv6Subnets, [{ pool: 'fd00:2::/64' }], 'no gateway recorded when none was given')
  t.equal(planNet(netReq(), defaults, NOW).ipv6, false)
  t.throws(() => planNet(netReq({ IPv6Data: [{ Pool: '10.0.0.0/24' }] }), defaults, NOW), { name: 'TsnetError', kind: 'invalid', message: /IPv6 pool "10\.0\.0\.0\/24" is not a valid IPv6 CIDR/ })
  t.throws(() => planNet(netReq({ IPv4Data: [{ Pool: 'fd00::/64' }] }), defaults, NOW), { name: 'TsnetError', kind: 'invalid', message: /IPv4 pool "fd00::\/64" is not a valid IPv4 CIDR/ })
})

t.test('planNetwork: gateways and aux addresses must lie in their pool', async (t) => {
  t.throws(() => planNet(netReq({ IPv4Data: [{ Pool: '172.18.0.0/16', Gateway: '172.19.0.1/16' }] }), defaults, NOW),
    { name: 'TsnetError', kind: 'invalid', message: /gateway "172\.19\.0\.1\/16" is not an address inside pool 172\.18\.0\.0\/16/ })
  t.throws(() => planNet(netReq({ IPv4Data: [{ Pool: '172.18.0.0/16', Gateway: 'nonsense' }] }), defaults, NOW), { name: 'TsnetError', kind: 'invalid', message: /gateway "nonsense"/ })
  t.throws(() => planNet(netReq({ IPv6Data: [{ Pool: 'fd00:1::/64', Gateway: 'fd00:2::1/64' }] }), defaults, NOW), { name: 'TsnetError', kind: 'invalid', message: /gateway "fd00:2::1\/64" is not an address inside pool fd00:1::\/64/ })
  t.throws(() => planNet(netReq({ IPv4Data: [{ Pool: '172.18.0.0/16', Gateway: '172.18.0.1/16', AuxAddresses: { dev: '10.0.0.5/16' } }] }), defaults, NOW),
    { name: 'TsnetError', kind: 'invalid', message: /aux address dev "10\.0\.0\.5\/16" is not an address inside pool 172\.18\.0\.0\/16/ })
  const ok = planNet(netReq({ IPv4Data: [{ Pool: '172.18.0.0/16', Gateway: '172.18.0.1/16', AuxAddresses: { dev: '172.18.9.9/16' } }] }), defaults, NOW)
  t.same(ok.ipv4Subnets, [{ pool: '172.18.0.0/16', gateway: '172.18.0.1/16', auxAddresses: { dev: '172.18.9.9/16' } }])
  t.same(planNet(netReq({ IPv4Data: [{ Pool: '172.18.0.0/16', AuxAddresses: null }] }), defaults, NOW).ipv4Subnets, [{ pool: '172.18.0.0/16' }])
  t.same(planNet(netReq({ IPv4Data: [{ Pool: '172.18.0.0/16', Gateway: '' }] }), defaults, NOW).ipv4Subnets, [{ pool: '172.18.0.0/16' }], 'empty gateway = none')
})

t.test('planNetwork: the null IPAM driver (0.0.0.0/0, no gateway) is accepted', async (t) => {
  const n = planNet(netReq({ IPv4Data: [{ AddressSpace: 'null', Pool: '0.0.0.0/0' }] }), defaults, NOW)
  t.same(n.ipv4Subnets, [{ pool: '0.0.0.0/0' }])
  t.same(gatewayAddresses(n), [], 'nothing to put on the bridge')
})

t.test('planEndpoint: address checks', async (t) => {
  const n = planNet(netReq(), defaults, NOW)
  const plan = epPlan(epReq({ Address: '172.18.0.2/16', AddressIPv6: '', MacAddress: '' }), n, NOW)
  t.same(plan.record, {
    id: EP,
    networkId: NET,
    hostIf: 'tsvbb2201234567',
    containerIf: 'tscbb2201234567',
    mac: '02:42:ac:12:00:02',
    macFromDocker: false,
    mtu: 1500,
    address: '172.18.0.2/16',
    portMappings: [],
    exposedPorts: [],
    joined: false,
    createdAt: NOW,
  })
  t.throws(() => epPlan(epReq({ Address: '10.0.0.2/16' }), n, NOW),
    { name: 'TsnetError', kind: 'invalid', message: /address 10\.0\.0\.2\/16 is outside the subnets of network aa1101234567 \(172\.18\.0\.0\/16\)/ })
  t.throws(() => epPlan(epReq({ Address: '172.18.0.2' }), n, NOW), { name: 'TsnetError', kind: 'invalid', message: /endpoint IPv4 address "172\.18\.0\.2" is not a valid IPv4 CIDR/ }, 'address without mask')
  t.throws(() => epPlan(epReq({ Address: 'fd00:1::2/64' }), n, NOW), { name: 'TsnetError', kind: 'invalid', message: /not a valid IPv4 CIDR/ }, 'IPv6 in the IPv4 field')
  t.throws(() => epPlan(epReq({ AddressIPv6: 'fd00:1::2/64' }), n, NOW), { name: 'TsnetError', kind: 'invalid', message: /address fd00:1::2\/64 is outside the subnets of network .* \(none\)/ }, 'IPv6 address on an IPv4-only network')
  const v6 = v6Net()
  const both = epPlan(epReq({ Address: '172.18.0.3/16', AddressIPv6: 'fd00:1::3/64' }), v6, NOW)
  t.equal(both.record.addressV6, 'fd00:1::3/64')
  t.throws(() => epPlan(epReq({ AddressIPv6: 'fd00:9::3/64' }), v6, NOW), { name: 'TsnetError', kind: 'invalid', message: /outside the subnets .*fd00:1::\/64/ })
  const none = epPlan(epReq({ Address: '', AddressIPv6: '', MacAddress: '' }), n, NOW)
  t.notOk('address' in none.record, 'no address with an empty Address')
  t.notOk('addressV6' in none.record)
  const nullIpam = planNet(netReq({ IPv4Data: [{ AddressSpace: 'null', Pool: '0.0.0.0/0' }] }), defaults, NOW)
  t.equal(epPlan(epReq({ Address: '203.0.113.5/24' }), nullIpam, NOW).record.address, '203.0.113.5/24', 'any address on a 0.0.0.0/0 network')
  const twoPools = planNet(netReq({ IPv4Data: [{ Pool: '172.18.0.0/16', Gateway: '172.18.0.1/16' }, { Pool: '10.5.0.0/24', Gateway: '10.5.0.1/24' }] }), defaults, NOW)
  t.equal(epPlan(epReq({ Address: '10.5.0.7/24' }), twoPools, NOW).record.address, '10.5.0.7/24', 'the second pool counts')
})

t.test('planEndpoint: MAC derived or given; response only when Docker gave none', async (t) => {
  const n = planNet(netReq(), defaults, NOW)
  const derived = epPlan(epReq({ Address: '172.18.0.2/16', MacAddress: '' }), n, NOW)
  t.equal(derived.record.mac, '02:42:ac:12:00:02', 'Docker rule 02:42 + IPv4')
  t.equal(derived.record.macFromDocker, false)
  t.same(derived.response, { Interface: { MacAddress: '02:42:ac:12:00:02' } }, 'tsnet returns the MAC it chose')

  const given = epPlan(epReq({ Address: '172.18.0.2/16', MacAddress: '02:AA:BB:CC:DD:EE' }), n, NOW)
  t.equal(given.record.mac, '02:aa:bb:cc:dd:ee')
  t.equal(given.record.macFromDocker, true)
  t.same(given.response, {}, 'a MAC Docker set is not echoed (Docker would call that a modification)')
  t.notOk('Interface' in given.response)

  const noV4 = epPlan(epReq({ Address: '', MacAddress: '' }), n, NOW)
  t.match(noV4.record.mac, /^02(:[0-9a-f]{2}){5}$/, 'seeded MAC without an IPv4 address')
  t.equal(epPlan(epReq({ Address: '', MacAddress: '' }), n, NOW).record.mac, noV4.record.mac, 'stable for the same endpoint')
  t.same(noV4.response, { Interface: { MacAddress: noV4.record.mac } })
  t.throws(() => epPlan(epReq({ Address: '172.18.0.2/16', MacAddress: '01:00:5e:00:00:01' }), n, NOW), { name: 'TsnetError', kind: 'invalid', message: /multicast/ })
  t.throws(() => epPlan(epReq({ MacAddress: 'zz' }), n, NOW), { name: 'TsnetError', kind: 'invalid', message: /MAC address "zz"/ })
  t.doesNotThrow(() => epPlan({ NetworkID: NET, EndpointID: EP, Interface: null, Options: null }, n, NOW), 'Interface and Options null')
})

t.test('planEndpoint: port options are parsed into the record', async (t) => {
  const n = planNet(netReq(), defaults, NOW)
  const plan = epPlan(epReq({ Address: '172.18.0.2/16' }, {
    [OPT.portMap]: [{ Proto: 6, IP: '', Port: 80, HostIP: '', HostPort: 8080, HostPortEnd: 8080 }],
    [OPT.exposedPorts]: [{ Proto: 6, Port: 80 }],
    'com.example.driver-opt': 'kept-out',
  }), n, NOW)
  t.same(plan.record.portMappings, [{ proto: 'tcp', containerPort: 80, hostIp: '', hostPort: 8080, hostPortEnd: 8080 }])
  t.same(plan.record.exposedPorts, [{ proto: 'tcp', port: 80 }])
  t.throws(() => epPlan(epReq({ Address: '172.18.0.2/16' }, { [OPT.portMap]: [{ Proto: 99, Port: 1 }] }), n, NOW), { name: 'TsnetError', kind: 'invalid', message: /protocol number 99/ })
})

t.test('planJoin', async (t) => {
  const two = planNet(netReq({ IPv4Data: [{ Pool: '172.18.0.0/16', Gateway: '172.18.0.1/16' }, { Pool: '10.5.0.0/24', Gateway: '10.5.0.254/24' }] }), defaults, NOW)
  const ep1 = epPlan(epReq({ Address: '172.18.0.2/16' }), two, NOW).record
  const ep2 = epPlan(epReq({ Address: '10.5.0.7/24' }), two, NOW).record
  t.same(planJoin(two, ep1), { InterfaceName: { SrcName: 'tscbb2201234567', DstPrefix: 'eth' }, Gateway: '172.18.0.1' }, 'plain IP gateway, default prefix eth')
  t.same(planJoin(two, ep2).Gateway, '10.5.0.254', 'the gateway of the subnet the address lies in')

  const v6 = v6Net()
  const dual = epPlan(epReq({ Address: '172.18.0.2/16', AddressIPv6: 'fd00:1::2/64' }), v6, NOW).record
  t.same(planJoin(v6, dual), { InterfaceName: { SrcName: dual.containerIf, DstPrefix: 'eth' }, Gateway: '172.18.0.1', GatewayIPv6: 'fd00:1::1' })
  const v4only = epPlan(epReq({ Address: '172.18.0.2/16' }), v6, NOW).record
  const r = planJoin(v6, v4only)
  t.equal(r.Gateway, '172.18.0.1')
  t.notOk('GatewayIPv6' in r, 'no IPv6 gateway for an endpoint without an IPv6 address')

  const noAddr = epPlan(epReq({ Address: '' }), two, NOW).record
  t.same(planJoin(two, noAddr), { InterfaceName: { SrcName: noAddr.containerIf, DstPrefix: 'eth' } }, 'no address, no gateway')

  const internal = planNet(netReq({ Options: { [OPT.generic]: {}, [OPT.internal]: true } }), defaults, NOW)
  const inEp = epPlan(epReq({ Address: '172.18.0.2/16' }), internal, NOW).record
  const ir = planJoin(internal, inEp)
  t.notOk('Gateway' in ir, 'internal: no IPv4 gateway')
  t.notOk('GatewayIPv6' in ir, 'internal: no IPv6 gateway')
  t.same(ir.InterfaceName, { SrcName: inEp.containerIf, DstPrefix: 'eth' })

  const prefixed = planNet(netReq({}, { [OPTION.ifacePrefix]: 'ens' }), defaults, NOW)
  t.equal(planJoin(prefixed, ep1).InterfaceName.DstPrefix, 'ens', 'the prefix option is honoured')

  const gwless = planNet(netReq({ IPv4Data: [{ Pool: '172.18.0.0/16' }] }), defaults, NOW)
  t.notOk('Gateway' in planJoin(gwless, ep1), 'no gateway when the subnet has none')
})

t.test('sameNetwork', async (t) => {
  const a = planNet(netReq(), defaults, NOW)
  t.ok(sameNetwork(a, planNet(netReq(), defaults, '2030-05-05T00:00:00.000Z')), 'only the creation time differs')
  t.ok(sameNetwork(a, JSON.parse(JSON.stringify(a)) as NetworkRecord), 'a record read back from JSON')
  t.notOk(sameNetwork(a, planNet(netReq(), { mtu: 9000 }, NOW)), 'MTU differs')
  t.notOk(sameNetwork(a, planNet(netReq({ IPv4Data: [{ Pool: '172.19.0.0/16', Gateway: '172.19.0.1/16' }] }), defaults, NOW)), 'subnet differs')
  t.notOk(sameNetwork(a, planNet(netReq({}, { [OPTION.icc]: 'false' }), defaults, NOW)), 'an option differs')
  t.notOk(sameNetwork(a, planNet(netReq({ Options: { [OPT.generic]: {}, [OPT.internal]: true } }), defaults, NOW)), 'internal differs')
})

t.test('sameEndpoint', async (t) => {
  const n = planNet(netReq(), defaults, NOW)
  const a = epPlan(epReq({ Address: '172.18.0.2/16' }), n, NOW).record
  const joined: EndpointRecord = { ...a, joined: true, sandboxKey: '/var/run/docker/netns/abc', createdAt: 'later' }
  t.ok(sameEndpoint(a, joined), 'join state and creation time do not count')
  t.ok(sameEndpoint(a, JSON.parse(JSON.stringify(a)) as EndpointRecord))
  t.notOk(sameEndpoint(a, epPlan(epReq({ Address: '172.18.0.3/16' }), n, NOW).record), 'address differs')
  t.notOk(sameEndpoint(a, epPlan(epReq({ Address: '172.18.0.2/16', MacAddress: '02:00:00:00:00:01' }), n, NOW).record), 'MAC differs')
  t.notOk(sameEndpoint(a, { ...a, networkId: dockerId('cc') }), 'network differs')
})

t.test('checkSandboxKey', async (t) => {
  t.equal(checkSandboxKey('/var/run/docker/netns/0123456789ab'), '/var/run/docker/netns/0123456789ab')
  t.throws(() => checkSandboxKey(''), { name: 'TsnetError', kind: 'invalid', message: /SandboxKey must be a non-empty path/ })
  t.throws(() => checkSandboxKey('/a\0b'), { name: 'TsnetError', kind: 'invalid' })
  t.throws(() => checkSandboxKey('/' + 'a'.repeat(4096)), { name: 'TsnetError', kind: 'invalid' })
})

t.test('planNetwork: tsnet.allow is parsed and stored canonical', async (t) => {
  t.equal(OPTION.allow, 'tsnet.allow')
  const raw = ' ui,admin  tcp/80,tcp/443 ;10.99.1.2/16 udp/53;;ops icmp; '
  const n = planNet(netReq({}, { [OPTION.allow]: raw }), defaults, NOW)
  t.equal(n.policy, 'ui,admin tcp/80,tcp/443; 10.99.0.0/16 udp/53; ops icmp', 'record.policy holds the canonical text')
  t.same(n.genericOptions, { [OPTION.allow]: raw }, 'the option itself is kept as given')
  t.equal(planNet(netReq({}, { [OPTION.allow]: 'ui tcp/8080' }), defaults, NOW).policy, 'ui tcp/8080')
  t.equal(planNet(netReq({}, { [OPTION.allow]: '10.0.0.1 tcp/1-1024' }), defaults, NOW).policy, '10.0.0.1/32 tcp/1-1024')
  t.notOk('policy' in planNet(netReq(), defaults, NOW), 'no option: no policy field')
  t.notOk('policy' in planNet(netReq({}, { [OPTION.allow]: '' }), defaults, NOW), 'the empty text is no policy')
  t.notOk('policy' in planNet(netReq({}, { [OPTION.allow]: ' ; ' }), defaults, NOW), 'only separators: no policy')
  const v6 = planNet(netReq({
    Options: { [OPT.generic]: { [OPTION.allow]: '2001:DB8::1/48 tcp/443' }, [OPT.enableIpv6]: true },
    IPv6Data: [{ Pool: 'fd00:1::/64', Gateway: 'fd00:1::1/64' }],
  }), defaults, NOW)
  t.equal(v6.policy, '2001:db8::/48 tcp/443', 'IPv6 sources on a dual-stack network')
  // The network service parses record.policy again whenever it applies the network.
  const addresses = Array.from({ length: 280 }, (_, i) => `10.0.${i >> 8}.${i & 255}`).join(',')
  const long = planNet(netReq({}, { [OPTION.allow]: `${addresses} icmp` }), defaults, NOW)
  t.doesNotThrow(() => parsePolicy(long.policy ?? ''), `the stored policy (${long.policy?.length} characters, from ${addresses.length + 5}) parses again`)
  const tooLong = Array.from({ length: 370 }, (_, i) => `10.0.${i >> 8}.${i & 255}`).join(',')
  t.throws(() => planNet(netReq({}, { [OPTION.allow]: `${tooLong} icmp` }), defaults, NOW), { kind: 'invalid', message: /once written out in full/ },
    'a policy whose stored form would not parse again is refused at create time')
})

t.test('planNetwork: an invalid tsnet.allow is refused', async (t) => {
  for (const [text, message] of [
    ['ui http/80', /tsnet\.allow rule 1 \("ui http\/80"\): "http\/80" is not a port/],
    ['ui', /a rule is SOURCES PORTS/],
    ['ui tcp/0', /port 0 in "tcp\/0" is out of range/],
    ['0.0.0.0/0 tcp/80', /would allow every address/],
    ['-x tcp/80', /"-x" is neither a network name nor an address or CIDR/],
  ] as const) {
    t.throws(() => planNet(netReq({}, { [OPTION.allow]: text }), defaults, NOW), { name: 'TsnetError', kind: 'invalid', message }, `${JSON.stringify(text)} refused`)
  }
})

t.test('planNetwork: an internal network takes no policy', async (t) => {
  const internal = (allow: string) => netReq({ Options: { [OPT.generic]: { [OPTION.allow]: allow }, [OPT.internal]: true } })
  t.throws(() => planNet(internal('ui tcp/80'), defaults, NOW),
    { name: 'TsnetError', kind: 'invalid', message: /an internal network accepts no traffic from other networks, so it takes no tsnet\.allow policy/ })
  t.throws(() => planNet(netReq({ Options: { [OPT.generic]: { [OPTION.allow]: 'ui tcp/80' }, [OPT.internal]: 'true' } }), defaults, NOW),
    { name: 'TsnetError', kind: 'invalid', message: /internal network/ }, 'internal given as a string')
  const empty = planNet(internal(''), defaults, NOW)
  t.equal(empty.internal, true, 'an empty policy on an internal network is fine')
  t.notOk('policy' in empty)
  t.throws(() => planNet(internal('ui http/80'), defaults, NOW), { name: 'TsnetError', kind: 'invalid', message: /is not a port/ }, 'a bad policy is named first')
})

t.test('sameNetwork: the policy does not count, its option does', async (t) => {
  const plain = planNet(netReq(), defaults, NOW)
  t.ok(sameNetwork(plain, { ...plain, policy: 'ui tcp/80' }), 'a policy set later with `tsnet policy set`')
  t.ok(sameNetwork({ ...plain, policy: 'ui tcp/80' }, plain), 'either side')
  t.ok(sameNetwork({ ...plain, policy: 'ui tcp/80' }, { ...plain, policy: 'admin tcp/443' }), 'two different policies')
  const withAllow = planNet(netReq({}, { [OPTION.allow]: 'ui tcp/80' }), defaults, NOW)
  t.ok(sameNetwork(withAllow, planNet(netReq({}, { [OPTION.allow]: 'ui tcp/80' }), defaults, 'later')), 'a retried create with the same option')
  t.ok(sameNetwork(withAllow, JSON.parse(JSON.stringify(withAllow)) as NetworkRecord), 'read back from JSON')
  t.notOk(sameNetwork(withAllow, plain), 'a different tsnet.allow option is a different network')
  t.notOk(sameNetwork(withAllow, planNet(netReq({}, { [OPTION.allow]: 'ui tcp/81' }), defaults, NOW)), 'a different option text')
})

t.test('sameNetwork: a policy changed after a create with tsnet.allow', async (t) => {
  // What NetworkService.setPolicy stores: the record without its policy, then the new one appended.
  const created = planNet(netReq({}, { [OPTION.allow]: 'ui tcp/80' }), defaults, NOW)
  const { policy, ...rest } = created
  t.ok(sameNetwork(created, { ...rest, policy: 'admin tcp/443' }), 'policy set to another text')
  t.ok(sameNetwork(created, rest), 'policy cleared')
  t.ok(sameNetwork(created, { ...rest, policy: policy ?? '' }), 'policy set to the same text again')
})

t.test('planNetwork: host_binding_ipv4 takes an IP address; anything else is refused', async (t) => {
  for (const addr of ['192.0.2.10', '0.0.0.0', '127.0.0.1', '2001:db8::7', '::']) {
    const n = planNet(netReq({}, { [OPTION.hostBinding]: addr }), defaults, NOW)
    t.equal(n.genericOptions[OPTION.hostBinding], addr, `${addr} is accepted and kept as given`)
  }
  for (const bad of ['', 'eth0', '192.0.2.10/24', '192.0.2.256', '1.2.3', ' 192.0.2.10', 'localhost', '2001:db8::7%eth0']) {
    t.throws(() => planNet(netReq({}, { [OPTION.hostBinding]: bad }), defaults, NOW),
      { name: 'TsnetError', kind: 'invalid', message: /com\.docker\.network\.bridge\.host_binding_ipv4=".*" is not an IP address: it names the host address that ports published without one/ }, `${JSON.stringify(bad)} is refused`)
  }
})

// How the publisher applies it to mappings (a given HostIP wins, none means every address) is proved
// end to end in port-publisher.test.ts (host_binding_ipv4).
t.test('defaultHostIp: the address mappings without a HostIP bind to', async (t) => {
  const net = (addr?: string) => planNet(netReq({}, addr === undefined ? {} : { [OPTION.hostBinding]: addr }), defaults, NOW)
  t.equal(defaultHostIp(net()), '', 'no option: every address')
  t.equal(defaultHostIp(net('0.0.0.0')), '', '0.0.0.0 is Docker\'s default: every address')
  t.equal(defaultHostIp(net('192.0.2.10')), '192.0.2.10')
  t.equal(defaultHostIp(net('2001:DB8:0::7')), '2001:db8::7', 'an IPv6 default, in canonical form')
  t.equal(defaultHostIp(net('::')), '::', ':: is the IPv6 wildcard alone (Docker then publishes no IPv4)')
  t.equal(bridgeMode.defaultHostIp?.(net('192.0.2.10')), '192.0.2.10', 'it is the bridge mode\'s answer to the publisher')
})

t.test('findSubnetOverlap: another network sharing addresses, in either family', async (t) => {
  const net = (id: string, v4: string[], v6: string[] = []) => planNet({
    NetworkID: dockerId(id),
    Options: { [OPT.generic]: {}, [OPT.enableIpv6]: v6.length > 0 },
    IPv4Data: v4.map((Pool) => ({ AddressSpace: 'LocalDefault', Pool })),
    IPv6Data: v6.map((Pool) => ({ AddressSpace: 'LocalDefault', Pool })),
  }, defaults, NOW)
  const a = net('a1', ['10.9.0.0/24'], ['fd00:9::/64'])
  const others = [net('b1', ['10.8.0.0/16']), net('c1', ['10.10.0.0/24'], ['fd00:10::/64'])]
  t.equal(findSubnetOverlap(a, others), undefined, 'disjoint subnets')
  t.equal(findSubnetOverlap(a, [a, ...others]), undefined, 'a network does not overlap itself (a retried CreateNetwork)')
  t.match(findSubnetOverlap(net('d1', ['10.9.0.128/25']), [a]), { other: { id: a.id }, mine: '10.9.0.128/25', theirs: '10.9.0.0/24' }, 'inside another')
  t.match(findSubnetOverlap(net('d2', ['10.0.0.0/8']), [a]), { mine: '10.0.0.0/8', theirs: '10.9.0.0/24' }, 'around another')
  t.match(findSubnetOverlap(net('d3', ['10.9.0.0/24']), others.concat([a])), { other: { id: a.id } }, 'the same subnet')
  t.match(findSubnetOverlap(net('d4', ['10.11.0.0/24'], ['fd00:9::/48']), [a]), { mine: 'fd00:9::/48', theirs: 'fd00:9::/64' }, 'IPv6 alone')
  t.equal(findSubnetOverlap(net('d5', ['0.0.0.0/0']), [a, net('d6', ['0.0.0.0/0'])]), undefined, 'null-IPAM pools (/0) hold no address and overlap nothing')
})
