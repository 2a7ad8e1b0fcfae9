// services/gc-service and IPAM together: what garbage collection released cools down before reuse, and the races
// between a late Docker release, a new holder and a collection.
import t from 'tap'
import type { PoolRecord } from '../../src/core/records.js'
import { GC_COOLDOWN_MS } from '../../src/services/ipam-service.js'
import {
  EP, EP2, MIN_AGE, NET, POOL_ID, SUBNET, dnet, leaseAt, leases, makeEndpoint, makeNetwork, nextWallMillisecond, poolAt, ran, setup,
} from './fixtures/gc-env.js'
import { dockerId, expectTsnetError, log } from './fixtures/util.js'

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

