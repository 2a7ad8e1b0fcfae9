// services/gc-service with a scripted DockerView over the services serve builds (openServices + boot), FakeHost and a FileStore.
import t from 'tap'
import { bridgeNameFor, containerVethFor, hostVethFor, networkTag } from '../../src/core/names.js'
import type { EndpointRecord, LeaseRecord, NetworkRecord, PoolRecord } from '../../src/core/records.js'
import {
  ENGINE_A, ENGINE_B, EP, EP2, MIN_AGE, NET, NET2, POOL2_ID, POOL_ID, SUBNET, SUBNET2, dnet, leaseAt, leases, makeEndpoint, makeNetwork, poolAt, ran, setup,
} from './fixtures/gc-env.js'
import { FakeDocker } from './fixtures/gc-fakes.js'
import { openUnit } from './fixtures/services.js'
import { dockerId, log } from './fixtures/util.js'
import { ManualClock } from '../../src/engine/clock.js'
import { GcService } from '../../src/services/gc-service.js'

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
  const clock = new ManualClock()
  const { services } = await openUnit(t, { clock })
  const docker = new FakeDocker(ENGINE_A)
  const gc = new GcService(services.store, docker, services.driver, services.ipam, { intervalMs: MIN_AGE, minAgeMs: MIN_AGE }, log, clock)
  await gc.load()
  const { PoolID } = await services.ipam.requestPool({ AddressSpace: 'LocalDefault', Pool: SUBNET }, log)
  const stale = await services.ipam.requestAddress({ PoolID }, log)
  docker.networks = [dnet(NET, SUBNET, [])] // the pool is in use, the address is not
  t.match(await gc.pass(), { ran: true, unexplained: 1, collected: [] }, 'first pass: a suspect')
  clock.advance(MIN_AGE - 1)
  t.match(await gc.pass(), { ran: true, unexplained: 1, collected: [] }, 'a millisecond short of minAgeMs by the clock: kept')
  clock.advance(1)
  t.same(ran(await gc.pass())?.collected, [{ kind: 'lease', poolId: PoolID, address: stale.Address.split('/')[0], createdAt: '2026-01-01T00:00:00.000Z' }], 'collected once the clock moved minAgeMs')
})
