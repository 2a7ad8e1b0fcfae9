// services/gc-service with a scripted DockerView over real NetworkService/IpamService, FakeHost and a FileStore.
import t, { type Test } from 'tap'
import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { DOCKER_DEFAULT_POOLS_TEXT, parseDefaultPools } from '../../src/core/ipam.js'
import { bridgeNameFor, containerVethFor, hostVethFor, networkTag } from '../../src/core/names.js'
import type { EndpointRecord, LeaseRecord, NetworkRecord, PoolRecord } from '../../src/core/records.js'
import type { DockerEndpoint, DockerNetwork } from '../../src/docker/docker-view.js'
import { FakeHost } from '../../src/host/fake-host.js'
import { OPT } from '../../src/protocol/types.js'
import { GcService, type GcOutcome } from '../../src/services/gc-service.js'
import { GC_COOLDOWN_MS, IpamService } from '../../src/services/ipam-service.js'
import { NetworkService } from '../../src/services/network-service.js'
import { FileStore } from '../../src/store/file-store.js'
import { ManualClock } from '../../src/engine/clock.js'
import { FakeDocker, mockClock } from './fixtures/gc-fakes.js'
import { dockerId, expectTsnetError, log, tempDir } from './fixtures/util.js'

const NET = dockerId('0a')
const NET2 = dockerId('0b')
const EP = dockerId('e1')
const EP2 = dockerId('e2')
const ENGINE_A = 'AAAA:1111:ENGINE:A'
const ENGINE_B = 'BBBB:2222:ENGINE:B'
const MIN_AGE = 60_000
const SUBNET = '10.9.0.0/24'
const POOL_ID = `LocalDefault/${SUBNET}`
const SUBNET2 = '10.8.0.0/24'
const POOL2_ID = `LocalDefault/${SUBNET2}`

async function setup(t: Test) {
  const dir = await tempDir(t)
  const clock = mockClock(t)
  const host = new FakeHost()
  const docker = new FakeDocker(ENGINE_A)
  const open = async () => {
    const store = await FileStore.open(dir)
    const network = new NetworkService(store, host, {})
    const ipam = new IpamService(store, host, { defaultPools: parseDefaultPools(DOCKER_DEFAULT_POOLS_TEXT) })
    await network.load()
    await ipam.load()
    const gc = new GcService(store, docker, network, ipam, { intervalMs: MIN_AGE, minAgeMs: MIN_AGE }, log)
    await gc.load()
    return { store, network, ipam, gc }
  }
  const services = await open()
  /** Every file of the store with its content. */
  const storeState = async () => {
    const out: Record<string, string> = {}
    for (const c of ['networks', 'endpoints', 'pools', 'leases', 'meta']) {
      for (const f of (await readdir(join(dir, 'store', c))).sort()) out[`${c}/${f}`] = await readFile(join(dir, 'store', c, f), 'utf8')
    }
    return out
  }
  return { dir, clock, host, docker, ...services, reopen: open, storeState }
}

type Env = Awaited<ReturnType<typeof setup>>

/** What Docker does for `docker network create --subnet`: pool, gateway lease, CreateNetwork. */
async function makeNetwork(env: Env, id = NET, subnet = SUBNET) {
  const { PoolID } = await env.ipam.requestPool({ AddressSpace: 'LocalDefault', Pool: subnet }, log)
  const gw = await env.ipam.requestAddress({ PoolID, Options: { [OPT.requestAddressType]: OPT.gatewayType } }, log)
  await env.network.createNetwork({
    NetworkID: id,
    Options: { [OPT.generic]: {}, [OPT.enableIpv6]: false },
    IPv4Data: [{ AddressSpace: 'LocalDefault', Pool: subnet, Gateway: gw.Address }],
    IPv6Data: [],
  }, log)
  return PoolID
}

/** What Docker does for a container on the network: an address, then CreateEndpoint. */
async function makeEndpoint(env: Env, poolId: string, networkId: string, endpointId: string) {
  const { Address } = await env.ipam.requestAddress({ PoolID: poolId }, log)
  await env.network.createEndpoint({ NetworkID: networkId, EndpointID: endpointId, Interface: { Address, AddressIPv6: '', MacAddress: '' } }, log)
  return Address
}

/** Docker's view of a network on `subnet` (no gateway shown, as Docker does for IPAM-chosen gateways). */
const dnet = (id: string, subnet: string, endpoints: DockerEndpoint[]): DockerNetwork => ({ id, scope: 'local', ipam: [{ subnet, auxAddresses: [] }], endpoints })

const ran = (o: GcOutcome) => (o.ran ? o : undefined)

/** The createdAt of a lease as IPAM holds it (what a GC verdict on it must carry). */
function leaseAt(env: Pick<Env, 'ipam'>, poolId: string, address: string): string {
  const lease = env.ipam.poolsWithLeases().find((p) => p.id === poolId)?.leases.find((l) => l.address === address)
  if (!lease) throw new Error(`test bug: no lease ${address} in ${poolId}`)
  return lease.createdAt
}

/** The createdAt of a pool as IPAM holds it. */
function poolAt(env: Pick<Env, 'ipam'>, poolId: string): string {
  const pool = env.ipam.poolsWithLeases().find((p) => p.id === poolId)
  if (!pool) throw new Error(`test bug: no pool ${poolId}`)
  return pool.createdAt
}

/**
 * createdAt comes from `new Date()`, the wall clock, which mockClock does not move (it replaces
 * Date.now only) and which counts milliseconds: wait until it shows another millisecond, so a
 * record made after this is told apart from one made before.
 */
async function nextWallMillisecond(): Promise<void> {
  const start = new Date().toISOString()
  while (new Date().toISOString() === start) await new Promise((resolve) => setTimeout(resolve, 1))
}

/** Leased addresses of a pool, sorted, as IPAM holds them and as the store holds them. */
async function leases(env: Pick<Env, 'ipam' | 'store'>, poolId = POOL_ID) {
  const memory = [...(env.ipam.snapshot().find((p) => p.id === poolId)?.leases ?? [])].sort()
  const stored = (await env.store.list<LeaseRecord>('leases')).filter((l) => l.value.poolId === poolId).map((l) => l.value.address).sort()
  return { memory, stored }
}

t.test('when Docker explains everything, passes collect nothing', async (t) => {
  const env = await setup(t)
  await makeNetwork(env)
  const addr = await makeEndpoint(env, POOL_ID, NET, EP)
  env.docker.networks = [dnet(NET, SUBNET, [{ endpointId: EP, ipv4: addr }]), dnet(dockerId('f0'), '172.17.0.0/16', [])]
  const before = await env.storeState()
  const hostBefore = env.host.state()
  for (let i = 0; i < 3; i++) {
    t.same(await env.gc.pass(), { ran: true, unexplained: 0, collected: [] }, `pass ${i + 1}`)
    env.clock.advance(MIN_AGE)
  }
  t.same(env.docker.inspected, [NET], 'tsnet\'s network was inspected, the foreign one was not')
  const after = await env.storeState()
  delete after['meta/engine.json']
  t.same(after, before, 'the store is unchanged (but for the pinned engine)')
  t.equal(env.host.state(), hostBefore)
})

t.test('the first pass pins the engine ID in the store', async (t) => {
  const env = await setup(t)
  t.notOk((await env.storeState())['meta/engine.json'], 'nothing pinned before the first pass')
  t.match(await env.gc.pass(), { ran: true })
  const meta = await env.store.list<{ id: string }>('meta')
  t.same(meta.find((m) => m.id === 'engine')?.value, { id: ENGINE_A })
  env.docker.engineId = ENGINE_B
  t.match(await env.gc.pass(), { ran: false }, 'the pin holds in the same process')
  t.same((await env.store.list<{ id: string }>('meta')).find((m) => m.id === 'engine')?.value, { id: ENGINE_A }, 'and is not overwritten')
})

t.test('another engine ID: nothing is collected, the reason names both IDs', async (t) => {
  const env = await setup(t)
  t.match(await env.gc.pass(), { ran: true }, 'engine A pinned while the store is still empty')
  await makeNetwork(env)
  await makeEndpoint(env, POOL_ID, NET, EP)
  env.docker.networks = [] // Docker A knows nothing: everything of tsnet's is unexplained
  t.match(await env.gc.pass(), { ran: true, collected: [] }, 'engine A pinned, everything suspected')
  const before = await env.storeState()
  const hostBefore = env.host.state()

  env.clock.advance(MIN_AGE * 2)
  env.docker.engineId = ENGINE_B
  const refused = await env.gc.pass()
  t.equal(refused.ran, false)
  const reason = refused.ran ? '' : refused.reason
  t.match(reason, ENGINE_A, 'names the stored engine')
  t.match(reason, ENGINE_B, 'names the engine Docker reports')
  t.same(await env.storeState(), before, 'the store is untouched')
  t.equal(env.host.state(), hostBefore, 'the host is untouched')

  await t.test('also after a restart (the pin is read from the store)', async (t) => {
    const again = await env.reopen()
    const outcome = await again.gc.pass()
    t.match(outcome, { ran: false, reason: new RegExp(`${ENGINE_A}.*${ENGINE_B}`) })
    t.same(await env.storeState(), before)
    t.equal(env.host.state(), hostBefore)
  })

  env.docker.engineId = ENGINE_A
  const back = ran(await env.gc.pass())
  t.ok(back && back.collected.length > 0, 'back on engine A, the same items are collected (they were collectable all along)')
})

t.test('Docker not answering: ran false, nothing changed', async (t) => {
  const env = await setup(t)
  t.match(await env.gc.pass(), { ran: true }, 'engine A pinned while the store is still empty')
  await makeNetwork(env)
  env.docker.fail = new Error('connect ENOENT /var/run/docker.sock')
  const before = await env.storeState()
  const hostBefore = env.host.state()
  const outcome = await env.gc.pass()
  t.match(outcome, { ran: false, reason: /connect ENOENT/ })
  t.same(await env.storeState(), before, 'nothing removed')
  t.equal(env.host.state(), hostBefore)
  env.clock.advance(MIN_AGE * 2)
  t.match(await env.gc.pass(), { ran: false }, 'still not answering')
  t.same(await env.storeState(), before)

  env.docker.fail = undefined
  env.docker.networks = []
  const first = ran(await env.gc.pass())
  t.same(first?.collected, [], 'the first pass that reaches Docker only suspects, however long Docker was away')
  t.equal(env.host.state(), hostBefore)
})

t.test('a failed Docker call between two passes does not reset the suspicion', async (t) => {
  const env = await setup(t)
  t.match(await env.gc.pass(), { ran: true }, 'engine A pinned while the store is still empty')
  await makeNetwork(env)
  env.docker.networks = []
  t.match(await env.gc.pass(), { ran: true, collected: [] })
  env.clock.advance(MIN_AGE / 2)
  env.docker.fail = new Error('timeout')
  t.match(await env.gc.pass(), { ran: false })
  env.clock.advance(MIN_AGE / 2)
  env.docker.fail = undefined
  const outcome = ran(await env.gc.pass())
  t.same(outcome?.collected.map((s) => s.kind).sort(), ['network', 'pool'])
})

t.test('an endpoint missing from Docker\'s view is removed on a pass after minAgeMs', async (t) => {
  const env = await setup(t)
  await makeNetwork(env)
  const keep = await makeEndpoint(env, POOL_ID, NET, EP)
  const gone = await makeEndpoint(env, POOL_ID, NET, EP2)
  t.equal(gone, '10.9.0.3/24')
  env.docker.networks = [dnet(NET, SUBNET, [{ endpointId: EP, ipv4: keep }])]

  const first = ran(await env.gc.pass())
  t.same(first, { ran: true, unexplained: 2, collected: [] }, 'first pass: the endpoint and its lease are only suspected')
  t.ok(env.host.links.has(hostVethFor(EP2)), 'the veth survives the first pass')
  t.equal((await env.store.list('endpoints')).length, 2)

  env.clock.advance(MIN_AGE - 1)
  t.same(ran(await env.gc.pass())?.collected, [], 'one millisecond early: still kept')
  t.ok(env.host.links.has(hostVethFor(EP2)))

  env.clock.advance(1)
  const leasedAt = leaseAt(env, POOL_ID, '10.9.0.3')
  const due = ran(await env.gc.pass())
  t.same(due?.collected, [
    { kind: 'endpoint', networkId: NET, endpointId: EP2 },
    { kind: 'lease', poolId: POOL_ID, address: '10.9.0.3', createdAt: leasedAt },
  ], 'collected: the endpoint, then its address (the verdict names the lease record by its createdAt)')
  t.notOk(env.host.links.has(hostVethFor(EP2)), 'host end of the veth gone')
  t.notOk(env.host.links.has(containerVethFor(EP2)), 'container end gone')
  t.same((await env.store.list<EndpointRecord>('endpoints')).map((e) => e.value.id), [EP], 'record gone from the store')
  t.same(env.network.snapshot().endpoints.map((e) => e.id), [EP], 'and from memory')
  t.ok(env.host.links.has(hostVethFor(EP)), 'the explained endpoint stays')
  t.ok(env.host.links.has(bridgeNameFor(NET)), 'the network stays')

  env.clock.advance(MIN_AGE)
  t.same(await env.gc.pass(), { ran: true, unexplained: 0, collected: [] }, 'nothing left to collect')
})

t.test('a network missing from Docker\'s view is removed with its bridge, entries, endpoints and pool', async (t) => {
  const env = await setup(t)
  await makeNetwork(env)
  await makeEndpoint(env, POOL_ID, NET, EP)
  const pool2 = await makeNetwork(env, NET2, SUBNET2)
  const keep = await makeEndpoint(env, pool2, NET2, EP2)
  env.docker.networks = [dnet(NET2, SUBNET2, [{ endpointId: EP2, ipv4: keep }])]
  t.match(await env.gc.pass(), { ran: true, collected: [] })
  t.ok(env.host.links.has(bridgeNameFor(NET)), 'still there after the first pass')

  env.clock.advance(MIN_AGE)
  const poolCreatedAt = poolAt(env, POOL_ID)
  const due = ran(await env.gc.pass())
  t.same(due?.collected, [{ kind: 'network', networkId: NET }, { kind: 'pool', poolId: POOL_ID, createdAt: poolCreatedAt }])
  t.notOk(env.host.links.has(bridgeNameFor(NET)), 'bridge gone')
  t.notOk([...env.host.sets.values()].some((e) => e.comment === networkTag(NET)), 'its ipset entries gone')
  t.notOk(env.host.groups.has(bridgeNameFor(NET)), 'its device group gone with the bridge')
  t.notOk(env.host.links.has(hostVethFor(EP)), 'its endpoint\'s veth gone')
  t.same((await env.store.list<NetworkRecord>('networks')).map((n) => n.value.id), [NET2])
  t.same((await env.store.list<EndpointRecord>('endpoints')).map((e) => e.value.id), [EP2])
  t.same((await env.store.list<PoolRecord>('pools')).map((p) => p.value.id), [POOL2_ID])
  t.notOk((await env.store.list<LeaseRecord>('leases')).some((l) => l.value.poolId === POOL_ID), 'the pool\'s leases went with it')
  t.ok(env.host.links.has(bridgeNameFor(NET2)), 'the other network stays')
  t.same([...env.host.sets.keys()].sort(), [`tsnet-masq4 ${SUBNET2}`, `tsnet-src4 ${SUBNET2},${bridgeNameFor(NET2)}`], 'only the other network\'s entries are left')
  t.equal(env.host.edge, true, "tsnet's chains stay while a network exists")
  t.ok(env.host.links.has(hostVethFor(EP2)))
})

t.test('a stale lease is released while the gateway lease stays', async (t) => {
  const env = await setup(t)
  await makeNetwork(env)
  const a = await makeEndpoint(env, POOL_ID, NET, EP) // 10.9.0.2
  const stale = await env.ipam.requestAddress({ PoolID: POOL_ID }, log) // Docker leased it, then never released it
  const last = await env.ipam.requestAddress({ PoolID: POOL_ID }, log)
  t.same([stale.Address, last.Address], ['10.9.0.3/24', '10.9.0.4/24'])
  env.docker.networks = [dnet(NET, SUBNET, [{ endpointId: EP, ipv4: a }, { endpointId: dockerId('c4'), ipv4: last.Address }])]
  t.match(await env.gc.pass(), { ran: true, unexplained: 1, collected: [] })
  t.same(env.ipam.snapshot()[0]?.leases.sort(), ['10.9.0.1', '10.9.0.2', '10.9.0.3', '10.9.0.4'], 'first pass: still leased')
  env.clock.advance(MIN_AGE)
  const staleAt = leaseAt(env, POOL_ID, '10.9.0.3')
  t.same(ran(await env.gc.pass())?.collected, [{ kind: 'lease', poolId: POOL_ID, address: '10.9.0.3', createdAt: staleAt }])
  t.same(env.ipam.snapshot()[0]?.leases.sort(), ['10.9.0.1', '10.9.0.2', '10.9.0.4'], 'the gateway lease stays although Docker does not show it')
  t.same((await env.store.list<LeaseRecord>('leases')).map((l) => l.value.address).sort(), ['10.9.0.1', '10.9.0.2', '10.9.0.4'], 'and so in the store')
  await t.rejects(env.ipam.requestAddress({ PoolID: POOL_ID, Address: '10.9.0.1' }, log), { name: 'TsnetError', kind: 'conflict' }, 'the gateway is still taken')
})

t.test('an address GC released cools down: automatic requests avoid it for GC_COOLDOWN_MS, a preferred one may take it', async (t) => {
  const env = await setup(t)
  await makeNetwork(env) // gateway 10.9.0.1
  await env.ipam.requestAddress({ PoolID: POOL_ID }, log) // 10.9.0.2, Docker leased it and never released it
  env.docker.networks = [dnet(NET, SUBNET, [])]
  await env.gc.pass()
  env.clock.advance(MIN_AGE)
  t.match(ran(await env.gc.pass())?.collected, [{ kind: 'lease', address: '10.9.0.2' }])

  t.same(await env.ipam.requestAddress({ PoolID: POOL_ID }, log), { Address: '10.9.0.3/24', Data: {} }, 'cooling: an automatic request skips 10.9.0.2, the lowest free address')
  env.clock.advance(GC_COOLDOWN_MS - 1)
  t.same(await env.ipam.requestAddress({ PoolID: POOL_ID }, log), { Address: '10.9.0.4/24', Data: {} }, 'one millisecond before the cooldown ends: still skipped')
  t.same(await env.ipam.requestAddress({ PoolID: POOL_ID, Address: '10.9.0.2' }, log), { Address: '10.9.0.2/24', Data: {} }, 'a preferred request may take a cooling address')
  t.same((await leases(env)).stored, ['10.9.0.1', '10.9.0.2', '10.9.0.3', '10.9.0.4'])
  await t.rejects(env.ipam.requestAddress({ PoolID: POOL_ID, Address: '10.9.0.2' }, log), { name: 'TsnetError', kind: 'conflict' }, 'and then it is taken like any other')
})

t.test('after GC_COOLDOWN_MS a collected address is handed out automatically again', async (t) => {
  const env = await setup(t)
  await makeNetwork(env)
  await env.ipam.requestAddress({ PoolID: POOL_ID }, log) // 10.9.0.2, stale
  env.docker.networks = [dnet(NET, SUBNET, [])]
  await env.gc.pass()
  env.clock.advance(MIN_AGE)
  t.match(ran(await env.gc.pass())?.collected, [{ kind: 'lease', address: '10.9.0.2' }])
  env.clock.advance(GC_COOLDOWN_MS)
  t.same(await env.ipam.requestAddress({ PoolID: POOL_ID }, log), { Address: '10.9.0.2/24', Data: {} }, 'cooled down: the lowest free address again')
})

t.test('late-release race: a ReleaseAddress Docker retries after GC collected the address does not free a new holder', async (t) => {
  const env = await setup(t)
  await makeNetwork(env)
  const a = await makeEndpoint(env, POOL_ID, NET, EP) // 10.9.0.2
  t.equal(a, '10.9.0.2/24')
  // tsnet was down when Docker removed the container: DeleteEndpoint and ReleaseAddress(10.9.0.2) did not arrive.
  env.docker.networks = [dnet(NET, SUBNET, [])]
  await env.gc.pass()
  env.clock.advance(MIN_AGE)
  const due = ran(await env.gc.pass())
  t.match(due?.collected, [{ kind: 'endpoint', endpointId: EP }, { kind: 'lease', address: '10.9.0.2' }], 'GC collected the endpoint and its address')

  // A new container on the network, before Docker's retry of the old ReleaseAddress arrives.
  const b = await makeEndpoint(env, POOL_ID, NET, EP2)
  t.not(b, a, 'the new container does not get the collected address while it cools')
  t.equal(b, '10.9.0.3/24')
  const before = await leases(env)
  t.same(before, { memory: ['10.9.0.1', '10.9.0.3'], stored: ['10.9.0.1', '10.9.0.3'] })

  env.clock.advance(30_000) // well inside Docker's retry window
  t.same(await env.ipam.releaseAddress({ PoolID: POOL_ID, Address: a }, log), {}, 'Docker\'s late ReleaseAddress(10.9.0.2) succeeds')
  t.same(await leases(env), before, 'and frees nothing: the new holder keeps 10.9.0.3')
  t.same(env.network.snapshot().endpoints.map((e) => e.id), [EP2], 'the new endpoint stays')
  await expectTsnetError(() => env.ipam.requestAddress({ PoolID: POOL_ID, Address: '10.9.0.3' }, log), 'conflict')
})

t.test('a pool with nothing free but cooling addresses hands out a cooling one rather than failing', async (t) => {
  const env = await setup(t)
  const subnet = '10.7.0.0/29' // .1 to .6
  const poolId = await makeNetwork(env, NET, subnet) // gateway 10.7.0.1
  for (let i = 0; i < 5; i++) await env.ipam.requestAddress({ PoolID: poolId }, log) // .2 to .6
  const explained = ['10.7.0.2', '10.7.0.4', '10.7.0.6'].map((ip, i) => ({ endpointId: dockerId(`c${i}`), ipv4: `${ip}/29` }))
  env.docker.networks = [dnet(NET, subnet, explained)] // .3 and .5 are stale
  await env.gc.pass()
  env.clock.advance(MIN_AGE)
  t.same(ran(await env.gc.pass())?.collected.map((s) => s.kind === 'lease' && s.address), ['10.7.0.3', '10.7.0.5'])
  t.same((await leases(env, poolId)).stored, ['10.7.0.1', '10.7.0.2', '10.7.0.4', '10.7.0.6'])

  t.same(await env.ipam.requestAddress({ PoolID: poolId }, log), { Address: '10.7.0.3/29', Data: {} }, 'only cooling addresses are free: the lowest of them')
  t.same(await env.ipam.requestAddress({ PoolID: poolId }, log), { Address: '10.7.0.5/29', Data: {} }, 'then the other')
  const full = await expectTsnetError(() => env.ipam.requestAddress({ PoolID: poolId }, log), 'exhausted')
  t.match(full.message, /no free address left/, 'then the pool is exhausted as before')
})

t.test('releaseStaleAddress does nothing when the lease was released and leased again meanwhile', async (t) => {
  const env = await setup(t)
  await makeNetwork(env)
  await env.ipam.requestAddress({ PoolID: POOL_ID }, log) // 10.9.0.2
  const judged = leaseAt(env, POOL_ID, '10.9.0.2') // what GC saw
  await nextWallMillisecond()
  await env.ipam.releaseAddress({ PoolID: POOL_ID, Address: '10.9.0.2' }, log) // Docker's own release arrives after all
  await env.ipam.requestAddress({ PoolID: POOL_ID }, log) // and a new container gets the address
  const current = leaseAt(env, POOL_ID, '10.9.0.2')
  t.not(current, judged, 'a new lease record: another createdAt')
  const before = await env.storeState()

  await env.ipam.releaseStaleAddress(POOL_ID, '10.9.0.2', judged, log)
  t.same(await leases(env), { memory: ['10.9.0.1', '10.9.0.2'], stored: ['10.9.0.1', '10.9.0.2'] }, 'the new holder keeps its lease')
  t.equal(leaseAt(env, POOL_ID, '10.9.0.2'), current)
  t.same(await env.storeState(), before, 'the store is untouched')

  await env.ipam.releaseAddress({ PoolID: POOL_ID, Address: '10.9.0.2' }, log)
  t.same(await env.ipam.requestAddress({ PoolID: POOL_ID }, log), { Address: '10.9.0.2/24', Data: {} }, 'the address was not put to cool either')

  await t.test('nor for an address or pool it does not know', async (t) => {
    await env.ipam.releaseStaleAddress(POOL_ID, '10.9.0.99', judged, log)
    await env.ipam.releaseStaleAddress('LocalDefault/10.250.0.0/24', '10.250.0.2', judged, log)
    await env.ipam.releaseStaleAddress(POOL_ID, 'not-an-ip', judged, log)
    t.same((await leases(env)).stored, ['10.9.0.1', '10.9.0.2'])
  })

  await t.test('with the current createdAt it releases, and the address cools', async (t) => {
    await env.ipam.releaseStaleAddress(POOL_ID, '10.9.0.2', leaseAt(env, POOL_ID, '10.9.0.2'), log)
    t.same(await leases(env), { memory: ['10.9.0.1'], stored: ['10.9.0.1'] })
    t.same(await env.ipam.requestAddress({ PoolID: POOL_ID }, log), { Address: '10.9.0.3/24', Data: {} }, 'cooling')
  })
})

t.test('releaseStalePool does nothing when the pool was released and requested again meanwhile', async (t) => {
  const env = await setup(t)
  const { PoolID } = await env.ipam.requestPool({ AddressSpace: 'LocalDefault', Pool: SUBNET }, log)
  const judged = poolAt(env, PoolID)
  await nextWallMillisecond()
  await env.ipam.releasePool({ PoolID }, log)
  await env.ipam.requestPool({ AddressSpace: 'LocalDefault', Pool: SUBNET }, log) // the same ID again
  const current = poolAt(env, PoolID)
  t.not(current, judged)
  await env.ipam.releaseStalePool(PoolID, judged, log)
  t.same((await env.store.list<PoolRecord>('pools')).map((p) => p.value.createdAt), [current], 'the new pool stays')
  t.equal(poolAt(env, PoolID), current)
  await env.ipam.releaseStalePool(PoolID, current, log)
  t.same(await env.store.list('pools'), [], 'with the current createdAt it goes')
  t.same(env.ipam.snapshot(), [])
})

t.test('a lease made again at the same address (new createdAt) is a new suspect, not collected on the next pass', async (t) => {
  const env = await setup(t)
  await makeNetwork(env)
  await env.ipam.requestAddress({ PoolID: POOL_ID }, log) // 10.9.0.2, not shown by Docker
  env.docker.networks = [dnet(NET, SUBNET, [])]
  const first = leaseAt(env, POOL_ID, '10.9.0.2')
  t.match(await env.gc.pass(), { ran: true, unexplained: 1, collected: [] }, 'suspected')

  await nextWallMillisecond()
  await env.ipam.releaseAddress({ PoolID: POOL_ID, Address: '10.9.0.2' }, log)
  await env.ipam.requestAddress({ PoolID: POOL_ID, Address: '10.9.0.2' }, log) // a container being created right now
  const second = leaseAt(env, POOL_ID, '10.9.0.2')
  t.not(second, first)

  env.clock.advance(MIN_AGE)
  t.same(await env.gc.pass(), { ran: true, unexplained: 1, collected: [] }, 'the same address, but a record first seen now: only suspected')
  t.same((await leases(env)).stored, ['10.9.0.1', '10.9.0.2'], 'the new lease stays')
  t.equal(leaseAt(env, POOL_ID, '10.9.0.2'), second)

  env.clock.advance(MIN_AGE)
  t.same(ran(await env.gc.pass())?.collected, [{ kind: 'lease', poolId: POOL_ID, address: '10.9.0.2', createdAt: second }], 'still unexplained a full minAgeMs later: collected')
})


t.test('a lease released by GC survives a restart as released', async (t) => {
  const env = await setup(t)
  await makeNetwork(env)
  await env.ipam.requestAddress({ PoolID: POOL_ID }, log)
  env.docker.networks = [dnet(NET, SUBNET, [])]
  await env.gc.pass()
  env.clock.advance(MIN_AGE)
  t.match(await env.gc.pass(), { ran: true, collected: [{ kind: 'lease', address: '10.9.0.2' }] })
  const again = await env.reopen()
  t.same(again.ipam.snapshot()[0]?.leases, ['10.9.0.1'])
})

t.test('an endpoint that appears in Docker\'s view between two passes is not collected', async (t) => {
  const env = await setup(t)
  await makeNetwork(env)
  const addr = await makeEndpoint(env, POOL_ID, NET, EP)
  env.docker.networks = [dnet(NET, SUBNET, [])] // Docker has not attached the container yet
  t.match(await env.gc.pass(), { ran: true, unexplained: 2, collected: [] })
  env.clock.advance(MIN_AGE)
  env.docker.networks = [dnet(NET, SUBNET, [{ endpointId: EP, ipv4: addr }])]
  t.same(await env.gc.pass(), { ran: true, unexplained: 0, collected: [] }, 'explained now')
  env.clock.advance(MIN_AGE)
  env.docker.networks = [dnet(NET, SUBNET, [])] // gone from Docker's view again
  t.match(await env.gc.pass(), { ran: true, unexplained: 2, collected: [] }, 'the earlier suspicion was forgotten: this is a first sighting')
  t.ok(env.host.links.has(hostVethFor(EP)))
  t.equal((await env.store.list('endpoints')).length, 1)
})

t.test('an endpoint created while Docker answers is judged against the fresh store, and only suspected', async (t) => {
  const env = await setup(t)
  await makeNetwork(env)
  env.docker.networks = [dnet(NET, SUBNET, [])]
  t.match(await env.gc.pass(), { ran: true, unexplained: 0 })
  env.clock.advance(MIN_AGE)
  env.docker.during = async () => { await makeEndpoint(env, POOL_ID, NET, EP) }
  t.same(await env.gc.pass(), { ran: true, unexplained: 2, collected: [] })
  t.ok(env.host.links.has(hostVethFor(EP)))
})

t.test('concurrent pass() calls share one run', async (t) => {
  const env = await setup(t)
  await makeNetwork(env)
  env.docker.networks = [dnet(NET, SUBNET, [])]
  let open!: () => void
  env.docker.gate = new Promise<void>((resolve) => { open = resolve })
  const p1 = env.gc.pass()
  const p2 = env.gc.pass()
  t.equal(p1, p2, 'the same promise')
  open()
  const [o1, o2] = await Promise.all([p1, p2])
  t.equal(o1, o2, 'the same outcome')
  t.equal(env.docker.calls, 1, 'Docker was asked once')
  env.docker.gate = undefined
  await env.gc.pass()
  t.equal(env.docker.calls, 2, 'a pass after the shared one has finished runs again')
})

t.test('concurrent passes due to collect remove each item once', async (t) => {
  const env = await setup(t)
  await makeNetwork(env)
  await makeEndpoint(env, POOL_ID, NET, EP)
  env.docker.networks = [dnet(NET, SUBNET, [])]
  await env.gc.pass()
  env.clock.advance(MIN_AGE)
  const outcomes = await Promise.all([env.gc.pass(), env.gc.pass(), env.gc.pass()])
  t.equal(env.docker.calls, 2)
  t.same(outcomes.map((o) => ran(o)?.collected.length), [2, 2, 2])
  t.equal((await env.store.list('endpoints')).length, 0)
})

t.test('a store with networks is not pinned to an engine that knows none of them', async (t) => {
  const env = await setup(t)
  await makeNetwork(env)
  env.docker.networks = [dnet(dockerId('f1'), '172.17.0.0/16', [])] // a wrong --docker-host: some other engine
  const before = await env.storeState()
  const hostBefore = env.host.state()
  for (let i = 0; i < 3; i++) {
    const outcome = await env.gc.pass()
    t.match(outcome, { ran: false, reason: /knows none of tsnet's 1 networks/ }, `pass ${i + 1} refused`)
    env.clock.advance(MIN_AGE * 2)
  }
  t.same(await env.storeState(), before, 'no engine pinned, nothing removed')
  t.equal(env.host.state(), hostBefore, 'the host is untouched')
  env.docker.networks = [dnet(NET, SUBNET, [])] // the right engine
  t.match(await env.gc.pass(), { ran: true, collected: [] }, 'the right engine is pinned; its first pass only suspects')
  t.ok((await env.store.list('meta')).some((m) => m.id === 'engine'), 'engine recorded')
})

t.test("suspects age by the injected clock: collected once it has moved minAgeMs, whatever the wall clock did", async (t) => {
  const dir = await tempDir(t)
  const clock = new ManualClock()
  const host = new FakeHost()
  const store = await FileStore.open(dir)
  const network = new NetworkService(store, host, {})
  const ipam = new IpamService(store, host, { defaultPools: parseDefaultPools(DOCKER_DEFAULT_POOLS_TEXT) }, clock)
  await network.load()
  await ipam.load()
  const docker = new FakeDocker(ENGINE_A)
  const gc = new GcService(store, docker, network, ipam, { intervalMs: MIN_AGE, minAgeMs: MIN_AGE }, log, clock)
  await gc.load()
  const { PoolID } = await ipam.requestPool({ AddressSpace: 'LocalDefault', Pool: SUBNET }, log)
  const stale = await ipam.requestAddress({ PoolID }, log)
  docker.networks = [dnet(NET, SUBNET, [])] // the pool is in use, the address is not
  t.match(await gc.pass(), { ran: true, unexplained: 1, collected: [] }, 'first pass: a suspect')
  clock.advance(MIN_AGE - 1)
  t.match(await gc.pass(), { ran: true, unexplained: 1, collected: [] }, 'a millisecond short of minAgeMs by the clock: kept')
  clock.advance(1)
  t.same(ran(await gc.pass())?.collected, [{ kind: 'lease', poolId: PoolID, address: stale.Address.split('/')[0], createdAt: '2026-01-01T00:00:00.000Z' }], 'collected once the clock moved minAgeMs')
})
