// store/file-store: one JSON file per record, atomic writes, schema check; plus a cost measurement.
import t from 'tap'
import { existsSync } from 'node:fs'
import { open, readdir, readFile, writeFile } from 'node:fs/promises'
import { createRequire, syncBuiltinESMExports } from 'node:module'
import { join } from 'node:path'
import { pino } from 'pino'
import { loadConfig } from '../../src/config.js'
import { FakeHost } from '../../src/host/fake-host.js'
import { openServices } from '../../src/main.js'
import { OPT } from '../../src/protocol/types.js'
import { NO_DIRECTORY, NetworkState } from '../../src/services/network-state.js'
import { FULL_HOST } from '../../src/core/host-facts.js'
import { FileStore } from '../../src/store/file-store.js'
import { type Listing, STORE_SCHEMA } from '../../src/store/store.js'
import { TsnetError } from '../../src/errors.js'
import { dockerId, tempDir } from './fixtures/util.js'

const quiet = pino({ level: 'silent' })
const GOOD_NET = dockerId('0c')
const GOOD_EP = dockerId('ec')

/** A listing as id and value, sorted by id (revisions are checked in store-contract). */
const records = <T>(xs: Listing<T>) => xs.map(({ id, value }) => ({ id, value }))
const sortById = <T>(xs: ReadonlyArray<{ id: string; value: T }>) => xs.map(({ id, value }) => ({ id, value })).sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))

t.test('open creates the collections and the schema record', async (t) => {
  const dir = await tempDir(t)
  const store = await FileStore.open(dir)
  t.same((await readdir(join(dir, 'store'))).sort(), ['endpoints', 'leases', 'meta', 'networks', 'pools'])
  t.same(JSON.parse(await readFile(join(dir, 'store', 'meta', 'schema.json'), 'utf8')), { version: STORE_SCHEMA })
  t.same(records(await store.list('meta')), [{ id: 'schema', value: { version: STORE_SCHEMA } }])
  t.same(records(await store.list('networks')), [])
  const again = await FileStore.open(dir)
  t.same(records(await again.list('meta')), [{ id: 'schema', value: { version: STORE_SCHEMA } }], 'opening again keeps the schema')
})

t.test('put / list / delete round trip', async (t) => {
  const dir = await tempDir(t)
  const store = await FileStore.open(dir)
  await store.put('networks', 'n1', { a: 1, nested: { b: [1, 2, 3] } })
  await store.put('networks', 'n2', { a: 2 })
  await store.put('endpoints', 'e1', { e: true })
  t.same(sortById(await store.list('networks')), [{ id: 'n1', value: { a: 1, nested: { b: [1, 2, 3] } } }, { id: 'n2', value: { a: 2 } }])
  t.same(records(await store.list('endpoints')), [{ id: 'e1', value: { e: true } }], 'collections are separate')
  await store.put('networks', 'n1', { a: 'replaced' })
  t.same(sortById(await store.list('networks')), [{ id: 'n1', value: { a: 'replaced' } }, { id: 'n2', value: { a: 2 } }], 'put replaces')
  await store.delete('networks', 'n1')
  t.same(records(await store.list('networks')), [{ id: 'n2', value: { a: 2 } }])
  const reopened = await FileStore.open(dir)
  t.same(records(await reopened.list('networks')), [{ id: 'n2', value: { a: 2 } }], 'what was written is there after reopening')
  t.same(records(await reopened.list('endpoints')), [{ id: 'e1', value: { e: true } }])
  const files = await readdir(join(dir, 'store', 'networks'))
  t.same(files, ['n2.json'], 'no temporary files are left behind')
})

t.test('ids with /, :, # and other awkward characters survive', async (t) => {
  const dir = await tempDir(t)
  const store = await FileStore.open(dir)
  const ids = [
    'LocalDefault/172.18.0.0/16',
    'LocalDefault/172.18.0.0/16/172.18.5.0/24#172.18.5.1',
    'LocalDefault/fd12:3456:789a::/64#fd12:3456:789a::1',
    '../../etc/passwd', '.', '..', 'a b%20c', '100%', 'ünï©ødé', 'x.tmp', 'x.json',
  ]
  for (const [i, id] of ids.entries()) await store.put('leases', id, { i })
  const listed = await store.list<{ i: number }>('leases')
  t.same(sortById(listed), sortById(ids.map((id, i) => ({ id, value: { i } }))), 'every id comes back exactly')
  const files = await readdir(join(dir, 'store', 'leases'))
  t.equal(files.length, ids.length, 'one file per record, all inside the collection directory')
  t.ok(files.every((f) => !f.includes('/')), 'no file name holds a slash')
  await store.delete('leases', '../../etc/passwd')
  await store.delete('leases', 'LocalDefault/fd12:3456:789a::/64#fd12:3456:789a::1')
  t.same(sortById(await store.list('leases')).map((r) => r.id), ids.filter((id) => id !== '../../etc/passwd' && !id.startsWith('LocalDefault/fd12')).sort())
})

t.test('deleting a missing record is fine', async (t) => {
  const dir = await tempDir(t)
  const store = await FileStore.open(dir)
  await t.resolves(store.delete('networks', 'never-existed'))
  await store.put('networks', 'x', {})
  await store.delete('networks', 'x')
  await t.resolves(store.delete('networks', 'x'), 'twice')
  t.same(records(await store.list('networks')), [])
})

t.test('a leftover *.tmp file is ignored and removed at list', async (t) => {
  const dir = await tempDir(t)
  const store = await FileStore.open(dir)
  await store.put('networks', 'n1', { v: 'old' })
  const coll = join(dir, 'store', 'networks')
  await writeFile(join(coll, 'n1.json.tmp'), '{"v":"half-writ') // a crash during a later write of n1
  await writeFile(join(coll, 'n9.json.tmp'), '') // a crash during the first write of n9
  t.same(records(await store.list('networks')), [{ id: 'n1', value: { v: 'old' } }], 'the old record is intact; the torn write is not a record')
  t.same(await readdir(coll), ['n1.json'], 'the temporary files are gone')
  await writeFile(join(coll, 'README'), 'not a record')
  t.same(records(await store.list('networks')), [{ id: 'n1', value: { v: 'old' } }], 'files that are not .json are skipped')
})

t.test('a corrupt record makes list throw a TsnetError naming the file', async (t) => {
  const dir = await tempDir(t)
  const store = await FileStore.open(dir)
  await store.put('endpoints', 'good', { ok: true })
  const bad = join(dir, 'store', 'endpoints', 'bad.json')
  await writeFile(bad, '{"truncated": ')
  await t.rejects(store.list('endpoints'), { name: 'TsnetError', kind: 'host', message: /cannot be read/ })
  const err = await store.list('endpoints').then(() => undefined, (e: unknown) => e)
  t.ok(err instanceof TsnetError, 'a TsnetError')
  t.ok(err instanceof Error && err.message.includes(bad), `the message names ${bad}`)
})

t.test('a stray file whose name is not percent-encoded makes list fail like a corrupt record', async (t) => {
  const dir = await tempDir(t)
  const store = await FileStore.open(dir)
  const stray = join(dir, 'store', 'networks', '100%.json')
  await writeFile(stray, '{}')
  const err = await store.list('networks').then(() => undefined, (e: unknown) => e)
  t.ok(err !== undefined, 'list fails')
  t.ok(err instanceof TsnetError, `a TsnetError (got ${String(err)})`)
  t.ok(err instanceof Error && err.message.includes(stray), 'the message names the file')
})

t.test('concurrent puts of one id leave exactly one of the two values', async (t) => {
  const dir = await tempDir(t)
  const store = await FileStore.open(dir)
  const value = (c: string) => ({ v: c.repeat(c === 'a' ? 300_000 : 100_000) }) // lengths differ, so an overlay of the two shows
  let rejected = 0
  let wrong = 0
  for (let round = 0; round < 20; round++) {
    const settled = await Promise.allSettled([store.put('networks', 'x', value('a')), store.put('networks', 'x', value('b'))])
    rejected += settled.filter((r) => r.status === 'rejected').length
    const listed = await store.list<{ v: string }>('networks').catch(() => undefined)
    const v = listed?.[0]?.value.v
    if (listed?.length !== 1 || (v !== value('a').v && v !== value('b').v)) wrong++
  }
  t.comment(`concurrent puts of one id, 20 rounds: ${rejected} puts rejected, ${wrong} rounds left a torn or unreadable record`)
  t.equal(rejected, 0, 'every put resolves')
  t.equal(wrong, 0, 'the record is always exactly one of the values written (never torn, never unreadable)')
})

t.test('open refuses a store of an unknown schema version', async (t) => {
  const dir = await tempDir(t)
  await FileStore.open(dir)
  const schema = join(dir, 'store', 'meta', 'schema.json')
  await writeFile(schema, JSON.stringify({ version: 99 }))
  await t.rejects(FileStore.open(dir), { name: 'TsnetError', kind: 'host', message: /schema version 99, but this tsnet reads version 2/ })
  await writeFile(schema, JSON.stringify({}))
  await t.rejects(FileStore.open(dir), { name: 'TsnetError', message: /schema version undefined/ }, 'a schema record without a version')
  await writeFile(schema, 'garbage{')
  await t.rejects(FileStore.open(dir), { name: 'TsnetError', message: /schema file .*schema\.json is not valid JSON/ })
  t.equal(await readFile(schema, 'utf8'), 'garbage{', 'open does not overwrite a schema it refused')
})

t.test('open reports a state directory it cannot create', async (t) => {
  const dir = await tempDir(t)
  const file = join(dir, 'plain-file')
  await writeFile(file, 'x')
  await t.rejects(FileStore.open(file), { name: 'TsnetError', kind: 'host', message: /cannot create the state directory/ })
})

t.test('measurement: put and delete cost at 10 vs 5,000 records', async (t) => {
  // Two stores side by side, one holding 10 records and one 5,000, measured in alternation so the
  // machine's noise (other processes, disk flushes) falls on both alike. Medians, not means.
  const ROUNDS = 200
  const record = (i: number) => ({ poolId: 'LocalDefault/10.0.0.0/8', address: `10.0.${i >> 8}.${i & 255}`, kind: 'endpoint', createdAt: '2026-01-01T00:00:00.000Z' })
  const open = async (count: number) => {
    const dir = await tempDir(t)
    const store = await FileStore.open(dir)
    const coll = join(dir, 'store', 'leases')
    // Written straight to disk (same file format the store uses) to keep the setup quick.
    for (let i = 0; i < count; i++) await writeFile(join(coll, `${encodeURIComponent(`filler#${i}`)}.json`), JSON.stringify(record(i)))
    return store
  }
  const small = await open(10)
  const large = await open(5000)
  t.equal((await small.list('leases')).length, 10, '10 records present')
  const l0 = performance.now()
  t.equal((await large.list('leases')).length, 5000, '5,000 records present')
  const listMs = performance.now() - l0

  const times = { small: { put: [] as number[], del: [] as number[] }, large: { put: [] as number[], del: [] as number[] } }
  for (let i = -10; i < ROUNDS; i++) { // the first 10 rounds warm up and are not counted
    for (const [name, store] of [['small', small], ['large', large]] as const) {
      const id = `probe#${i}` // a fresh id each round, deleted again: the collection keeps its size
      const t0 = performance.now()
      await store.put('leases', id, record(i + 10))
      const t1 = performance.now()
      await store.delete('leases', id)
      const t2 = performance.now()
      if (i >= 0) {
        times[name].put.push(t1 - t0)
        times[name].del.push(t2 - t1)
      }
    }
  }
  t.equal((await large.list('leases')).length, 5000, 'the measurement left the collection as it was')
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN
  const put = { small: median(times.small.put), large: median(times.large.put) }
  const del = { small: median(times.small.del), large: median(times.large.del) }
  t.comment(`store put: ${put.small.toFixed(2)} ms at 10 records, ${put.large.toFixed(2)} ms at 5000 (ratio ${(put.large / put.small).toFixed(2)})`)
  t.comment(`store delete: ${del.small.toFixed(2)} ms at 10 records, ${del.large.toFixed(2)} ms at 5000 (ratio ${(del.large / del.small).toFixed(2)})`)
  t.comment(`(medians of ${ROUNDS} alternating ops; one list() of the 5000 records took ${listMs.toFixed(0)} ms)`)
  t.ok(put.large <= put.small * 5, `put at 5000 records within 5x of put at 10 (${put.large.toFixed(2)} vs ${put.small.toFixed(2)} ms)`)
  t.ok(del.large <= del.small * 5, `delete at 5000 records within 5x of delete at 10 (${del.large.toFixed(2)} vs ${del.small.toFixed(2)} ms)`)
})

t.test('records of the wrong shape are quarantined on load, with the reason, and tsnet starts without them', async (t) => {
  const dir = await tempDir(t)
  // With the Docker API configured, so that Docker's names are loaded (records are checked as they are read).
  const config = loadConfig(['--state-dir', dir, '--docker-host', `unix://${join(dir, 'no-docker.sock')}`], {})
  // A store as tsnet leaves it: a network with an endpoint, its pool and leases.
  const first = await openServices(config, new FakeHost(), quiet)
  const { PoolID, Pool } = await first.ipam.requestPool({ AddressSpace: 'LocalDefault', Pool: '10.30.0.0/24' }, quiet)
  const gw = await first.ipam.requestAddress({ PoolID, Options: { [OPT.requestAddressType]: OPT.gatewayType } }, quiet)
  const addr = await first.ipam.requestAddress({ PoolID }, quiet)
  await first.driver.createNetwork({ NetworkID: GOOD_NET, Options: { [OPT.generic]: {} }, IPv4Data: [{ Pool, Gateway: gw.Address }], IPv6Data: [] }, quiet)
  await first.driver.createEndpoint({ NetworkID: GOOD_NET, EndpointID: GOOD_EP, Interface: { Address: addr.Address } }, quiet)
  // Valid JSON of the wrong shape, in every collection.
  const planted: Record<string, [string, RegExp]> = {
    'networks/broken.json': ['null', /the record is null, not an object/],
    [`endpoints/${dockerId('e9')}.json`]: ['42', /the record is 42, not an object/],
    'pools/LocalDefault%2F10.31.0.0%2F24.json': ['[]', /the record is \[list of 0\], not an object/],
    'leases/x.json': ['{"poolId":"p"}', /field address is missing/],
    'meta/ipam.json': ['{"ula48":null}', /field ula48 is null/],
    'meta/docker-networks.json': ['null', /not a valid docker-networks record: the record is null/],
  }
  for (const [file, [text]] of Object.entries(planted)) await writeFile(join(dir, 'store', file), text)

  // Control: without the checks (as before) the first null stops the start.
  const unchecked = await FileStore.open(dir, quiet)
  await t.rejects(new NetworkState(unchecked, NO_DIRECTORY, () => FULL_HOST).load(), TypeError, 'without the checks, loading throws (exit 1, restarted, throws again)')

  const lines: Array<Record<string, unknown>> = []
  const capture = pino({ level: 'error' }, { write: (l: string) => { lines.push(JSON.parse(l) as Record<string, unknown>) } })
  const services = await openServices(config, new FakeHost(), capture)
  t.same(services.driver.snapshot().networks.map((n) => n.id), [GOOD_NET], 'the good network loaded')
  t.same(services.driver.snapshot().endpoints.map((e) => e.id), [GOOD_EP], 'the good endpoint loaded')
  t.same(services.ipam.snapshot().map((p) => [p.id, [...p.leases].sort()]), [[PoolID, ['10.30.0.1', '10.30.0.2']]], 'the good pool and its leases loaded')
  const quarantined = (await readdir(join(dir, 'store', 'quarantine'))).sort()
  t.equal(quarantined.length, Object.keys(planted).length, `every bad record was moved to store/quarantine (${quarantined.join(', ')})`)
  for (const [file, [text, reason]] of Object.entries(planted)) {
    const [collection, name] = file.split('/') as [string, string]
    const moved = quarantined.find((q) => q.startsWith(`${collection}-`) && q.endsWith(`-${name}`))
    t.ok(moved, `${file} is in quarantine`)
    if (moved) t.equal(await readFile(join(dir, 'store', 'quarantine', moved), 'utf8'), text, `${file} kept as it was`)
    const line = lines.find((l) => l.collection === collection && l.file === name)
    t.match(line, { store: 'quarantined', reason }, `${file}: the log says what was wrong (${String(line?.reason)})`)
  }
  t.ok(existsSync(join(dir, 'store', 'meta', 'ipam.json')), 'a new ipam meta record was written in place of the bad one')
})

t.test('read-only (tsnet status beside the daemon): no temporary file removed, no record moved', async (t) => {
  const dir = await tempDir(t)
  const store = await FileStore.open(dir)
  await store.put('networks', 'n1', { v: 1 })
  const coll = join(dir, 'store', 'networks')
  await writeFile(join(coll, 'n2.json.1234.1.tmp'), '{"v":') // the daemon's write in flight
  const reader = await FileStore.open(dir, quiet, { readOnly: true })
  t.same(records(await reader.list('networks')), [{ id: 'n1', value: { v: 1 } }])
  t.ok(existsSync(join(coll, 'n2.json.1234.1.tmp')), 'the temporary file is left alone')
  const checking = await FileStore.open(dir, quiet, { readOnly: true, check: (_c, id) => (id === 'n1' ? 'not liked' : undefined) })
  await t.rejects(checking.list('networks'), { name: 'TsnetError', message: /n1\.json cannot be read: not liked/ }, 'a refused record is an error, even with a logger')
  t.ok(existsSync(join(coll, 'n1.json')), 'and stays where it is')
  t.notOk(existsSync(join(dir, 'store', 'quarantine')), 'nothing quarantined')
})

/** Counts FileHandle.sync/datasync calls (the fsyncs) while `fn` runs. */
async function countSyncs(dir: string, fn: () => Promise<unknown>): Promise<{ sync: number; datasync: number }> {
  const probe = await open(join(dir, 'probe'), 'w')
  const proto = Object.getPrototypeOf(probe) as { sync: () => Promise<void>; datasync: () => Promise<void> }
  await probe.close()
  const counts = { sync: 0, datasync: 0 }
  const { sync, datasync } = proto
  proto.sync = function (this: unknown) { counts.sync++; return sync.call(this) }
  proto.datasync = function (this: unknown) { counts.datasync++; return datasync.call(this) }
  try {
    await fn()
  } finally {
    proto.sync = sync
    proto.datasync = datasync
  }
  return counts
}

t.test('durable writes fsync the file and the directory; non-durable ones fsync nothing', async (t) => {
  const dir = await tempDir(t)
  const store = await FileStore.open(dir)
  t.same(await countSyncs(dir, () => store.put('endpoints', 'e1', { v: 1 })), { sync: 1, datasync: 1 }, 'durable put: the data, then the directory')
  t.same(await countSyncs(dir, () => store.txn([{ key: 'endpoints/e2', absent: true }], [{ put: 'endpoints/e2', value: 2 }])), { sync: 1, datasync: 1 }, 'durable create: the same')
  t.same(await countSyncs(dir, () => store.delete('endpoints', 'e2')), { sync: 1, datasync: 0 }, 'durable delete: the directory')
  t.same(await countSyncs(dir, () => store.txn([], [{ put: 'endpoints/e3', value: 3 }, { put: 'leases/l', value: 4 }])), { sync: 2, datasync: 2 }, 'two collections: each file, each directory')
  t.same(await countSyncs(dir, () => store.put('endpoints', 'e1', { v: 2 }, { durable: false })), { sync: 0, datasync: 0 }, 'non-durable put: none')
  t.same(await countSyncs(dir, () => store.txn([{ key: 'endpoints/e4', absent: true }], [{ put: 'endpoints/e4', value: 4 }], { durable: false })), { sync: 0, datasync: 0 }, 'non-durable create: none')
  t.same(await countSyncs(dir, () => store.delete('endpoints', 'e4', { durable: false })), { sync: 0, datasync: 0 }, 'non-durable delete: none')
  t.same((await store.list<unknown>('endpoints/')).map((e) => [e.id, e.value]), [['e1', { v: 2 }], ['e3', 3]], 'and every write took effect')
})

t.test('a create that loses at link(2) to another writer undoes the creates before it and writes nothing', async (t) => {
  const dir = await tempDir(t)
  const store = await FileStore.open(dir)
  const other = join(dir, 'store', 'pools', 'b.json')
  // Another process creates pools/b after the conditions were checked, just before our link of it.
  const fsp = createRequire(import.meta.url)('node:fs').promises as { link: (a: string, b: string) => Promise<void> }
  const realLink = fsp.link
  fsp.link = async (from: string, to: string) => {
    if (to === other) await writeFile(other, '"theirs"')
    return realLink(from, to)
  }
  syncBuiltinESMExports()
  let result
  try {
    result = await store.txn([{ key: 'pools/a', absent: true }, { key: 'pools/b', absent: true }], [{ put: 'pools/a', value: 'mine' }, { put: 'pools/b', value: 'mine' }])
  } finally {
    fsp.link = realLink
    syncBuiltinESMExports()
  }
  t.equal(result.ok, false, 'the transaction reports the loss')
  t.same((await store.list<string>('pools/')).map((e) => [e.id, e.value]), [['b', 'theirs']], 'pools/a, linked first, was removed again; pools/b is theirs')
  t.same((await readdir(join(dir, 'store', 'pools'))).sort(), ['b.json'], 'no temporary file is left')
})
