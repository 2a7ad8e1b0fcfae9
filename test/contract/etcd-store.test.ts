// EtcdStore against a real etcd (one member here; test/contract/etcd-availability.test.ts has
// three): the Store v2 contract (test/unit/fixtures/store-contract.ts), then what only etcd does.
import t from 'tap'
import { Writable } from 'node:stream'
import { pino } from 'pino'
import { loadConfig } from '../../src/config.js'
import { openClusterStore } from '../../src/services/cluster-store.js'
import { EtcdStore } from '../../src/store/etcd-store.js'
import type { Store } from '../../src/store/store.js'
import { collector, storeContract } from '../unit/fixtures/store-contract.js'
import { etcdMissing, freePort, startEtcdCluster } from './lib/etcd-cluster.js'

/** A logger whose lines the test reads. */
function capturedLog() {
  const lines: Array<{ level: number; msg: string; [k: string]: unknown }> = []
  const stream = new Writable({ write(chunk: Buffer, _enc, done) { lines.push(JSON.parse(chunk.toString())); done() } })
  return { log: pino({ level: 'info' }, stream), lines }
}

async function until(ok: () => Promise<boolean>, ms = 5000) {
  const end = Date.now() + ms
  while (!(await ok()) && Date.now() < end) await new Promise((r) => setTimeout(r, 20))
}

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

  await t.test('two clients race create-if-absent: every key is claimed exactly once', async (t) => {
    const a = open(t, 'race')
    const b = open(t, 'race')
    const claims = Array.from({ length: 100 }, (_, n) => ({ n, client: n % 2 === 0 ? a : b, key: `claims/k${n % 10}` }))
    const results = await Promise.all(claims.map(({ n, client, key }) => client.txn([{ key, absent: true }], [{ put: key, value: { n } }])))
    const winners = new Map<string, number[]>()
    results.forEach((r, i) => {
      const { key, n } = claims[i] as { key: string; n: number }
      if (r.ok) winners.set(key, [...(winners.get(key) ?? []), n])
    })
    t.equal(results.filter((r) => r.ok).length, 10, '10 of 100 claims won')
    const stored = await a.list<{ n: number }>('claims/')
    t.equal(stored.length, 10, 'positive control: all 10 keys exist')
    for (const e of stored) t.same(winners.get(e.key), [e.value.n], `${e.key}: one winner, whose value is stored`)
    t.ok(new Set(results.map((r) => r.rev)).size > 1, 'the claims were separate transactions')
  })

  await t.test('two clients race compare-and-swap increments: no update is lost', async (t) => {
    const a = open(t, 'cas')
    const b = open(t, 'cas')
    await a.put('counter', 'c', 0)
    let conflicts = 0
    const increment = async (s: EtcdStore) => {
      for (;;) {
        const e = await s.get<number>('counter/c')
        if (!e) throw new Error('counter vanished')
        if ((await s.txn([{ key: 'counter/c', rev: e.rev }], [{ put: 'counter/c', value: e.value + 1 }])).ok) return
        conflicts++
      }
    }
    await Promise.all(Array.from({ length: 20 }, (_, i) => increment(i % 2 === 0 ? a : b)))
    t.equal((await b.get<number>('counter/c'))?.value, 20, '20 increments from two clients: 20')
    t.ok(conflicts > 0, `the race was real: ${conflicts} stale compare-and-swaps were refused`)
  })

  await t.test('a listing longer than one page is read whole, at one revision, while others write', async (t) => {
    const s = open(t, 'pages')
    for (let batch = 0; batch < 25; batch++) {
      await s.txn([], Array.from({ length: 100 }, (_, i) => ({ put: `many/${String(batch * 100 + i).padStart(5, '0')}`, value: batch * 100 + i })))
    }
    let writing = true
    const writer = (async () => {
      for (let i = 0; writing; i++) await s.put('many', `late-${i}`, i)
    })()
    const listed = await s.list<number>('many/')
    writing = false
    await writer
    const regular = listed.filter((e) => !e.id.startsWith('late-'))
    t.equal(regular.length, 2500, 'every key of three pages')
    t.ok(regular.every((e, i) => e.value === i), 'in key order, each once')
    t.ok(listed.every((e) => e.rev <= listed.rev), `no entry newer than the listing's revision ${listed.rev}`)
    const after = await s.list('many/')
    t.ok(after.length > listed.length, `positive control: writes went on during the listing (${after.length - listed.length} more after it)`)
  })

  await t.test('compaction: a watch from before it resets once and says nothing else; a fresh list and watch go on', async (t) => {
    const s = open(t, 'compaction')
    const start = (await s.list('c/')).rev
    await s.put('c', 'a', 1)
    const kept = collector()
    t.teardown(s.watch('c/', start, kept.onEvents, kept.onReset))
    await kept.next(1)
    t.same(kept.batches.map((b) => b.map((e) => e.key)), [['c/a']], 'positive control: before compaction the same watch replays')
    await s.put('c', 'b', 2)
    await s.put('compaction', 'filler', 1)
    await cluster.compact()
    const w = collector()
    t.teardown(s.watch('c/', start, w.onEvents, w.onReset))
    await until(async () => w.resets > 0)
    await w.settle(300)
    t.equal(w.resets, 1, 'onReset once')
    t.equal(w.batches.length, 0, 'no events')
    const listed = await s.list('c/')
    t.same(listed.map((e) => e.key), ['c/a', 'c/b'])
    const again = collector()
    t.teardown(s.watch('c/', listed.rev, again.onEvents, again.onReset))
    await s.put('c', 'c', 3)
    await again.next(1)
    t.same(again.batches.map((b) => b.map((e) => e.key)), [['c/c']], 'a watch from the listing goes on')
    t.equal(kept.resets + again.resets, 0, 'watches already running are not reset by compaction')
  })

  await t.test('serve\'s cluster store: opens without waiting for etcd, says whether etcd answers, closes', async (t) => {
    const down = `http://127.0.0.1:${await freePort()}` // nothing listens there
    const unreachable = capturedLog()
    const started = Date.now()
    const absent = openClusterStore(loadConfig(['--etcd-endpoints', down, '--advertise-address', '192.0.2.9'], {}), unreachable.log)
    t.ok(Date.now() - started < 200, 'opening an unreachable etcd returns at once')
    t.equal(await absent?.vtep, '192.0.2.9', '--advertise-address is the VTEP address')
    await until(async () => unreachable.lines.some((l) => l.level === 40), 8000)
    const warned = unreachable.lines.find((l) => l.level === 40)
    t.match(warned?.msg, `etcd at ${down} is unreachable`, `a warning names the endpoint: ${warned?.msg}`)
    t.ok(Date.now() - started < 5000 + 1500, 'within the store\'s bound')
    await absent?.close()

    const reachable = capturedLog()
    const present = openClusterStore(loadConfig(['--etcd-endpoints', cluster.endpoints.join(',')], {}), reachable.log)
    t.equal(await present?.vtep, '127.0.0.1', 'positive control: the VTEP address is the route\'s source toward the first endpoint')
    await until(async () => reachable.lines.some((l) => l.msg === 'etcd answers'), 5000)
    t.ok(reachable.lines.some((l) => l.msg === 'etcd answers'), 'and etcd answers')
    t.same(reachable.lines.find((l) => l.msg === 'cluster store on etcd')?.etcdEndpoints, cluster.endpoints, 'the log names the endpoints')
    t.equal(reachable.lines.filter((l) => l.level >= 40).length, 0, 'no warning')
    await present?.close()
    t.equal(openClusterStore(loadConfig([], {}), reachable.log), undefined, 'without --etcd-endpoints: no cluster store')
  })
}
