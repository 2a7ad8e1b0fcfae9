// The MTU of a cluster network agreed in the store (issue 14 step 2): two ClusterNetworks on one
// FileStore stand for two hosts, as in cluster-networks.test.ts.
import t from 'tap'
import { ClusterNetworks, networkKey } from '../../src/services/cluster-networks.js'
import { agreeMtu } from '../../src/services/cluster-mtu.js'
import { FileStore } from '../../src/store/file-store.js'
import { expectTsnetError, tempDir } from './fixtures/util.js'

async function twoHosts(t: { teardown: (fn: () => unknown) => void }) {
  const store = await FileStore.open(await tempDir(t))
  t.teardown(() => store.close())
  const a = new ClusterNetworks(store, { hostId: 'host-a' })
  const b = new ClusterNetworks(store, { hostId: 'host-b' })
  await a.agree('web', { subnet: '10.220.0.0/24' })
  return { store, a, b }
}

t.test('the first host\'s MTU is stored, and a later host with a larger underlay takes it', async (t) => {
  const { store, a, b } = await twoHosts(t)
  t.equal(await agreeMtu(store, a, 'web', 1350, false), 1350, 'the first creator\'s choice')
  t.equal((await store.get<{ mtu?: number }>(networkKey('web')))?.value.mtu, 1350, 'stored in the spec')
  t.equal(await agreeMtu(store, b, 'web', 1450, false), 1350, 'the second host gets the stored MTU, not its own')
  t.equal(await agreeMtu(store, a, 'web', 1350, false), 1350, 'asking again is harmless')
  t.equal((await b.spec('web')).mtu, 1350, 'the cached spec was refreshed')
})

t.test('an MTU option that differs from the stored one is refused and changes nothing; the same one is accepted', async (t) => {
  const { store, a, b } = await twoHosts(t)
  await agreeMtu(store, a, 'web', 1400, true)
  const before = await store.get(networkKey('web'))
  const err = await expectTsnetError(() => agreeMtu(store, b, 'web', 1300, true), 'conflict')
  t.match(err.message, /cluster network "web" is stored with MTU 1400, and this host asked for 1300/)
  t.same(await store.get(networkKey('web')), before, 'the spec is as it was')
  t.equal(await agreeMtu(store, b, 'web', 1400, true), 1400, 'control: the same option is accepted')
})

t.test('two hosts agreeing at once end with one MTU', async (t) => {
  const { store, a, b } = await twoHosts(t)
  const [x, y] = await Promise.all([agreeMtu(store, a, 'web', 1450, false), agreeMtu(store, b, 'web', 1350, false)])
  t.equal(x, y, 'both hosts got the same MTU')
  t.equal((await store.get<{ mtu?: number }>(networkKey('web')))?.value.mtu, x)
})
