// IPAM over a store more than one writer uses: pools and addresses are claimed in the store
// (create-if-absent), a lost claim reads the store again and retries, and the in-memory maps are
// only a cache. First two IpamServices in this process, each with its own FileStore object (so
// its own cache) over one directory, step by step; then two processes issuing 50 parallel
// RequestAddress each on one pool.
import t, { type Test } from 'tap'
import { existsSync } from 'node:fs'
import { readdir, readFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { pino } from 'pino'
import { DOCKER_DEFAULT_POOLS_TEXT, parseDefaultPools } from '../../src/core/ipam.js'
import type { LeaseRecord } from '../../src/core/records.js'
import { FakeHost } from '../../src/host/fake-host.js'
import { IpamService } from '../../src/services/ipam-service.js'
import { FileStore } from '../../src/store/file-store.js'
import { raceChildren } from './fixtures/children.js'
import { log, tempDir } from './fixtures/util.js'

// Child processes: a limit that catches a hang, not a slow machine.
t.setTimeout(240_000)

const here = dirname(fileURLToPath(import.meta.url))
const writer = join(here, 'fixtures', 'ipam-writer.mjs')
const built = existsSync(join(here, '..', '..', 'dist', 'services', 'ipam-service.js'))
const config = { defaultPools: parseDefaultPools(DOCKER_DEFAULT_POOLS_TEXT) }

/** A logger that counts lost claims. */
function counting() {
  const counts = { address: 0, pool: 0 }
  const logger = pino({ level: 'info' }, {
    write: (l: string) => {
      if (l.includes('"address.claim-lost"')) counts.address++
      if (l.includes('"pool.claim-lost"')) counts.pool++
    },
  })
  return { counts, logger }
}

/** Two writers over one state directory, each loaded before the other wrote anything. */
async function twoWriters(t: Test) {
  const dir = await tempDir(t)
  const host = new FakeHost()
  const open = async () => {
    const ipam = new IpamService(await FileStore.open(dir), host, config)
    await ipam.load()
    return ipam
  }
  return { dir, host, open, a: await open(), b: await open() }
}

/** The leases on disk: address → record, straight from the files. */
async function leaseFiles(dir: string): Promise<Map<string, LeaseRecord>> {
  const out = new Map<string, LeaseRecord>()
  for (const f of await readdir(join(dir, 'store', 'leases'))) {
    const lease = JSON.parse(await readFile(join(dir, 'store', 'leases', f), 'utf8')) as LeaseRecord
    if (out.has(lease.address)) throw new Error(`two lease files for ${lease.address}`)
    out.set(lease.address, lease)
  }
  return out
}

t.test('an address another writer claimed first: the claim is lost, the cache is refreshed, the next free address is taken', async (t) => {
  const { dir, a, b } = await twoWriters(t)
  const { PoolID } = await a.requestPool({ AddressSpace: 'LocalDefault', Pool: '10.60.0.0/24' }, log)
  const byB = await Promise.all(Array.from({ length: 10 }, () => b.requestAddress({ PoolID }, log)))
  t.same(byB.map((r) => r.Address).sort(), Array.from({ length: 10 }, (_, i) => `10.60.0.${i + 1}/24`).sort(), 'B (which read the pool from the store): .1 to .10')
  const { counts, logger } = counting()
  const byA = await Promise.all(Array.from({ length: 10 }, () => a.requestAddress({ PoolID }, logger)))
  t.same(byA.map((r) => r.Address).sort(), Array.from({ length: 10 }, (_, i) => `10.60.0.${i + 11}/24`).sort(), "A, whose cache knew none of B's leases: .11 to .20")
  t.equal(counts.address, 10, "each of A's ten first picks (.1 to .10, from its stale cache) lost its claim")
  const onDisk = await leaseFiles(dir)
  t.equal(onDisk.size, 20, '20 leases on disk, one per address')
  t.equal(a.snapshot()[0]?.leases.length, 20, "A's cache now holds all 20")

  await a.requestAddress({ PoolID, Address: '10.60.0.30' }, log)
  const held = (await leaseFiles(dir)).get('10.60.0.30')
  await t.rejects(b.requestAddress({ PoolID, Address: '10.60.0.30' }, log),
    { name: 'TsnetError', kind: 'conflict', message: /10\.60\.0\.30 is already in use in pool 10\.60\.0\.0\/24/ }, "a preferred address only the other writer's cache knows is taken: a conflict")
  t.same((await leaseFiles(dir)).get('10.60.0.30'), held, "A's lease is untouched")
  t.equal((await leaseFiles(dir)).size, 21, 'and B wrote nothing')
})

t.test('pools: a subnet another writer holds, or overlaps, is refused; an automatic pool moves on', async (t) => {
  const { dir, open, b } = await twoWriters(t)
  const [a, c, d] = [await open(), await open(), await open()] // each loaded before B wrote its pools
  const auto = await b.requestPool({ AddressSpace: 'LocalDefault' }, log)
  t.equal(auto.Pool, '172.17.0.0/16')
  await b.requestPool({ AddressSpace: 'LocalDefault', Pool: '10.88.0.0/16' }, log)
  const lost = counting()
  await t.rejects(a.requestPool({ AddressSpace: 'LocalDefault', Pool: '10.88.0.0/16' }, lost.logger), { name: 'TsnetError', kind: 'conflict', message: /overlaps subnet 10\.88\.0\.0\/16/ }, 'the same subnet: the claim of its key is lost')
  await t.rejects(c.requestPool({ AddressSpace: 'LocalDefault', Pool: '10.88.5.0/24' }, lost.logger), { name: 'TsnetError', kind: 'conflict', message: /overlaps subnet 10\.88\.0\.0\/16/ }, 'an overlapping one: another key, so seen after the claim, which is withdrawn')
  t.same((await readdir(join(dir, 'store', 'pools'))).sort(), ['LocalDefault%2F10.88.0.0%2F16.json', 'LocalDefault%2F172.17.0.0%2F16.json'], "only B's pools are on disk")
  const next = await d.requestPool({ AddressSpace: 'LocalDefault' }, lost.logger)
  t.equal(next.Pool, '172.18.0.0/16', "an automatic pool skips the one B took")
  t.equal(lost.counts.pool, 3, 'one lost claim each: taken, overlapping, taken')
  t.equal((await a.requestAddress({ PoolID: auto.PoolID }, log)).Address, '172.17.0.1/16', 'A serves addresses of a pool only B requested')
})

t.test('garbage collection releases a lease only if it is still the one judged stale, across writers', async (t) => {
  const { dir, a, b } = await twoWriters(t)
  const { PoolID } = await a.requestPool({ AddressSpace: 'LocalDefault', Pool: '10.61.0.0/24' }, log)
  await a.requestAddress({ PoolID, Address: '10.61.0.5' }, log)
  const judged = a.poolsWithLeases()[0]?.leases[0]?.createdAt as string
  await new Promise((r) => setTimeout(r, 5)) // the next lease gets another createdAt
  // B (fresh cache: it loads A's lease) releases it and leases the address again: a new lease.
  await b.releaseAddress({ PoolID, Address: '10.61.0.5' }, log)
  await b.requestAddress({ PoolID, Address: '10.61.0.5' }, log)
  const renewed = (await leaseFiles(dir)).get('10.61.0.5')
  t.not(renewed?.createdAt, judged, 'the address has a new lease')
  await a.releaseStaleAddress(PoolID, '10.61.0.5', judged, log)
  t.same((await leaseFiles(dir)).get('10.61.0.5'), renewed, "A's stale view (the old lease's revision) released nothing")
})

t.test('two processes, 50 parallel RequestAddress each on one pool: 100 distinct addresses, and the disk agrees', { skip: built ? false : 'build first (npm run build): the children use dist/' }, async (t) => {
  const dir = await tempDir(t)
  const host = new FakeHost()
  const parent = new IpamService(await FileStore.open(dir), host, config)
  await parent.load()
  const { PoolID } = await parent.requestPool({ AddressSpace: 'LocalDefault', Pool: '10.77.0.0/24' }, log)
  const outcomes = await raceChildren(t, writer, [[dir, PoolID, '50'], [dir, PoolID, '50']]) as Array<{ addresses: string[]; errors: string[]; lost: number }>
  t.same(outcomes.map((o) => o.errors), [[], []], 'every request succeeded')
  const all = outcomes.flatMap((o) => o.addresses)
  t.equal(all.length, 100, '100 addresses handed out')
  t.equal(new Set(all).size, 100, 'all distinct: no address went to both writers')
  t.same([...all].sort(), Array.from({ length: 100 }, (_, i) => `10.77.0.${i + 1}/24`).sort(), 'exactly .1 to .100: lowest free, no hole')
  t.comment(`claims lost to the other process and retried: ${outcomes.map((o) => o.lost).join(' + ')}`)
  const onDisk = await leaseFiles(dir)
  t.same([...onDisk.keys()].sort(), all.map((a) => a.split('/')[0]).sort(), 'one lease file per address handed out, and nothing else')
  t.ok([...onDisk.values()].every((l) => l.poolId === PoolID && l.kind === 'endpoint'), 'each naming the pool')
  const fresh = new IpamService(await FileStore.open(dir), host, config)
  await fresh.load()
  t.equal(fresh.snapshot()[0]?.leases.length, 100, 'a restart loads all 100')
})
