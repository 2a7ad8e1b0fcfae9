// Cluster networks over a FileStore (two ClusterNetworks objects on one store stand for two
// hosts): agreeing a spec, claiming and releasing addresses, settling an unknown outcome by reading
// back, and the elected tsnet's sweep. test/contract/cluster-networks.test.ts runs them on etcd.
import t from 'tap'
import { parseDefaultPools } from '../../src/core/ipam.js'
import { TsnetError, unavailable } from '../../src/errors.js'
import { ClusterLiveness, hostKey } from '../../src/services/cluster-liveness.js'
import { ClusterNetworks, INDEX_KEY, addressKey, addressPrefix } from '../../src/services/cluster-networks.js'
import { goneKey } from '../../src/services/cluster-reclaim.js'
import { FileStore } from '../../src/store/file-store.js'
import type { Condition, Store, TxnResult, Write } from '../../src/store/store.js'
import { expectTsnetError, pfx, tempDir } from './fixtures/util.js'

async function openStore(t: { teardown: (fn: () => unknown) => void }): Promise<FileStore> {
  const store = await FileStore.open(await tempDir(t))
  t.teardown(() => store.close())
  return store
}

/** Everything the cluster keys hold, to show a refusal changed nothing. */
const dump = async (store: Store) => JSON.stringify((await store.list('cluster-')).map((e) => [e.key, e.value, String(e.rev)]))

t.test('the first host stores the spec, the second gets it back', async (t) => {
  const store = await openStore(t)
  const a = new ClusterNetworks(store, { hostId: 'host-a' })
  const b = new ClusterNetworks(store, { hostId: 'host-b' })
  const first = await a.agree('web', { subnet: '10.220.0.0/24', mtu: 1450 })
  t.equal(first.created, true)
  t.match(first.spec, { name: 'web', subnet: '10.220.0.0/24', gateway: '10.220.0.1', vni: 1, mtu: 1450, createdBy: 'host-a' })
  const second = await b.agree('web', { subnet: '10.220.0.0/24' })
  t.equal(second.created, false)
  t.same(second.spec, first.spec, 'the same spec, VNI included')
  t.same((await b.agree('web')).spec, first.spec, 'a host that leaves everything out gets the cluster\'s')
  const other = await b.agree('db', { subnet: '10.221.0.0/24', gateway: '10.221.0.254' })
  t.equal(other.spec.vni, 2, 'another network gets another VNI')
  t.equal(other.spec.gateway, '10.221.0.254')
  t.same(Object.keys((await store.get<{ networks: object }>(INDEX_KEY))?.value.networks ?? {}), ['web', 'db'])
})

t.test('a different subnet or gateway for a stored name is refused with a sentence, and nothing is written', async (t) => {
  const store = await openStore(t)
  const a = new ClusterNetworks(store, { hostId: 'host-a' })
  const b = new ClusterNetworks(store, { hostId: 'host-b' })
  await a.agree('web', { subnet: '10.220.0.0/24' })
  const before = await dump(store)
  const err = await expectTsnetError(() => b.agree('web', { subnet: '10.99.0.0/24' }), 'conflict')
  t.match(err.message, /cluster network "web" is stored with subnet 10\.220\.0\.0\/24, and this host asked for 10\.99\.0\.0\/24/)
  const gw = await expectTsnetError(() => b.agree('web', { subnet: '10.220.0.0/24', gateway: '10.220.0.9' }), 'conflict')
  t.match(gw.message, /stored with gateway 10\.220\.0\.1, and this host asked for 10\.220\.0\.9/)
  const overlap = await expectTsnetError(() => b.agree('db', { subnet: '10.220.0.0/16' }), 'conflict')
  t.match(overlap.message, /overlaps 10\.220\.0\.0\/24, which cluster network "web" holds/)
  await expectTsnetError(() => b.agree('bad/name', {}), 'invalid')
  await expectTsnetError(() => b.agree('x', { subnet: '10.1.0.5/24' }), 'invalid')
  t.equal(await dump(store), before, 'the store is as it was')
})

t.test('without a subnet the first host picks a free pool and the others get it', async (t) => {
  const store = await openStore(t)
  const defaultPools = parseDefaultPools('10.0.0.0/8:24')
  const a = new ClusterNetworks(store, { hostId: 'host-a', defaultPools })
  const b = new ClusterNetworks(store, { hostId: 'host-b', defaultPools })
  await a.agree('taken', { subnet: '10.0.0.0/24' })
  const first = await a.agree('web', {}, [pfx('10.0.1.0/24')]) // this host routes 10.0.1.0/24
  t.equal(first.spec.subnet, '10.0.2.0/24', 'skips the pool another cluster network holds and the one the host routes')
  t.equal(first.spec.gateway, '10.0.2.1')
  t.same((await b.agree('web')).spec, first.spec)
  t.equal((await b.agree('next')).spec.subnet, '10.0.1.0/24', 'the other host does not route it')
})

t.test('claims: distinct addresses, never the gateway, a clear exhaustion, idempotent release', async (t) => {
  const store = await openStore(t)
  const a = new ClusterNetworks(store, { hostId: 'host-a' })
  const b = new ClusterNetworks(store, { hostId: 'host-b' })
  await a.agree('tiny', { subnet: '10.230.0.0/29', gateway: '10.230.0.3' }) // 6 usable, 5 without the gateway
  const got = await Promise.all([...'abcde'].map((e, i) => (i % 2 ? a : b).claim('tiny', `ep-${e}`)))
  const ips = got.map((g) => g.ip).sort()
  t.same(ips, ['10.230.0.1', '10.230.0.2', '10.230.0.4', '10.230.0.5', '10.230.0.6'], 'every usable address but the gateway, once')
  t.equal(got[0]?.address.endsWith('/29'), true)
  const err = await expectTsnetError(() => a.claim('tiny', 'ep-f'), 'exhausted')
  t.match(err.message, /cluster network "tiny" \(10\.230\.0\.0\/29\) has no free address: all 5 addresses it hands out are claimed/)
  await expectTsnetError(() => a.claim('tiny', 'ep-g', '10.230.0.3'), 'conflict') // the gateway, asked for
  const held = await expectTsnetError(() => a.claim('tiny', 'ep-h', ips[0]), 'conflict')
  t.match(held.message, /is already held by endpoint ep-/)
  const holder = got.find((g) => g.ip === ips[0])
  const again = await (got.indexOf(holder as never) % 2 ? a : b).claim('tiny', `ep-${'abcde'[got.indexOf(holder as never)]}`, ips[0])
  t.equal(again.ip, ips[0], 'the endpoint that holds it claims it again')
  const owner = (await store.get<{ hostId: string }>(addressKey('tiny', '10.230.0.1')))?.value.hostId as string
  const stranger = owner === 'host-a' ? b : a
  t.equal(await stranger.release('tiny', '10.230.0.1'), 'other-host', 'another host\'s address is left alone')
  t.equal(await (owner === 'host-a' ? a : b).release('tiny', '10.230.0.1'), 'released')
  t.equal(await (owner === 'host-a' ? a : b).release('tiny', '10.230.0.1'), 'absent', 'releasing again is fine')
  t.equal((await a.claim('tiny', 'ep-i')).ip, '10.230.0.1', 'a released address is handed out again')
  t.equal((await store.list(addressPrefix('tiny'))).length, 5)
})

/** Applies each transaction, then fails it with 'unavailable' (the answer was what got lost). */
class LosesAnswers {
  failures = 0
  constructor(readonly inner: Store) {}
  wrap(): Store {
    return new Proxy(this.inner, {
      get: (target, prop, receiver) => {
        if (prop !== 'txn') return Reflect.get(target, prop, receiver) as unknown
        return async (when: readonly Condition[], then: readonly Write[]): Promise<TxnResult> => {
          await target.txn(when, then)
          this.failures++
          throw unavailable('etcd at http://127.0.0.1:1 did not answer writing (test)')
        }
      },
    })
  }
}

t.test('an unknown outcome is settled by reading back: ours is success, and no second address is claimed', async (t) => {
  const store = await openStore(t)
  await new ClusterNetworks(store, { hostId: 'host-a' }).agree('web', { subnet: '10.220.0.0/24' })
  const flaky = new LosesAnswers(store)
  const a = new ClusterNetworks(flaky.wrap(), { hostId: 'host-a' })
  const got = await a.claim('web', 'ep-1')
  t.equal(flaky.failures, 1, 'the claim failed once')
  const claims = await store.list<{ endpointId: string }>(addressPrefix('web'))
  t.same(claims.map((e) => [e.id, e.value.endpointId]), [[`web/${got.ip}`, 'ep-1']], 'exactly the address returned, claimed once')
  const created = await new ClusterNetworks(flaky.wrap(), { hostId: 'host-b' }).agree('db', { subnet: '10.221.0.0/24' })
  t.equal(created.created, true, 'the spec written by a transaction whose answer was lost is ours')

  // Control: a store that fails without applying: the claim fails with 'unavailable' and nothing is held.
  const dead = new Proxy(store, { get: (s, p, r) => (p === 'txn' ? () => Promise.reject(unavailable('etcd is unreachable (test)')) : Reflect.get(s, p, r) as unknown) })
  const err = await expectTsnetError(() => new ClusterNetworks(dead, { hostId: 'host-c' }).claim('web', 'ep-2'), 'unavailable')
  t.ok(err instanceof TsnetError)
  t.equal((await store.list(addressPrefix('web'))).length, 1)
})

t.test('the elected tsnet frees a dead host\'s addresses after the grace period, and never a live host\'s', async (t) => {
  const store = await openStore(t)
  const nets = { a: new ClusterNetworks(store, { hostId: 'host-a' }), b: new ClusterNetworks(store, { hostId: 'host-b' }) }
  await nets.a.agree('web', { subnet: '10.220.0.0/24' })
  const live = { a: new ClusterLiveness(store, { hostId: 'host-a', ttlSeconds: 5 }), b: new ClusterLiveness(store, { hostId: 'host-b', ttlSeconds: 5 }) }
  t.teardown(() => Promise.all([live.a.stop(), live.b.stop()]))
  await live.a.start()
  await live.b.start()
  for (let i = 0; i < 3; i++) { await nets.a.claim('web', `a-${i}`); await nets.b.claim('web', `b-${i}`) }
  t.ok(await live.a.campaign(), 'the first to campaign is elected')
  t.notOk(await live.b.campaign(), 'the other is not')
  t.equal(await live.b.reclaimDead(0), undefined, 'a host that is not elected sweeps nothing')

  const t0 = 1_000_000
  t.same((await live.a.reclaimDead(1000, t0))?.reclaimed, [], 'positive control: every host alive, nothing freed')
  await live.b.currentLease()?.revoke() // host-b's registration is gone (on etcd: its lease expired)
  t.equal(await store.get(hostKey('host-b')), undefined)
  t.same((await live.a.reclaimDead(1000, t0 + 10))?.started, ['host-b'], 'the clock starts')
  t.ok(await store.get(goneKey('host-b')), 'kept in the store for a next leader')
  t.same((await live.a.reclaimDead(1000, t0 + 900))?.reclaimed, [], 'not before the grace period')
  t.equal((await store.list(addressPrefix('web'))).length, 6)
  t.same((await live.a.reclaimDead(1000, t0 + 1010))?.reclaimed, [{ hostId: 'host-b', addresses: 3 }])
  const left = await store.list<{ hostId: string }>(addressPrefix('web'))
  t.same(left.map((e) => e.value.hostId), ['host-a', 'host-a', 'host-a'], 'only the dead host\'s addresses went')
  t.equal(await store.get(goneKey('host-b')), undefined, 'its clock is dropped once it holds nothing')
})
