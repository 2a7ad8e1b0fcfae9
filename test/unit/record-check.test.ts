// core/record-check: every record today's services write passes (they are made here by the real
// services, over a FileStore and a FakeHost, with every optional field in use), and records of the
// wrong shape are refused with a sentence saying what is wrong, in every collection.
import t, { type Test } from 'tap'
import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { COMMON_OPTION } from '../../src/core/docker-keys.js'
import { checkStoredRecord } from '../../src/core/record-check.js'
import type { EndpointRecord, LeaseRecord, NetworkRecord, PoolRecord } from '../../src/core/records.js'
import { BRIDGE_OPTION } from '../../src/modes/bridge.js'
import { OPT } from '../../src/protocol/types.js'
import { GcService } from '../../src/services/gc-service.js'
import { FileStore } from '../../src/store/file-store.js'
import { COLLECTIONS } from '../../src/store/store.js'
import { FakeDocker } from './fixtures/gc-fakes.js'
import { openUnit } from './fixtures/services.js'
import { dockerId, log } from './fixtures/util.js'

const NET = dockerId('0a')
const NET_INTERNAL = dockerId('0b')
const EP = dockerId('e1')
const EP_V6 = dockerId('e2')
const ENGINE = 'AAAA:1111:ENGINE:A'
const OPTION = { ...COMMON_OPTION, ...BRIDGE_OPTION }

/** Drives the real services through every kind of record they write; returns the state directory. */
async function writeEverything(t: Test): Promise<string> {
  // As serve opens them: the store, Docker's names, IPAM (which writes meta/ipam, the ULA prefix), the boot reconcile.
  const { dir, services } = await openUnit(t)
  const { store, driver: network, ports, policy, ipam, names } = services
  const explicit = await ipam.requestPool({ AddressSpace: 'LocalDefault', Pool: '10.20.0.0/16', SubPool: '10.20.5.0/24', Options: { 'com.example.x': 'y' } }, log)
  const automatic = await ipam.requestPool({ AddressSpace: 'LocalDefault' }, log)
  const v6 = await ipam.requestPool({ AddressSpace: 'LocalDefault', V6: true }, log)
  const gw = await ipam.requestAddress({ PoolID: explicit.PoolID, Options: { [OPT.requestAddressType]: OPT.gatewayType } }, log)
  const gw6 = await ipam.requestAddress({ PoolID: v6.PoolID, Options: { [OPT.requestAddressType]: OPT.gatewayType } }, log)
  const addr = await ipam.requestAddress({ PoolID: explicit.PoolID, Options: { [OPT.endpointName]: 'web-1' } }, log)
  const addr6 = await ipam.requestAddress({ PoolID: v6.PoolID }, log)
  await ipam.requestAddress({ PoolID: automatic.PoolID, Address: '' }, log)

  await network.createNetwork({
    NetworkID: NET,
    Options: {
      [OPT.generic]: { [OPTION.mtu]: '1400', [OPTION.icc]: 'false', [OPTION.masquerade]: 'false', [OPTION.bridgeName]: 'br-web', [OPTION.allow]: 'ui tcp/80' },
      [OPT.enableIpv6]: true,
    },
    IPv4Data: [{ AddressSpace: 'LocalDefault', Pool: explicit.Pool, Gateway: gw.Address, AuxAddresses: { router: '10.20.0.254/16' } }],
    IPv6Data: [{ AddressSpace: 'LocalDefault', Pool: v6.Pool, Gateway: gw6.Address }],
  }, log)
  await network.createNetwork({ NetworkID: NET_INTERNAL, Options: { [OPT.generic]: {}, [OPT.internal]: true }, IPv4Data: [{ Pool: automatic.Pool }], IPv6Data: [] }, log)
  await network.createEndpoint({
    NetworkID: NET, EndpointID: EP,
    Interface: { Address: addr.Address, AddressIPv6: addr6.Address, MacAddress: '02:00:00:aa:bb:cc' },
    Options: {
      [OPT.portMap]: [{ Proto: 6, Port: 80, HostIP: '', HostPort: 8080, HostPortEnd: 8080 }, { Proto: 17, Port: 53, HostIP: '127.0.0.1', HostPort: 5300, HostPortEnd: 5310 }],
      [OPT.exposedPorts]: [{ Proto: 6, Port: 80 }, { Proto: 17, Port: 53 }, { Proto: 132, Port: 9 }],
    },
  }, log)
  await network.createEndpoint({ NetworkID: NET, EndpointID: EP_V6, Interface: { AddressIPv6: addr6.Address.replace(/::\w+\//, '::99/') } }, log)
  await network.join({ NetworkID: NET, EndpointID: EP, SandboxKey: '/var/run/docker/netns/0123456789ab', Options: {} }, log)
  await ports.program({
    NetworkID: NET, EndpointID: EP,
    Options: { [OPT.portMap]: [{ Proto: 6, Port: 80, HostIP: '', HostPort: 8080, HostPortEnd: 8080 }, { Proto: 17, Port: 53, HostIP: '127.0.0.1', HostPort: 5300, HostPortEnd: 5310 }] },
  }, log)
  await names.update([{ id: NET, name: 'web', driver: 'tsnet', subnets: [explicit.Pool, v6.Pool] }, { id: 'abc', name: 'bridge', driver: 'bridge', subnets: ['172.17.0.0/16'] }])
  await policy.setPolicy(NET, 'ui tcp/443; 192.0.2.7 udp/53', log)

  const docker = new FakeDocker(ENGINE)
  docker.networks = [{ id: NET, scope: 'local', ipam: [], endpoints: [] }, { id: NET_INTERNAL, scope: 'local', ipam: [], endpoints: [] }]
  const gc = new GcService(store, docker, network, ipam, { intervalMs: 3_600_000, minAgeMs: 3_600_000 }, log)
  await gc.load()
  t.match(await gc.pass(), { ran: true }, 'a garbage collection pass ran (it pins the engine in meta/engine)')
  services.reconciler.stop()
  return dir
}

async function storedRecords(dir: string): Promise<Array<{ collection: string; id: string; value: unknown }>> {
  const out: Array<{ collection: string; id: string; value: unknown }> = []
  for (const collection of COLLECTIONS) {
    for (const f of (await readdir(join(dir, 'store', collection))).sort()) {
      out.push({ collection, id: decodeURIComponent(f.slice(0, -'.json'.length)), value: JSON.parse(await readFile(join(dir, 'store', collection, f), 'utf8')) })
    }
  }
  return out
}

t.test('every record the services write passes', async (t) => {
  const dir = await writeEverything(t)
  const records = await storedRecords(dir)
  for (const r of records) t.equal(checkStoredRecord(r.collection, r.id, r.value), undefined, `${r.collection}/${r.id} passes`)
  // The scenario really used what the checks look at (else passing would prove little).
  const of = <T>(c: string) => records.filter((r) => r.collection === c).map((r) => r.value as T)
  t.ok(of<NetworkRecord>('networks').some((n) => n.policy && n.ipv6Subnets.length > 0 && n.ipv4Subnets[0]?.auxAddresses && n.mode === 'bridge' && n.spec.bridgeNamedByUser), 'a network with a policy, IPv6, aux addresses and a user bridge name')
  t.ok(of<NetworkRecord>('networks').some((n) => n.internal), 'an internal network')
  t.ok(of<EndpointRecord>('endpoints').some((e) => e.published?.length && e.sandboxKey && e.joined && e.addressV6 && e.macFromDocker), 'an endpoint joined, with published ports, both families and a given MAC')
  t.ok(of<EndpointRecord>('endpoints').some((e) => e.address === undefined), 'an IPv6-only endpoint')
  t.ok(of<PoolRecord>('pools').some((p) => p.subPool) && of<PoolRecord>('pools').some((p) => p.v6), 'pools with a sub-pool and IPv6')
  t.ok(of<LeaseRecord>('leases').some((l) => l.owner) && of<LeaseRecord>('leases').some((l) => l.kind === 'gateway'), 'leases with an owner and gateways')
  t.same(of<unknown>('meta').length, 4, 'meta: schema, ipam, docker-networks, engine')
  t.same(records.filter((r) => r.collection === 'meta').map((r) => r.id).sort(), ['docker-networks', 'engine', 'ipam', 'schema'])

  // And the store opened with the checks (as tsnet does) loads all of it, quarantining nothing.
  const store = await FileStore.open(dir, log, { check: checkStoredRecord })
  for (const c of COLLECTIONS) t.equal((await store.list(c)).length, records.filter((r) => r.collection === c).length, `${c}: all load with the checks on`)
})

/** Minimal records: only required fields, as the oldest stores have them (schema 1: a network's bridge at the top level). */
const network = (): Record<string, unknown> => ({
  id: NET, bridge: 'tsbr-0a01234567', bridgeNamedByUser: false, mtu: 1500, internal: false, ipv6: false,
  ipv4Subnets: [{ pool: '10.1.0.0/24', gateway: '10.1.0.1/24' }], ipv6Subnets: [], enableIpMasquerade: true, enableIcc: true,
  genericOptions: {}, createdAt: '2026-01-01T00:00:00.000Z',
})
/** Today's network record (schema 2): a mode and the mode's spec. */
const networkV2 = (): Record<string, unknown> => {
  const { bridge, bridgeNamedByUser, ...rest } = network()
  return { ...rest, mode: 'bridge', spec: { bridge, bridgeNamedByUser } }
}
const endpoint = (): Record<string, unknown> => ({
  id: EP, networkId: NET, hostIf: 'tsve1012345678', containerIf: 'tsce1012345678', mac: '02:42:0a:01:00:02', macFromDocker: false, mtu: 1500,
  address: '10.1.0.2/24', portMappings: [], exposedPorts: [], joined: false, createdAt: '2026-01-01T00:00:00.000Z',
})
const POOL_ID = 'LocalDefault/10.1.0.0/24'
const pool = (): Record<string, unknown> => ({ id: POOL_ID, addressSpace: 'LocalDefault', pool: '10.1.0.0/24', v6: false, options: {}, createdAt: '2026-01-01T00:00:00.000Z' })
const LEASE_ID = `${POOL_ID}#10.1.0.2`
const lease = (): Record<string, unknown> => ({ poolId: POOL_ID, address: '10.1.0.2', kind: 'endpoint', createdAt: '2026-01-01T00:00:00.000Z' })
const good: Array<[string, string, () => Record<string, unknown>]> = [
  ['networks', NET, network], ['networks', NET, networkV2], ['endpoints', EP, endpoint], ['pools', POOL_ID, pool], ['leases', LEASE_ID, lease],
]
/** Fields a record may lack: an endpoint's addresses, and its host link (modes whose endpoint is one link have none). */
const OPTIONAL: Record<string, string[]> = { endpoints: ['address', 'hostIf'], networks: [] }

t.test('minimal records pass, and so do fields this tsnet does not know', async (t) => {
  for (const [c, id, make] of good) {
    t.equal(checkStoredRecord(c, id, make()), undefined, `a minimal ${c} record`)
    t.equal(checkStoredRecord(c, id, { ...make(), addedByANewerTsnet: { x: [1] } }), undefined, `a ${c} record with an unknown field`)
  }
  t.equal(checkStoredRecord('meta', 'something-new', { any: 'thing' }), undefined, 'a meta record of an ID this tsnet does not know')
  const { hostIf: _h, address: _a, ...bare } = endpoint()
  t.equal(checkStoredRecord('endpoints', EP, bare), undefined, 'an endpoint without a host link or an IPv4 address')
})

t.test('the wrong shape in any collection is refused with a sentence saying what is wrong', async (t) => {
  const without = (make: () => Record<string, unknown>, field: string) => { const r = make(); delete r[field]; return r }
  const cases: Array<[string, string, unknown, RegExp]> = []
  for (const [c, id, make] of good) {
    cases.push(
      [c, id, null, /the record is null, not an object/],
      [c, id, 42, /the record is 42, not an object/],
      [c, id, [], /the record is \[list of 0\], not an object/],
      [c, id, 'text', /the record is "text", not an object/],
      [c, id, {}, /is missing, not/],
    )
    // A network without a mode is read as schema 1, which has its bridge at the top level.
    for (const field of Object.keys(make()).filter((f) => !(OPTIONAL[c] ?? []).includes(f))) cases.push([c, id, without(make, field), new RegExp(`field ${field === 'mode' ? 'bridge' : field} is missing`)])
  }
  cases.push(
    ['networks', NET, { ...network(), mtu: '1500' }, /field mtu is "1500", not a whole number from 68 to 65535/],
    ['networks', NET, { ...network(), mtu: 70000 }, /field mtu is 70000/],
    ['networks', NET, { ...network(), bridge: 'br; rm -rf' }, /field bridge is "br; rm -rf", not an interface name/],
    ['networks', NET, { ...network(), bridge: 'a-name-far-too-long' }, /not an interface name/],
    ['networks', NET, { ...network(), bridge: '..' }, /not an interface name/],
    ['networks', NET, { ...network(), internal: 'false' }, /field internal is "false", not true or false/],
    ['networks', NET, { ...network(), ipv4Subnets: null }, /field ipv4Subnets is null, not a list/],
    ['networks', NET, { ...network(), ipv4Subnets: [null] }, /field ipv4Subnets\[0\] is null, not an object/],
    ['networks', NET, { ...network(), ipv4Subnets: [{ pool: 'fd00::/64' }] }, /field ipv4Subnets\[0\]\.pool is "fd00::\/64", not an IPv4 address\/length/],
    ['networks', NET, { ...network(), ipv4Subnets: [{ pool: '10.1.0.0/24', gateway: 7 }] }, /ipv4Subnets\[0\]\.gateway is 7/],
    ['networks', NET, { ...network(), ipv4Subnets: [{ pool: '10.1.0.0/24', auxAddresses: { r: 'x' } }] }, /ipv4Subnets\[0\]\.auxAddresses\.r is "x"/],
    ['networks', NET, { ...network(), genericOptions: { a: 1 } }, /field genericOptions\.a is 1, not a string/],
    ['networks', NET, { ...network(), policy: null }, /field policy is null, not a string/],
    ['networks', NET, { ...network(), id: 'not/an/id' }, /field id is "not\/an\/id", not a Docker ID/],
    ['networks', dockerId('ff'), network(), new RegExp(`the network record stored as "${dockerId('ff')}" describes "${NET}"`)],
    ['networks', NET, { ...networkV2(), mode: 'ipvlan' }, /field mode is "ipvlan", not one of "bridge", "macvlan", "overlay"/],
    ['networks', NET, { ...networkV2(), mode: 'macvlan' }, /field spec\.parent is missing, not an interface name/],
    ['networks', NET, { ...networkV2(), mode: 'overlay' }, /field spec\.vxlan is missing, not an interface name/],
    ['networks', NET, { ...networkV2(), spec: null }, /field spec is null, not an object/],
    ['networks', NET, { ...networkV2(), spec: { bridge: 'br; rm -rf', bridgeNamedByUser: false } }, /field spec\.bridge is "br; rm -rf", not an interface name/],
    ['networks', NET, { ...networkV2(), spec: { bridge: 'tsbr-0a01234567' } }, /field spec\.bridgeNamedByUser is missing, not true or false/],
    ['networks', NET, { ...networkV2(), mtu: 0 }, /field mtu is 0, not a whole number from 68 to 65535/],
    ['endpoints', EP, (() => { const e = endpoint(); delete e.hostIf; return { ...e, containerIf: undefined } })(), /field containerIf is missing/],
    ['endpoints', EP, { ...endpoint(), mac: 'zz:zz' }, /field mac is "zz:zz", not a MAC address/],
    ['endpoints', EP, { ...endpoint(), hostIf: '' }, /field hostIf is "", not an interface name/],
    ['endpoints', EP, { ...endpoint(), address: '10.1.0.2' }, /field address is "10.1.0.2", not an IPv4 address\/length/],
    ['endpoints', EP, { ...endpoint(), addressV6: '10.1.0.2/24' }, /field addressV6 is "10.1.0.2\/24", not an IPv6 address\/length/],
    ['endpoints', EP, { ...endpoint(), portMappings: [{ proto: 'icmp', containerPort: 1, hostIp: '', hostPort: 0, hostPortEnd: 0 }] }, /portMappings\[0\]\.proto is "icmp", not one of "tcp", "udp", "sctp"/],
    ['endpoints', EP, { ...endpoint(), portMappings: [{ proto: 'tcp', containerPort: 1, hostIp: 'here', hostPort: 0, hostPortEnd: 0 }] }, /portMappings\[0\]\.hostIp is "here", not an address or ""/],
    ['endpoints', EP, { ...endpoint(), exposedPorts: [{ proto: 'tcp', port: 65536 }] }, /exposedPorts\[0\]\.port is 65536, not a whole number from 0 to 65535/],
    ['endpoints', EP, { ...endpoint(), published: [{ family: 5, proto: 'tcp', hostIp: '', hostPort: 80, containerIp: '10.1.0.2', containerPort: 80 }] }, /published\[0\]\.family is 5, not one of 4, 6/],
    ['endpoints', EP, { ...endpoint(), published: [{ family: 4, proto: 'tcp', hostIp: '', hostPort: 80, containerIp: '--to-destination', containerPort: 80 }] }, /published\[0\]\.containerIp is "--to-destination", not an address/],
    ['endpoints', EP, { ...endpoint(), published: {} }, /field published is \{object\}, not a list/],
    ['endpoints', EP, { ...endpoint(), joined: 1 }, /field joined is 1, not true or false/],
    ['endpoints', EP, { ...endpoint(), networkId: '' }, /field networkId is "", not a Docker ID/],
    ['pools', POOL_ID, { ...pool(), pool: 'ten' }, /field pool is "ten", not an address\/length/],
    ['pools', POOL_ID, { ...pool(), options: [] }, /field options is \[list of 0\], not an object/],
    ['pools', POOL_ID, { ...pool(), subPool: '10.1.0.128/25' }, /the address pool record stored as "LocalDefault\/10.1.0.0\/24" describes "LocalDefault\/10.1.0.0\/24\/10.1.0.128\/25"/],
    ['pools', 'LocalDefault/10.9.0.0/24', pool(), /describes "LocalDefault\/10.1.0.0\/24"/],
    ['leases', LEASE_ID, { ...lease(), kind: 'other' }, /field kind is "other", not one of "gateway", "aux", "endpoint"/],
    ['leases', LEASE_ID, { ...lease(), address: '10.1.0.2/24' }, /field address is "10.1.0.2\/24", not an address/],
    ['leases', LEASE_ID, { ...lease(), owner: 3 }, /field owner is 3, not a string/],
    ['leases', `${POOL_ID}#10.1.0.3`, lease(), /the address lease record stored as .*#10.1.0.3" describes .*#10.1.0.2"/],
    ['meta', 'schema', { version: '1' }, /not a valid schema record: field version is "1"/],
    ['meta', 'ipam', null, /not a valid ipam record: the record is null, not an object/],
    ['meta', 'ipam', { ula48: '10.0.0.0/8' }, /field ula48 is "10.0.0.0\/8", not an IPv6 address\/length/],
    ['meta', 'engine', { id: 7 }, /not a valid engine record: field id is 7, not a string/],
    ['meta', 'docker-networks', { networks: null }, /field networks is null, not a list/],
    ['meta', 'docker-networks', { networks: [{ id: 'a', name: 'n', driver: 'bridge', subnets: [1] }] }, /field networks\[0\]\.subnets\[0\] is 1, not a string/],
    ['meta', 'something-new', null, /not a valid something-new record: the record is null, not an object/],
    ['volumes', 'x', {}, /records of collection "volumes" are unknown/],
  )
  for (const [c, id, value, expected] of cases) {
    const problem = checkStoredRecord(c, id, value)
    t.match(problem, expected, `${c}/${id.slice(0, 20)}: ${problem ?? 'accepted'}`)
  }
  t.comment(`${cases.length} bad records, each refused with its reason`)
})
