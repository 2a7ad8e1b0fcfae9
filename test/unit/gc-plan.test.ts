// core/gc-plan: which of tsnet's records Docker's view does not explain, and the two-pass confirmation.
import t from 'tap'
import { confirm, findUnexplained, needsInspection, staleKey, type Stale, type TsnetView } from '../../src/core/gc-plan.js'
import type { EndpointRecord, LeaseKind, LeaseRecord, NetworkRecord, PoolRecord } from '../../src/core/records.js'
import type { DockerEndpoint, DockerIpamConfig, DockerNetwork, DockerSnapshot } from '../../src/docker/docker-view.js'
import { dockerId } from './fixtures/util.js'

const NET = dockerId('0a')
const NET2 = dockerId('0b')
const FOREIGN = dockerId('f0')
const EP = dockerId('e1')
const EP2 = dockerId('e2')
const EP3 = dockerId('e3')
const NOW = '2024-01-01T00:00:00.000Z'
/** Pools and leases get their own times, so a verdict shows which record's createdAt it copied. */
const POOL_AT = '2024-01-01T00:01:00.000Z'
const LEASE_AT = '2024-01-01T00:02:00.000Z'

function network(id: string, pool = '10.0.0.0/24', gateway = '10.0.0.1/24'): NetworkRecord {
  return {
    id,
    mode: 'bridge',
    spec: { bridge: `tsbr-${id.slice(0, 10)}`, bridgeNamedByUser: false },
    mtu: 1500,
    internal: false,
    ipv6: false,
    ipv4Subnets: [{ pool, gateway }],
    ipv6Subnets: [],
    enableIpMasquerade: true,
    enableIcc: true,
    genericOptions: {},
    createdAt: NOW,
  }
}

function endpoint(id: string, networkId: string, address?: string): EndpointRecord {
  return {
    id,
    networkId,
    hostIf: `tsv${id.slice(0, 12)}`,
    containerIf: `tsc${id.slice(0, 12)}`,
    mac: '02:42:0a:00:00:02',
    macFromDocker: false,
    mtu: 1500,
    ...(address ? { address } : {}),
    portMappings: [],
    exposedPorts: [],
    joined: true,
    createdAt: NOW,
  }
}

type PoolWithLeases = PoolRecord & { leases: LeaseRecord[] }

/** A pool (created at POOL_AT) with leases (created at LEASE_AT unless a third element says otherwise). */
function pool(cidr: string, leases: Array<[string, LeaseKind, string?]> = [], opts: { subPool?: string; space?: string; createdAt?: string } = {}): PoolWithLeases {
  const space = opts.space ?? 'LocalDefault'
  const id = `${space}/${cidr}${opts.subPool ? `/${opts.subPool}` : ''}`
  return {
    id,
    addressSpace: space,
    pool: cidr,
    ...(opts.subPool ? { subPool: opts.subPool } : {}),
    v6: cidr.includes(':'),
    options: {},
    createdAt: opts.createdAt ?? POOL_AT,
    leases: leases.map(([address, kind, createdAt]) => ({ poolId: id, address, kind, createdAt: createdAt ?? LEASE_AT })),
  }
}

const view = (v: Partial<TsnetView>): TsnetView => ({ networks: [], endpoints: [], pools: [], ...v })

function cfg(subnet: string, more: Partial<DockerIpamConfig> = {}): DockerIpamConfig {
  return { subnet, auxAddresses: [], ...more }
}

/** A Docker network; `endpoints` undefined means it was not inspected. */
function dnet(id: string, ipam: DockerIpamConfig[], endpoints?: DockerEndpoint[]): DockerNetwork {
  return { id, scope: 'local', ipam, ...(endpoints ? { endpoints } : {}) }
}

const docker = (...networks: DockerNetwork[]): DockerSnapshot => ({ engineId: 'ENGINE-A', networks })

const keys = (s: Stale[]) => s.map(staleKey).sort()

t.test('everything explained: nothing is unexplained (baseline for the cases below)', async (t) => {
  const p = pool('10.0.0.0/24', [['10.0.0.1', 'gateway'], ['10.0.0.2', 'endpoint'], ['10.0.0.3', 'endpoint']])
  const v = view({ networks: [network(NET)], endpoints: [endpoint(EP, NET, '10.0.0.2/24'), endpoint(EP2, NET, '10.0.0.3/24')], pools: [p] })
  const d = docker(dnet(NET, [cfg('10.0.0.0/24')], [{ endpointId: EP, ipv4: '10.0.0.2/24' }, { endpointId: EP2, ipv4: '10.0.0.3/24' }]))
  t.same(findUnexplained(v, d), [])
})

t.test('a network Docker does not list is unexplained; its endpoints go with it', async (t) => {
  const v = view({ networks: [network(NET), network(NET2, '10.0.1.0/24', '10.0.1.1/24')], endpoints: [endpoint(EP, NET2, '10.0.1.2/24')] })
  const d = docker(dnet(NET, [cfg('10.0.0.0/24')], []))
  t.same(findUnexplained(v, d), [{ kind: 'network', networkId: NET2 }], 'only the network, no separate endpoint verdict')
})

t.test('an endpoint missing from its inspected Docker network is unexplained', async (t) => {
  const v = view({ networks: [network(NET)], endpoints: [endpoint(EP, NET, '10.0.0.2/24'), endpoint(EP2, NET, '10.0.0.3/24')] })
  const d = docker(dnet(NET, [cfg('10.0.0.0/24')], [{ endpointId: EP, ipv4: '10.0.0.2/24' }]))
  t.same(findUnexplained(v, d), [{ kind: 'endpoint', networkId: NET, endpointId: EP2 }])
  const empty = docker(dnet(NET, [cfg('10.0.0.0/24')], []))
  t.same(keys(findUnexplained(v, empty)), [`endpoint:${EP}`, `endpoint:${EP2}`], 'an inspected network without containers explains no endpoint')
})

t.test('an endpoint Docker lists under another network is not explained by it', async (t) => {
  const v = view({ networks: [network(NET), network(NET2, '10.0.1.0/24', '10.0.1.1/24')], endpoints: [endpoint(EP, NET)] })
  const d = docker(dnet(NET, [cfg('10.0.0.0/24')], []), dnet(NET2, [cfg('10.0.1.0/24')], [{ endpointId: EP }]))
  t.same(findUnexplained(v, d), [{ kind: 'endpoint', networkId: NET, endpointId: EP }])
})

t.test('endpoints of a network that was not inspected get no verdict', async (t) => {
  const v = view({ networks: [network(NET)], endpoints: [endpoint(EP, NET, '10.0.0.2/24')] })
  t.same(findUnexplained(v, docker(dnet(NET, [cfg('10.0.0.0/24')]))), [])
})

t.test('a pool whose subnet no Docker network uses is unexplained, without per-lease verdicts', async (t) => {
  const p = pool('10.5.0.0/24', [['10.5.0.1', 'gateway'], ['10.5.0.2', 'endpoint']])
  const d = docker(dnet(FOREIGN, [cfg('10.6.0.0/24'), cfg('10.5.1.0/24')], []), dnet(NET, [cfg('10.5.0.0/16')], []))
  t.same(findUnexplained(view({ pools: [p] }), d), [{ kind: 'pool', poolId: p.id, createdAt: POOL_AT }], 'other subnets (even a containing one) do not explain it')
  t.same(findUnexplained(view({ pools: [p] }), docker()), [{ kind: 'pool', poolId: p.id, createdAt: POOL_AT }], 'Docker has no networks at all')
})

t.test('a pool used by a network of another driver is explained by that network', async (t) => {
  const p = pool('10.5.0.0/24', [['10.5.0.2', 'endpoint']])
  const d = docker(dnet(FOREIGN, [cfg('10.5.0.0/24')], [{ endpointId: EP, ipv4: '10.5.0.2/24' }]))
  t.same(findUnexplained(view({ pools: [p] }), d), [])
})

t.test('leases are explained by container addresses in CIDR form (ours are bare)', async (t) => {
  const p4 = pool('10.0.0.0/24', [['10.0.0.2', 'endpoint'], ['10.0.0.3', 'endpoint'], ['10.0.0.4', 'endpoint']])
  const p6 = pool('fd00:1::/64', [['fd00:1::2', 'endpoint'], ['fd00:1::3', 'endpoint']])
  const d = docker(dnet(NET, [cfg('10.0.0.0/24'), cfg('fd00:1::/64')], [
    { endpointId: EP, ipv4: '10.0.0.2/24', ipv6: 'fd00:1::2/64' },
    { endpointId: EP2, ipv4: '10.0.0.3/24' },
  ]))
  t.same(keys(findUnexplained(view({ pools: [p4, p6] }), d)), [`lease:${p4.id}#10.0.0.4@${LEASE_AT}`, `lease:${p6.id}#fd00:1::3@${LEASE_AT}`].sort())
  const stale = findUnexplained(view({ pools: [p4] }), d)
  t.same(stale, [{ kind: 'lease', poolId: p4.id, address: '10.0.0.4', createdAt: LEASE_AT }], 'the verdict carries our address, as the pool knows it')
})

t.test('verdicts carry the createdAt of the very record judged: each lease its own, a pool the pool\'s', async (t) => {
  const OLD = '2023-12-31T23:00:00.000Z'
  const p = pool('10.0.0.0/24', [['10.0.0.1', 'gateway', NOW], ['10.0.0.2', 'endpoint', OLD], ['10.0.0.3', 'endpoint']])
  const d = docker(dnet(NET, [cfg('10.0.0.0/24')], []))
  t.same(findUnexplained(view({ pools: [p] }), d), [
    { kind: 'lease', poolId: p.id, address: '10.0.0.2', createdAt: OLD },
    { kind: 'lease', poolId: p.id, address: '10.0.0.3', createdAt: LEASE_AT },
  ], 'not the pool\'s createdAt, not another lease\'s')
  const remade = pool('10.0.0.0/24', [['10.0.0.1', 'gateway', NOW]], { createdAt: NOW })
  t.same(findUnexplained(view({ pools: [remade] }), docker()), [{ kind: 'pool', poolId: remade.id, createdAt: NOW }], 'a pool\'s verdict carries its own createdAt')
})

t.test('leases are explained by aux addresses and by a gateway Docker shows', async (t) => {
  const p = pool('10.0.0.0/24', [['10.0.0.1', 'endpoint'], ['10.0.0.250', 'endpoint'], ['10.0.0.251', 'endpoint'], ['10.0.0.252', 'endpoint']])
  const d = docker(dnet(NET, [cfg('10.0.0.0/24', { gateway: '10.0.0.1', auxAddresses: ['10.0.0.250', '10.0.0.251/24'] })], []))
  t.same(findUnexplained(view({ pools: [p] }), d), [{ kind: 'lease', poolId: p.id, address: '10.0.0.252', createdAt: LEASE_AT }])
})

t.test('gateway-kind leases are never collected individually', async (t) => {
  const p = pool('10.0.0.0/24', [['10.0.0.1', 'gateway'], ['10.0.0.9', 'endpoint']])
  const noGateway = docker(dnet(NET, [cfg('10.0.0.0/24')], []))
  t.same(findUnexplained(view({ pools: [p] }), noGateway), [{ kind: 'lease', poolId: p.id, address: '10.0.0.9', createdAt: LEASE_AT }],
    'Docker shows no gateway: the gateway lease stays')
  const otherGateway = docker(dnet(NET, [cfg('10.0.0.0/24', { gateway: '10.0.0.254' })], []))
  t.same(findUnexplained(view({ pools: [p] }), otherGateway), [{ kind: 'lease', poolId: p.id, address: '10.0.0.9', createdAt: LEASE_AT }],
    'Docker shows another gateway: still no verdict on ours')
  t.same(findUnexplained(view({ pools: [p] }), docker()), [{ kind: 'pool', poolId: p.id, createdAt: POOL_AT }], 'an unused pool goes whole, gateway included')
})

t.test('GlobalDefault pools are skipped', async (t) => {
  const g = pool('10.0.0.0/24', [['10.0.0.1', 'gateway'], ['10.0.0.2', 'endpoint']], { space: 'GlobalDefault' })
  t.same(findUnexplained(view({ pools: [g] }), docker()), [], 'no network uses it: no verdict')
  t.same(findUnexplained(view({ pools: [g] }), docker(dnet(NET, [cfg('10.0.0.0/24')], []))), [], 'no lease verdicts either')
  const l = pool('10.1.0.0/24')
  t.same(findUnexplained(view({ pools: [g, l] }), docker()), [{ kind: 'pool', poolId: l.id, createdAt: POOL_AT }], 'a LocalDefault pool beside it is judged')
})

t.test('IPv6 canonical forms compare equal', async (t) => {
  const p = pool('fd00::/64', [['fd00::2', 'endpoint'], ['fd00:0::3', 'endpoint'], ['fd00::4', 'endpoint'], ['fd00::5', 'endpoint']])
  const d = docker(dnet(NET, [cfg('fd00:0:0::/64', { auxAddresses: ['fd00:0:0:0::4'] })], [
    { endpointId: EP, ipv6: 'fd00:0::2/64' },
    { endpointId: EP2, ipv6: 'fd00::3/64' },
  ]))
  t.same(findUnexplained(view({ pools: [p] }), d), [{ kind: 'lease', poolId: p.id, address: 'fd00::5', createdAt: LEASE_AT }],
    'subnet fd00:0:0::/64 is our fd00::/64; fd00:0::2 is fd00::2 (both ways); aux fd00:0:0:0::4 is fd00::4')
})

t.test('a pool with an IP range is matched only by a Docker network with the same IPRange', async (t) => {
  const ranged = pool('10.0.0.0/16', [['10.0.1.2', 'endpoint']], { subPool: '10.0.1.0/24' })
  const plain = pool('10.0.0.0/16', [['10.0.0.2', 'endpoint']])
  const withRange = docker(dnet(NET, [cfg('10.0.0.0/16', { ipRange: '10.0.1.0/24' })], [{ endpointId: EP, ipv4: '10.0.1.2/16' }]))
  const withoutRange = docker(dnet(NET, [cfg('10.0.0.0/16')], [{ endpointId: EP, ipv4: '10.0.0.2/16' }]))
  const otherRange = docker(dnet(NET, [cfg('10.0.0.0/16', { ipRange: '10.0.2.0/24' })], [{ endpointId: EP, ipv4: '10.0.1.2/16' }]))
  t.same(findUnexplained(view({ pools: [ranged] }), withRange), [], 'same subnet, same range')
  t.same(findUnexplained(view({ pools: [ranged] }), withoutRange), [{ kind: 'pool', poolId: ranged.id, createdAt: POOL_AT }], 'same subnet, no range')
  t.same(findUnexplained(view({ pools: [ranged] }), otherRange), [{ kind: 'pool', poolId: ranged.id, createdAt: POOL_AT }], 'same subnet, another range')
  t.same(findUnexplained(view({ pools: [plain] }), withRange), [{ kind: 'pool', poolId: plain.id, createdAt: POOL_AT }], 'a pool without range is not used by a ranged network')
  t.same(findUnexplained(view({ pools: [plain] }), withoutRange), [])
})

t.test('leases get no verdict while a network using their pool was not inspected', async (t) => {
  const p = pool('10.0.0.0/24', [['10.0.0.2', 'endpoint'], ['10.0.0.3', 'endpoint']])
  const d = docker(dnet(NET, [cfg('10.0.0.0/24')], [{ endpointId: EP, ipv4: '10.0.0.2/24' }]), dnet(FOREIGN, [cfg('10.0.0.0/24')]))
  t.same(findUnexplained(view({ pools: [p] }), d), [], 'one user inspected, one not: no verdict')
  const both = docker(dnet(NET, [cfg('10.0.0.0/24')], [{ endpointId: EP, ipv4: '10.0.0.2/24' }]), dnet(FOREIGN, [cfg('10.0.0.0/24')], [{ endpointId: EP3, ipv4: '10.0.0.3/24' }]))
  t.same(findUnexplained(view({ pools: [p] }), both), [], 'addresses of every user explain the pool\'s leases')
})

t.test('needsInspection picks tsnet\'s networks and networks holding a tsnet pool\'s subnet', async (t) => {
  const v = view({ networks: [network(NET)], pools: [pool('10.5.0.0/24'), pool('fd00:1::/64'), pool('10.0.0.0/16', [], { subPool: '10.0.1.0/24' })] })
  const inspect = needsInspection(v)
  t.equal(inspect({ id: NET, subnets: [] }), true, 'tsnet\'s own network, whatever its subnets')
  t.equal(inspect({ id: FOREIGN, subnets: ['10.5.0.0/24'] }), true, 'a foreign network on a tsnet pool')
  t.equal(inspect({ id: FOREIGN, subnets: ['192.168.0.0/24', '10.5.0.0/24'] }), true, 'any of its subnets')
  t.equal(inspect({ id: FOREIGN, subnets: ['fd00:1:0::/64'] }), true, 'IPv6 subnet in another written form')
  t.equal(inspect({ id: FOREIGN, subnets: ['10.0.0.0/16'] }), true, 'the subnet of a pool with an IP range')
  t.equal(inspect({ id: FOREIGN, subnets: ['10.5.0.0/16'] }), false, 'a containing subnet is another subnet')
  t.equal(inspect({ id: FOREIGN, subnets: ['172.17.0.0/16'] }), false, 'an unrelated network')
  t.equal(inspect({ id: FOREIGN, subnets: [] }), false, 'a network without subnets')
  t.equal(needsInspection(view({}))({ id: NET, subnets: ['10.5.0.0/24'] }), false, 'nothing of tsnet\'s: nothing to inspect')
})

t.test('staleKey tells kinds and items apart', async (t) => {
  const items: Stale[] = [
    { kind: 'endpoint', networkId: NET, endpointId: EP },
    { kind: 'network', networkId: NET },
    { kind: 'lease', poolId: 'LocalDefault/10.0.0.0/24', address: '10.0.0.2', createdAt: LEASE_AT },
    { kind: 'lease', poolId: 'LocalDefault/10.0.0.0/24', address: '10.0.0.3', createdAt: LEASE_AT },
    { kind: 'pool', poolId: 'LocalDefault/10.0.0.0/24', createdAt: POOL_AT },
  ]
  t.equal(new Set(items.map(staleKey)).size, items.length)
})

t.test('staleKey: a record made again (same address or pool, new createdAt) is another item', async (t) => {
  const poolId = 'LocalDefault/10.0.0.0/24'
  const lease = (createdAt: string): Stale => ({ kind: 'lease', poolId, address: '10.0.0.2', createdAt })
  const poolItem = (createdAt: string): Stale => ({ kind: 'pool', poolId, createdAt })
  t.not(staleKey(lease(LEASE_AT)), staleKey(lease(NOW)), 'the same address leased again')
  t.not(staleKey(poolItem(POOL_AT)), staleKey(poolItem(NOW)), 'the same pool requested again')
  t.equal(staleKey(lease(LEASE_AT)), staleKey({ kind: 'lease', poolId, address: '10.0.0.2', createdAt: LEASE_AT }), 'the same record: the same key')
  t.not(staleKey(lease(POOL_AT)), staleKey(poolItem(POOL_AT)), 'a lease and a pool with the same createdAt differ')
})

t.test('confirm: first sighting only suspects; collected once suspected minAgeMs ago', async (t) => {
  const a: Stale = { kind: 'endpoint', networkId: NET, endpointId: EP }
  const b: Stale = { kind: 'pool', poolId: 'LocalDefault/10.0.0.0/24', createdAt: POOL_AT }
  const first = confirm([a], new Map(), 1000, 500)
  t.same(first.collect, [], 'first sighting: nothing collected')
  t.same([...first.suspects], [[staleKey(a), 1000]], 'but suspected since now')
  const early = confirm([a, b], first.suspects, 1499, 500)
  t.same(early.collect, [], 'seen again too early')
  t.same(early.suspects.get(staleKey(a)), 1000, 'the first sighting time is kept')
  t.same(early.suspects.get(staleKey(b)), 1499)
  const due = confirm([a, b], early.suspects, 1500, 500)
  t.same(due.collect, [a], 'exactly minAgeMs later: collected; the newer suspect is not')
  const later = confirm([a, b], due.suspects, 2000, 500)
  t.same(later.collect, [a, b])
})

t.test('confirm: a suspect Docker explains again is forgotten', async (t) => {
  const a: Stale = { kind: 'lease', poolId: 'LocalDefault/10.0.0.0/24', address: '10.0.0.2', createdAt: LEASE_AT }
  const first = confirm([a], new Map(), 1000, 500)
  const explained = confirm([], first.suspects, 1600, 500)
  t.same(explained.collect, [])
  t.equal(explained.suspects.size, 0, 'forgotten')
  const again = confirm([a], explained.suspects, 2000, 500)
  t.same(again.collect, [], 'unexplained again later: only a new suspicion')
  t.equal(again.suspects.get(staleKey(a)), 2000, 'suspected from the new sighting')
  t.same(confirm([a], again.suspects, 2499, 500).collect, [])
  t.same(confirm([a], again.suspects, 2500, 500).collect, [a])
})

t.test('confirm: a lease or pool made again (new createdAt) is a new suspect, not the old one', async (t) => {
  const poolId = 'LocalDefault/10.0.0.0/24'
  const oldLease: Stale = { kind: 'lease', poolId, address: '10.0.0.2', createdAt: LEASE_AT }
  const newLease: Stale = { kind: 'lease', poolId, address: '10.0.0.2', createdAt: NOW }
  const oldPool: Stale = { kind: 'pool', poolId, createdAt: POOL_AT }
  const newPool: Stale = { kind: 'pool', poolId, createdAt: NOW }
  const first = confirm([oldLease, oldPool], new Map(), 1000, 500)
  const remade = confirm([newLease, newPool], first.suspects, 2000, 500)
  t.same(remade.collect, [], 'long past minAgeMs for the old records, but the new ones were only just seen')
  t.same([...remade.suspects].sort(), [[staleKey(newLease), 2000], [staleKey(newPool), 2000]].sort(), 'suspected from now; the old records are forgotten')
  t.same(confirm([newLease, newPool], remade.suspects, 2499, 500).collect, [], 'still too early')
  t.same(confirm([newLease, newPool], remade.suspects, 2500, 500).collect, [newLease, newPool], 'collected once they in turn are old enough')
})

t.test('confirm does not change the suspects it is given', async (t) => {
  const a: Stale = { kind: 'network', networkId: NET }
  const before = new Map([[staleKey(a), 1000], ['network:gone', 900]])
  const copy = new Map(before)
  const out = confirm([a], before, 5000, 500)
  t.same(out.collect, [a])
  t.same([...before], [...copy])
  t.notOk(out.suspects.has('network:gone'))
})
