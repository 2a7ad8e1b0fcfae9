// The Store v2 contract (fixtures/store-contract.ts) run against FileStore. An etcd store runs the
// same function with its own StoreUnderTest.
import t from 'tap'
import { FileStore } from '../../src/store/file-store.js'
import type { Store } from '../../src/store/store.js'
import { storeContract } from './fixtures/store-contract.js'
import { tempDir } from './fixtures/util.js'

const HISTORY = 8
const dirs = new WeakMap<Store, string>()

t.test('FileStore keeps the Store v2 contract', async (t) => {
  await storeContract(t, {
    async open(t) {
      const dir = await tempDir(t)
      const store = await FileStore.open(dir, undefined, { watchHistory: HISTORY })
      dirs.set(store, dir)
      return store
    },
    async reopen(_t, store) {
      const dir = dirs.get(store)
      if (!dir) throw new Error('test bug: a store the contract did not open')
      const again = await FileStore.open(dir, undefined, { watchHistory: HISTORY })
      dirs.set(again, dir)
      return again
    },
    // A FileStore keeps the last HISTORY transactions for watches.
    async compact(store) {
      for (let i = 0; i <= HISTORY; i++) await store.put('compaction', 'filler', i, { durable: false })
    },
    leasesExpire: false,
  })
})
