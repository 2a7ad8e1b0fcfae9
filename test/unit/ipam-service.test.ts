// services/ipam-service over FakeHost and a FileStore in a temporary directory.
import t, { type Test } from 'tap'
import { readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { formatPrefix, parseCidr, prefixWithin, prefixesOverlap } from '../../src/core/addr.js'
import { DOCKER_DEFAULT_POOLS_TEXT, parseDefaultPools } from '../../src/core/ipam.js'
import type { LeaseRecord, PoolRecord } from '../../src/core/records.js'
import { FakeHost } from '../../src/host/fake-host.js'
import { OPT } from '../../src/protocol/types.js'
import { GC_COOLDOWN_MS, IpamService } from '../../src/services/ipam-service.js'
import { ManualClock } from '../../src/engine/clock.js'
import { FileStore } from '../../src/store/file-store.js'
import { log, pfx, tempDir } from './fixtures/util.js'

const GATEWAY = { [OPT.requestAddressType]: OPT.gatewayType }

async function setup(t: Test, pools = DOCKER_DEFAULT_POOLS_TEXT) {
  const dir = await tempDir(t)
  const store = await FileStore.open(dir)
  const host = new FakeHost()
  const config = { defaultPools: parseDefaultPools(pools) }
  const ipam = new IpamService(store, host, config)
  await ipam.load()
  /** A new service over the same directory, as after a restart. */
  const reload = async () => {
    const s = new IpamService(await FileStore.open(dir), host, config)
    await s.load()
    return s
  }
  return { dir, store, host, ipam, reload }
}

const listing = async (dir: string) => {
  const out: Record<string, string[]> = {}
  for (const c of ['pools', 'leases', 'meta']) out[c] = (await readdir(join(dir, 'store', c))).sort()
  return out
}

t.test('address spaces and capabilities', async (t) => {
  const { ipam } = await setup(t)
  t.same(ipam.defaultAddressSpaces(), { LocalDefaultAddressSpace: 'LocalDefault', GlobalDefaultAddressSpace: 'GlobalDefault' })
  t.same(ipam.capabilities(), { RequiresMACAddress: false, RequiresRequestReplay: false })
  await t.rejects(ipam.requestPool({ AddressSpace: 'Bogus' }, log), { name: 'TsnetError', kind: 'invalid', message: /address space "Bogus" is unknown/ })
})

t.test('automatic pools skip host routes and allocated pools', async (t) => {
  const { ipam, host, store } = await setup(t)
  host.routes = ['172.17.0.0/16', '172.18.5.0/24', '10.0.0.0/8', 'fd00::/8']
  const first = await ipam.requestPool({ AddressSpace: 'LocalDefault', Pool: '', SubPool: '', Options: {}, V6: false }, log)
  t.same(first, { PoolID: 'LocalDefault/172.19.0.0/16', Pool: '172.19.0.0/16', Data: {} }, 'docker0 and a route inside 172.18 are avoided')
  const explicit = await ipam.requestPool({ AddressSpace: 'LocalDefault', Pool: '172.20.0.0/16' }, log)
  t.equal(explicit.PoolID, 'LocalDefault/172.20.0.0/16')
  const next = await ipam.requestPool({ AddressSpace: 'LocalDefault' }, log)
  t.equal(next.Pool, '172.21.0.0/16', 'the explicit pool is skipped too')
  host.routes = []
  const after = await ipam.requestPool({ AddressSpace: 'LocalDefault' }, log)
  t.equal(after.Pool, '172.17.0.0/16', 'routes are read on every request')
  const stored = (await store.list<PoolRecord>('pools')).map((p) => p.value.pool).sort()
  t.same(stored, ['172.17.0.0/16', '172.19.0.0/16', '172.20.0.0/16', '172.21.0.0/16'], 'every pool is persisted')
})

t.test('GlobalDefault draws from 10.0.0.0/8 in /24s and ignores host routes; spaces do not clash', async (t) => {
  const { ipam, host } = await setup(t)
  host.routes = ['172.17.0.0/16', '10.0.0.0/24']
  const g = await ipam.requestPool({ AddressSpace: 'GlobalDefault' }, log)
  t.equal(g.PoolID, 'GlobalDefault/10.0.0.0/24', 'the first global pool, although the host routes it')
  const g2 = await ipam.requestPool({ AddressSpace: 'GlobalDefault' }, log)
  t.equal(g2.PoolID, 'GlobalDefault/10.0.1.0/24')
  const l = await ipam.requestPool({ AddressSpace: 'LocalDefault' }, log)
  t.equal(l.PoolID, 'LocalDefault/172.18.0.0/16')
})

t.test('a failing route lookup is reported with context', async (t) => {
  const { ipam, host, dir } = await setup(t)
  const before = await listing(dir)
  host.failNext.add('routedPrefixes')
  await t.rejects(ipam.requestPool({ AddressSpace: 'LocalDefault' }, log), { name: 'TsnetError', kind: 'host', message: /reading the host routes to choose a free pool: injected failure/ })
  t.same(await listing(dir), before, 'nothing persisted')
})

t.test('never hands out the same pool twice: 31 pools, then a clear error', async (t) => {
  const { ipam } = await setup(t)
  const got: string[] = []
  const errors: Error[] = []
  for (let i = 0; i < 40; i++) {
    try {
      got.push((await ipam.requestPool({ AddressSpace: 'LocalDefault', Pool: '', SubPool: '', Options: null, V6: false }, log)).Pool)
    } catch (err) {
      errors.push(err as Error)
    }
  }
  t.equal(got.length, 31, '31 pools')
  t.equal(new Set(got).size, 31, 'all distinct')
  const prefixes = got.map(pfx)
  t.notOk(prefixes.some((a, i) => prefixes.some((b, j) => i !== j && prefixesOverlap(a, b))), 'no two overlap')
  t.equal(got[0], '172.17.0.0/16')
  t.equal(got[30], '192.168.240.0/20')
  t.equal(errors.length, 9, 'the 9 requests after that fail')
  for (const e of errors) t.match(e, { name: 'TsnetError', kind: 'exhausted', message: /no free address pool is left/ })
  t.match(errors[0]?.message, /172\.17\.0\.0\/16 in \/16.*192\.168\.0\.0\/16 in \/20.*give --subnet explicitly/, 'the message lists the default pools')
})

t.test('size-only requests', async (t) => {
  const { ipam } = await setup(t)
  const a = await ipam.requestPool({ AddressSpace: 'LocalDefault', Pool: '0.0.0.0/24' }, log)
  t.same([a.PoolID, a.Pool], ['LocalDefault/172.17.0.0/24', '172.17.0.0/24'])
  const b = await ipam.requestPool({ AddressSpace: 'LocalDefault', Pool: '0.0.0.0/24' }, log)
  t.equal(b.Pool, '172.17.1.0/24')
  const c = await ipam.requestPool({ AddressSpace: 'LocalDefault' }, log)
  t.equal(c.Pool, '172.18.0.0/16', 'a default-size pool avoids the /24s')
  await t.rejects(ipam.requestPool({ AddressSpace: 'LocalDefault', Pool: '0.0.0.0/8' }, log), { name: 'TsnetError', kind: 'exhausted', message: /in \/8/ })
})

t.test('an overlapping explicit subnet is refused and nothing is persisted', async (t) => {
  const { ipam, dir, store } = await setup(t)
  await ipam.requestPool({ AddressSpace: 'LocalDefault', Pool: '10.10.0.0/16' }, log)
  const before = await listing(dir)
  const snapBefore = JSON.stringify(ipam.snapshot())
  for (const pool of ['10.10.0.0/16', '10.10.5.0/24', '10.0.0.0/8']) {
    await t.rejects(ipam.requestPool({ AddressSpace: 'LocalDefault', Pool: pool }, log), {
      name: 'TsnetError', kind: 'conflict', message: new RegExp(`subnet ${pool.replace(/\./g, '\\.')} overlaps subnet 10\\.10\\.0\\.0/16`),
    }, `${pool} refused`)
  }
  await t.rejects(ipam.requestPool({ AddressSpace: 'LocalDefault', Pool: '10.10.0.0/16', SubPool: '10.10.1.0/24' }, log), { name: 'TsnetError', kind: 'conflict' }, 'also with a range')
  t.same(await listing(dir), before, 'the store listing is unchanged')
  t.equal(JSON.stringify(ipam.snapshot()), snapBefore, 'the in-memory state is unchanged')
  t.equal((await store.list('pools')).length, 1)
  await t.rejects(ipam.requestPool({ AddressSpace: 'LocalDefault', Pool: '10.11.0.1/16' }, log), { name: 'TsnetError', kind: 'invalid', message: /host bits/ })
  t.same(await listing(dir), before, 'a malformed request persists nothing either')
})

t.test('RequestAddress: gateway, preferred, lowest free', async (t) => {
  const { ipam, store } = await setup(t)
  const { PoolID } = await ipam.requestPool({ AddressSpace: 'LocalDefault', Pool: '10.20.0.0/24' }, log)
  const gw = await ipam.requestAddress({ PoolID, Address: '', Options: GATEWAY }, log)
  t.same(gw, { Address: '10.20.0.1/24', Data: {} }, 'the gateway is the first address, with the pool mask')
  const pref = await ipam.requestAddress({ PoolID, Address: '10.20.0.50', Options: { [OPT.endpointName]: 'web' } }, log)
  t.equal(pref.Address, '10.20.0.50/24', 'the preferred address')
  const next = await ipam.requestAddress({ PoolID, Address: '', Options: null }, log)
  t.equal(next.Address, '10.20.0.2/24', 'lowest free')
  const cidrPref = await ipam.requestAddress({ PoolID, Address: '10.20.0.60/24' }, log)
  t.equal(cidrPref.Address, '10.20.0.60/24', 'a preferred address given as CIDR')
  const leases = new Map((await store.list<LeaseRecord>('leases')).map((l) => [l.value.address, l.value]))
  t.equal(leases.get('10.20.0.1')?.kind, 'gateway', 'the gateway lease is marked as such')
  t.equal(leases.get('10.20.0.50')?.kind, 'endpoint')
  t.equal(leases.get('10.20.0.50')?.owner, 'web', 'the container name is kept')
  t.equal(leases.get('10.20.0.2')?.kind, 'endpoint')
  t.equal(leases.get('10.20.0.2')?.poolId, PoolID)

  await t.rejects(ipam.requestAddress({ PoolID, Address: '10.20.0.50' }, log), { name: 'TsnetError', kind: 'conflict', message: /10\.20\.0\.50 is already in use/ })
  await t.rejects(ipam.requestAddress({ PoolID, Address: '10.21.0.5' }, log), { name: 'TsnetError', kind: 'invalid', message: /outside pool 10\.20\.0\.0\/24/ })
  await t.rejects(ipam.requestAddress({ PoolID, Address: '10.20.0.255' }, log), { name: 'TsnetError', kind: 'invalid', message: /broadcast/ })
  await t.rejects(ipam.requestAddress({ PoolID, Address: 'fd00::5' }, log), { name: 'TsnetError', kind: 'invalid', message: /not an IPv4 address/ })
  await t.rejects(ipam.requestAddress({ PoolID, Address: 'nonsense' }, log), { name: 'TsnetError', kind: 'invalid', message: /requested address "nonsense" is not an IP address/ })
  await t.rejects(ipam.requestAddress({ PoolID: 'LocalDefault/1.2.3.0/24', Address: '' }, log), { name: 'TsnetError', kind: 'notfound', message: /address pool LocalDefault\/1\.2\.3\.0\/24 is unknown to tsnet/ })
  t.equal((await store.list('leases')).length, 4, 'failed requests leased nothing')

  await ipam.releaseAddress({ PoolID, Address: '10.20.0.2' }, log)
  t.equal((await ipam.requestAddress({ PoolID, Address: '' }, log)).Address, '10.20.0.2/24', 'a released address is reused')
})

t.test('RequestAddress with a range (SubPool)', async (t) => {
  const { ipam } = await setup(t)
  const r = await ipam.requestPool({ AddressSpace: 'LocalDefault', Pool: '10.30.0.0/24', SubPool: '10.30.0.128/25' }, log)
  t.same(r, { PoolID: 'LocalDefault/10.30.0.0/24/10.30.0.128/25', Pool: '10.30.0.0/24', Data: {} })
  t.equal((await ipam.requestAddress({ PoolID: r.PoolID, Options: GATEWAY }, log)).Address, '10.30.0.128/24', 'the gateway: first free in the range')
  t.equal((await ipam.requestAddress({ PoolID: r.PoolID, Address: '10.30.0.5' }, log)).Address, '10.30.0.5/24', 'preferred outside the range but inside the pool')
  t.equal((await ipam.requestAddress({ PoolID: r.PoolID }, log)).Address, '10.30.0.129/24')
})

t.test('100 concurrent RequestAddress calls get 100 distinct addresses', async (t) => {
  const { ipam, store, reload } = await setup(t)
  const { PoolID } = await ipam.requestPool({ AddressSpace: 'LocalDefault', Pool: '10.40.0.0/24' }, log)
  const results = await Promise.all(Array.from({ length: 100 }, () => ipam.requestAddress({ PoolID, Address: '', Options: null }, log)))
  const addrs = results.map((r) => r.Address)
  t.equal(new Set(addrs).size, 100, 'all distinct')
  const expected = Array.from({ length: 100 }, (_, i) => `10.40.0.${i + 1}/24`)
  t.same([...addrs].sort(), [...expected].sort(), 'exactly .1 to .100: the lowest free each time')
  t.equal((await store.list('leases')).length, 100, '100 leases persisted')
  const again = await reload()
  t.equal(again.snapshot().find((p) => p.id === PoolID)?.leases.length, 100, 'all 100 are there after a reload')
})

t.test('releasing unknown things succeeds', async (t) => {
  const { ipam, dir } = await setup(t)
  const { PoolID } = await ipam.requestPool({ AddressSpace: 'LocalDefault', Pool: '10.50.0.0/24' }, log)
  const before = await listing(dir)
  t.same(await ipam.releaseAddress({ PoolID: 'LocalDefault/9.9.9.0/24', Address: '9.9.9.9' }, log), {}, 'unknown pool')
  t.same(await ipam.releaseAddress({ PoolID, Address: '10.50.0.77' }, log), {}, 'an address never leased')
  t.same(await ipam.releaseAddress({ PoolID, Address: 'junk' }, log), {}, 'not an address')
  t.same(await ipam.releasePool({ PoolID: 'LocalDefault/9.9.9.0/24' }, log), {}, 'unknown pool')
  t.same(await ipam.releasePool({ PoolID: '' }, log), {}, 'empty ID')
  t.same(await listing(dir), before, 'nothing changed')
})

t.test('ReleaseAddress and ReleasePool remove what they name', async (t) => {
  const { ipam, store, reload } = await setup(t)
  const a = await ipam.requestPool({ AddressSpace: 'LocalDefault' }, log)
  const b = await ipam.requestPool({ AddressSpace: 'LocalDefault' }, log)
  await ipam.requestAddress({ PoolID: a.PoolID, Options: GATEWAY }, log)
  await ipam.requestAddress({ PoolID: a.PoolID }, log)
  const keep = await ipam.requestAddress({ PoolID: b.PoolID }, log)
  t.same(await ipam.releaseAddress({ PoolID: a.PoolID, Address: '172.17.0.2/16' }, log), {}, 'release by CIDR')
  t.same((await store.list<LeaseRecord>('leases')).map((l) => l.value.address).sort(), ['172.17.0.1', '172.18.0.1'])
  t.same(await ipam.releasePool({ PoolID: a.PoolID }, log), {})
  t.same((await store.list<PoolRecord>('pools')).map((p) => p.id), [b.PoolID], 'the pool record is gone')
  t.same((await store.list<LeaseRecord>('leases')).map((l) => l.value.address), ['172.18.0.1'], 'its leases are gone, others stay')
  await t.rejects(ipam.requestAddress({ PoolID: a.PoolID }, log), { name: 'TsnetError', kind: 'notfound' })
  t.equal((await ipam.requestPool({ AddressSpace: 'LocalDefault' }, log)).Pool, '172.17.0.0/16', 'a released pool can be handed out again')
  const again = await reload()
  t.same(again.snapshot().map((p) => [p.pool, p.leases]).sort(), [['172.17.0.0/16', []], ['172.18.0.0/16', [keep.Address.split('/')[0]]]])
})

t.test('state survives a reload', async (t) => {
  const { ipam, reload, store } = await setup(t)
  const { PoolID } = await ipam.requestPool({ AddressSpace: 'LocalDefault', Pool: '10.60.0.0/24', SubPool: '' }, log)
  await ipam.requestAddress({ PoolID, Options: GATEWAY }, log)
  await ipam.requestAddress({ PoolID }, log)
  await ipam.requestAddress({ PoolID, Address: '10.60.0.4' }, log)
  const auto = await ipam.requestPool({ AddressSpace: 'LocalDefault' }, log)

  const again = await reload()
  t.equal((await again.requestAddress({ PoolID }, log)).Address, '10.60.0.3/24', 'the next address continues after .1, .2 (and skips .4)')
  t.equal((await again.requestAddress({ PoolID }, log)).Address, '10.60.0.5/24')
  await t.rejects(again.requestAddress({ PoolID, Address: '10.60.0.2' }, log), { name: 'TsnetError', kind: 'conflict' }, 'old leases are still held')
  await t.rejects(again.requestPool({ AddressSpace: 'LocalDefault', Pool: '10.60.0.0/25' }, log), { name: 'TsnetError', kind: 'conflict' }, 'old pools are still held')
  t.not((await again.requestPool({ AddressSpace: 'LocalDefault' }, log)).Pool, auto.Pool, 'the automatic pool is not handed out again')
  t.equal((await store.list('leases')).length, 5)
})

t.test('load removes leases whose pool is gone (crash between the two deletes)', async (t) => {
  const { store, reload } = await setup(t)
  const orphan: LeaseRecord = { poolId: 'LocalDefault/10.70.0.0/24', address: '10.70.0.9', kind: 'endpoint', createdAt: 'x' }
  await store.put('leases', `${orphan.poolId}#${orphan.address}`, orphan)
  const again = await reload()
  t.same(await store.list('leases'), [], 'the orphan lease is removed')
  const { PoolID } = await again.requestPool({ AddressSpace: 'LocalDefault', Pool: '10.70.0.0/24' }, log)
  t.equal((await again.requestAddress({ PoolID, Address: '10.70.0.9' }, log)).Address, '10.70.0.9/24', 'its address is free')
})

t.test('automatic IPv6 pools: /64s in a ULA /48 that survives a reload', async (t) => {
  const { ipam, reload, store } = await setup(t)
  const a = await ipam.requestPool({ AddressSpace: 'LocalDefault', Pool: '', V6: true }, log)
  const pa = parseCidr(a.Pool)
  t.ok(pa, `${a.Pool} is a CIDR`)
  if (!pa) return
  t.equal(pa.prefix.bits, 64, 'a /64')
  t.equal(pa.ip.family, 6)
  t.equal(pa.prefix.network >> 120n, 0xfdn, 'in fd00::/8 (ULA, L bit set)')
  t.equal(a.PoolID, `LocalDefault/${a.Pool}`)
  const meta = (await store.list<{ ula48: string }>('meta')).find((m) => m.id === 'ipam')
  t.ok(meta, 'the /48 is persisted')
  const ula = parseCidr(meta?.value.ula48 ?? '')
  t.equal(ula?.prefix.bits, 48)
  t.equal(formatPrefix(pa.prefix), formatPrefix({ family: 6, network: ula?.prefix.network ?? -1n, bits: 64 }), 'the first /64 of the /48')
  t.ok(ula && prefixWithin(pa.prefix, ula.prefix), 'inside the /48')

  const b = await ipam.requestPool({ AddressSpace: 'LocalDefault', V6: true }, log)
  t.not(b.Pool, a.Pool, 'a second automatic pool is another /64')
  t.ok(ula && prefixWithin(pfx(b.Pool), ula.prefix))

  const addr = await ipam.requestAddress({ PoolID: a.PoolID, Options: GATEWAY }, log)
  t.equal(addr.Address, `${a.Pool.replace('/64', '1/64')}`, 'the gateway is ::1 of the /64 with a /64 mask')

  const again = await reload()
  const c = await again.requestPool({ AddressSpace: 'LocalDefault', V6: true }, log)
  t.ok(ula && prefixWithin(pfx(c.Pool), ula.prefix), 'after a reload the /48 is the same')
  t.not(c.Pool, a.Pool)
  t.not(c.Pool, b.Pool)
  const metaAfter = (await store.list<{ ula48: string }>('meta')).find((m) => m.id === 'ipam')
  t.equal(metaAfter?.value.ula48, meta?.value.ula48, 'the stored /48 did not change')

  const other = await setup(t)
  const o = await other.ipam.requestPool({ AddressSpace: 'LocalDefault', V6: true }, log)
  t.not(o.Pool, a.Pool, 'another host (fresh state) picks another /48 (40 random bits)')
})

t.test('explicit and size-only IPv6 pools', async (t) => {
  const { ipam } = await setup(t)
  const e = await ipam.requestPool({ AddressSpace: 'LocalDefault', Pool: 'fd00:aaaa::/64', V6: true }, log)
  t.equal(e.PoolID, 'LocalDefault/fd00:aaaa::/64')
  t.equal((await ipam.requestAddress({ PoolID: e.PoolID }, log)).Address, 'fd00:aaaa::1/64')
  await t.rejects(ipam.requestPool({ AddressSpace: 'LocalDefault', Pool: 'fd00:aaaa::/48', V6: true }, log), { name: 'TsnetError', kind: 'conflict' })
  await t.resolves(ipam.requestPool({ AddressSpace: 'LocalDefault', Pool: '10.0.0.0/24', V6: false }, log), 'IPv4 pools are separate')
  const s = await ipam.requestPool({ AddressSpace: 'LocalDefault', Pool: '::/56', V6: true }, log)
  t.equal(pfx(s.Pool).bits, 56, 'size-only IPv6')
  await t.rejects(ipam.requestPool({ AddressSpace: 'LocalDefault', Pool: '::/40', V6: true }, log), { name: 'TsnetError', kind: 'invalid', message: /at most a \/48, not \/40/ })
  await t.rejects(ipam.requestPool({ AddressSpace: 'LocalDefault', Pool: 'fd00::/64', V6: false }, log), { name: 'TsnetError', kind: 'invalid', message: /is IPv6, but the request is for IPv4/ })
})

t.test('createdAt stamps and cooling follow the injected clock, not the wall clock', async (t) => {
  const dir = await tempDir(t)
  const clock = new ManualClock()
  const ipam = new IpamService(await FileStore.open(dir), new FakeHost(), { defaultPools: parseDefaultPools(DOCKER_DEFAULT_POOLS_TEXT) }, clock)
  await ipam.load()
  const { PoolID } = await ipam.requestPool({ AddressSpace: 'LocalDefault', Pool: '10.90.0.0/24' }, log)
  t.equal(ipam.poolsWithLeases()[0]?.createdAt, '2026-01-01T00:00:00.000Z', "the pool's createdAt is the clock's")
  clock.advance(1000)
  await ipam.requestAddress({ PoolID }, log)
  const lease = ipam.poolsWithLeases()[0]?.leases[0]
  t.equal(lease?.createdAt, '2026-01-01T00:00:01.000Z', "the lease's too")
  await ipam.releaseStaleAddress(PoolID, '10.90.0.1', lease?.createdAt ?? '', log)
  t.equal((await ipam.requestAddress({ PoolID }, log)).Address, '10.90.0.2/24', 'the collected address cools')
  clock.advance(GC_COOLDOWN_MS - 1)
  t.equal((await ipam.requestAddress({ PoolID }, log)).Address, '10.90.0.3/24', 'still cooling a millisecond before the end, by the clock')
  clock.advance(1)
  t.equal((await ipam.requestAddress({ PoolID }, log)).Address, '10.90.0.1/24', 'cooled once the clock says so')
})
