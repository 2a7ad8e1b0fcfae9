// EtcdStore against a real etcd (one member here; test/contract/etcd-availability.test.ts has
// three): the Store v2 contract (test/unit/fixtures/store-contract.ts), then what only etcd does.
import t from 'tap'
import { EtcdStore } from '../../src/store/etcd-store.js'
import type { Store } from '../../src/store/store.js'
import { storeContract } from '../unit/fixtures/store-contract.js'
import { etcdMissing, startEtcdCluster } from './lib/etcd-cluster.js'

if (etcdMissing) {
  t.plan(0, `EtcdStore against a real etcd: ${etcdMissing}`)
} else {
  const cluster = await startEtcdCluster(t, 1)
  const clusters = new WeakMap<Store, string>()
  let opened = 0
  const open = (t: { teardown: (fn: () => unknown) => void }, name: string) => {
    const store = new EtcdStore({ endpoints: cluster.endpoints, cluster: name, timeoutMs: 3000 })
    clusters.set(store, name)
    t.teardown(() => store.close())
    return store
  }

  await t.test('EtcdStore keeps the Store v2 contract', async (t) => {
    await storeContract(t, {
      async open(t) { return open(t, `contract-${++opened}`) },
      async reopen(t, store) {
        const name = clusters.get(store)
        if (!name) throw new Error('test bug: a store the contract did not open')
        return open(t, name)
      },
      // etcd keeps the compaction revision itself: one write more, and the history up to it goes.
      async compact(store) {
        await store.put('compaction', 'filler', 1)
        await cluster.compact()
      },
      leasesExpire: true,
    })
  })
}
