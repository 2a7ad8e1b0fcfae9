// Cluster networks on Docker's IPAM verbs and endpoint locations, against a real etcd (one
// member): two EtcdStore clients are two hosts. The pool is agreed once and refused when another
// subnet is asked; the gateway is the same everywhere; addresses never repeat across hosts; one
// host's endpoints reach the other's view, go when they are deleted, and go with the host's lease;
// the last host to leave takes every key of the network along; an unreachable etcd fails a claim
// within the bound with a sentence naming etcd.
import t from 'tap'
import { pino } from 'pino'
import { ClusterIpam } from '../../src/services/cluster-ipam.js'
import { ClusterLiveness } from '../../src/services/cluster-liveness.js'
import { ClusterLocations, REMOVE_AFTER_MS, type LocalEndpoint } from '../../src/services/cluster-locations.js'
import { ClusterNetworks } from '../../src/services/cluster-networks.js'
import { STALE_CLAIM_MS, checkMember, collectStale, reassert } from '../../src/services/cluster-upkeep.js'
import { EtcdStore } from '../../src/store/etcd-store.js'
import { etcdMissing, freePort, startEtcdCluster } from './lib/etcd-cluster.js'

const log = pino({ level: 'silent' })
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
async function until(ok: () => boolean | Promise<boolean>, ms: number, what: string): Promise<number> {
  const start = Date.now()
  while (!(await ok())) {
    if (Date.now() - start > ms) throw new Error(`${what} did not happen within ${ms} ms`)
    await sleep(50)
  }
  return Date.now() - start
}
const OPT = { 'tsnet.overlay': 'web' }
const pool = (extra: object = {}) => ({ AddressSpace: 'LocalDefault', Pool: '10.220.0.0/24', Options: OPT, ...extra })
const GW = { 'RequestAddressType': 'com.docker.network.gateway' }

if (etcdMissing) {
  t.plan(0, `cluster wiring against a real etcd: ${etcdMissing}`)
} else {
  t.setTimeout(120_000)
  const cluster = await startEtcdCluster(t, 1)
  const host = (name: string, id: string) => {
    const store = new EtcdStore({ endpoints: cluster.endpoints, cluster: name, timeoutMs: 3000 })
    const networks = new ClusterNetworks(store, { hostId: id })
    return { store, networks, ipam: new ClusterIpam(store, networks, async () => []) }
  }

  await t.test('IPAM: one pool for the cluster, one gateway, distinct addresses, and no key left after the last host leaves', async (t) => {
    const a = host('w1', 'host-a')
    const b = host('w1', 'host-b')
    t.teardown(() => Promise.all([a.store.close(), b.store.close()]))
    const pa = await a.ipam.requestPool(pool(), log)
    t.same(pa, { PoolID: 'cluster/web/4', Pool: '10.220.0.0/24', Data: {} })
    const pb = await b.ipam.requestPool(pool({ Pool: '' }), log)
    t.equal(pb.Pool, '10.220.0.0/24', 'a host that gives no subnet gets the cluster\'s')
    await t.rejects(b.ipam.requestPool(pool({ Pool: '10.223.0.0/24' }), log), /"web" is stored with subnet 10.220.0.0\/24, and this host asked for 10.223.0.0\/24/, 'another subnet is refused, naming the stored one')
    // IPv6: Docker asks after IPv4; the first host gives the subnet, the others may leave it out.
    await t.rejects(b.ipam.requestPool(pool({ V6: true, Pool: '' }), log), /has no IPv6 subnet yet: give one with --subnet/, 'no IPv6 subnet anywhere yet: refused')
    t.same(await a.ipam.requestPool(pool({ V6: true, Pool: 'fd00:dc::/64' }), log), { PoolID: 'cluster/web/6', Pool: 'fd00:dc::/64', Data: {} })
    t.same((await b.ipam.requestPool(pool({ V6: true, Pool: '' }), log)).Pool, 'fd00:dc::/64', 'the other host takes the stored IPv6 subnet')
    await t.rejects(b.ipam.requestPool(pool({ V6: true, Pool: 'fd00:dd::/64' }), log), /stored with IPv6 subnet fd00:dc::\/64, and this host asked for fd00:dd::\/64/)
    for (const h of [a, b]) t.same(await h.ipam.requestAddress({ PoolID: 'cluster/web/6', Options: GW }, log), { Address: 'fd00:dc::1/64', Data: {} }, 'one IPv6 gateway')
    const v6 = await Promise.all([a, b].flatMap((h) => Array.from({ length: 5 }, () => h.ipam.requestAddress({ PoolID: 'cluster/web/6' }, log))))
    t.equal(new Set(v6.map((c) => c.Address)).size, 10, 'IPv6 claims from two hosts: distinct')
    t.ok(v6.every((c) => c.Address.startsWith('fd00:dc::') && c.Address.endsWith('/64')), 'inside the IPv6 subnet')
    for (const h of [a, b]) t.same(await h.ipam.requestAddress({ PoolID: pa.PoolID, Options: GW }, log), { Address: '10.220.0.1/24', Data: {} }, 'the same gateway on every host')
    const claims = await Promise.all([a, b].flatMap((h) => Array.from({ length: 20 }, () => h.ipam.requestAddress({ PoolID: pa.PoolID }, log))))
    const ips = claims.map((c) => c.Address)
    t.equal(new Set(ips).size, 40, '40 claims from two hosts at once: 40 addresses')
    t.notOk(ips.includes('10.220.0.1/24'), 'never the gateway')
    await t.rejects(b.ipam.requestAddress({ PoolID: pa.PoolID, Address: ips[0] }, log), /already held by endpoint .* on host host-a/, 'an address another host holds is refused with its holder')
    const keys = async () => (await a.store.list('')).map((e) => e.key).filter((k) => k.includes('web'))
    t.ok((await keys()).length > 40, 'positive control: the network\'s keys are there while hosts hold it')
    for (const ip of ips.slice(0, 20)) await a.ipam.releaseAddress({ PoolID: pa.PoolID, Address: ip }, log)
    await a.ipam.releasePool({ PoolID: pa.PoolID }, log)
    t.ok((await keys()).length > 0, 'one host left: the network stays in the cluster')
    await b.ipam.releasePool({ PoolID: pb.PoolID }, log)
    t.same(await keys(), [], 'the last host left: no key of the network remains (its claims went too)')
    t.same((await a.store.get<{ networks: object }>('cluster-index/networks'))?.value.networks, {}, 'and the index forgot it')
    const again = await a.ipam.requestPool(pool({ Pool: '10.224.0.0/24' }), log)
    t.equal(again.Pool, '10.224.0.0/24', 'the name can be created again with another subnet')
  })

  await t.test('locations: registered under the lease, seen by the other host, gone on delete and with the lease', async (t) => {
    const [sa, sb] = [1, 2].map(() => new EtcdStore({ endpoints: cluster.endpoints, cluster: 'w2', timeoutMs: 3000 })) as [EtcdStore, EtcdStore]
    const la = new ClusterLiveness(sa, { hostId: 'host-a', ttlSeconds: 2, log })
    const lb = new ClusterLiveness(sb, { hostId: 'host-b', ttlSeconds: 2, log })
    await Promise.all([la.start(), lb.start()])
    let localA: LocalEndpoint[] = [
      { network: 'web', endpointId: 'e1', ip: '10.220.0.5', mac: '02:00:00:00:00:05' },
      { network: 'web', endpointId: 'e2', ip: '10.220.0.6', mac: '02:00:00:00:00:06' },
    ]
    const changedOnB: string[] = []
    const a = new ClusterLocations(sa, la, '10.250.0.1', () => localA, () => undefined, log)
    const b = new ClusterLocations(sb, lb, '10.250.0.2', () => [{ network: 'web', endpointId: 'e9', ip: '10.220.0.9', mac: '02:00:00:00:00:09' }], (n) => changedOnB.push(...n), log)
    t.teardown(async () => {
      a.stop()
      b.stop()
      await lb.stop(true)
      await Promise.all([sa.close(), sb.close()])
    })
    a.start()
    b.start()
    await until(() => b.view('web').length === 2, 5000, 'host B sees host A\'s endpoints')
    t.same(b.view('web').map((r) => r.ip).sort(), ['10.220.0.5', '10.220.0.6'])
    t.same(b.view('web')[0]?.vtep, '10.250.0.1', 'behind host A\'s VTEP')
    await until(() => a.view('web').length === 1, 5000, 'host A sees host B\'s endpoint')
    t.notOk(b.view('web').some((r) => r.ip === '10.220.0.9'), 'a host never sees its own endpoints as remote')
    t.ok(changedOnB.includes('web'), 'the change was passed on for rendering')
    localA = localA.slice(0, 1)
    a.changed()
    const gone = await until(() => b.view('web').length === 1, 5000, 'a deleted endpoint leaves the other host\'s view')
    t.ok(gone >= REMOVE_AFTER_MS - 500 && gone < REMOVE_AFTER_MS + 2000, `deleted endpoint gone from the peer in ${gone} ms (kept ${REMOVE_AFTER_MS} ms in case it comes back)`)
    // etcd revoked the lease and the host put its keys back at once (etcd paused, then resumed): no gap.
    const [key] = (await sb.list('cluster-endpoints/web/host-a/')).map((e) => e.key) as [string]
    const entry = await sb.get(key)
    await sb.txn([], [{ delete: key }])
    await sleep(500)
    await sa.txn([], [{ put: key, value: entry?.value, ...(entry?.lease ? { lease: entry.lease } : {}) }])
    let lost = false
    const watchStart = Date.now()
    while (Date.now() - watchStart < REMOVE_AFTER_MS + 1000) {
      if (b.view('web').length !== 1) lost = true
      await sleep(50)
    }
    t.notOk(lost, 'a location deleted and put back within the delay never leaves the view')
    // Host A dies: nobody keeps its lease alive (closing its client ends the keepalives, revoking nothing).
    a.stop()
    await la.stop(false)
    await sa.close()
    const expired = await until(() => b.view('web').length === 0, 15_000, 'a dead host\'s endpoints leave with its lease')
    t.ok(expired <= 15_000, `dead host's endpoints gone ${expired} ms after it stopped (TTL 2 s here)`)
  })

  await t.test('upkeep: only IPAM members create the network; a returning host claims again; stale claims are collected', async (t) => {
    const a = host('w4', 'host-a')
    const b = host('w4', 'host-b')
    t.teardown(() => Promise.all([a.store.close(), b.store.close()]))
    await a.ipam.requestPool(pool(), log)
    await t.rejects(checkMember(b.store, 'web', 'host-b'), /must take its addresses from the cluster store: create it with --ipam-driver tsnet --ipam-opt tsnet.overlay=web/, 'a host that did not join through tsnet\'s IPAM is refused')
    await checkMember(a.store, 'web', 'host-a')
    t.pass('positive control: the host that joined may create it')
    const mine = await a.networks.claim('web', 'e1')
    const theirs = await b.networks.claim('web', 'e2')
    const local = [{ network: 'web', endpointId: 'e1', ip: mine.ip, mac: '02:00:00:00:00:01' }, { network: 'web', endpointId: 'e3', ip: theirs.ip, mac: '02:00:00:00:00:03' }]
    // As the elected tsnet does with a dead host: its claim and its membership go.
    await a.store.txn([], [{ delete: `cluster-addresses/web/${mine.ip}` }, { delete: 'cluster-members/web' }])
    await reassert(a.store, a.networks, ['web'], local, log)
    t.equal((await a.store.get<{ hostId: string }>(`cluster-addresses/web/${mine.ip}`))?.value.hostId, 'host-a', 'the running container\'s address is claimed again')
    t.equal((await a.store.get<{ hostId: string }>(`cluster-addresses/web/${theirs.ip}`))?.value.hostId, 'host-b', 'one another host claimed meanwhile is left to it (and said in the log)')
    await checkMember(a.store, 'web', 'host-a')
    t.pass('and the host is a member again')
    const orphan = await a.networks.claim('web', 'e9')
    const now = Date.now()
    t.equal(await collectStale(a.store, a.networks, ['web'], local, now, log), 0, 'a young claim is kept (Docker may be creating its container)')
    t.equal(await collectStale(a.store, a.networks, ['web'], local, now + STALE_CLAIM_MS + 1000, log), 1, 'an old one no container holds is released')
    t.notOk(await a.store.get(`cluster-addresses/web/${orphan.ip}`), 'it is gone')
    t.ok(await a.store.get(`cluster-addresses/web/${mine.ip}`), 'the claim a container holds stays')
    t.ok(await a.store.get(`cluster-addresses/web/${theirs.ip}`), 'another host\'s claims are never touched')
  })

  await t.test('an unreachable etcd fails a claim within the bound, with a sentence naming etcd', async (t) => {
    const port = await freePort()
    const store = new EtcdStore({ endpoints: [`http://127.0.0.1:${port}`], cluster: 'w3', timeoutMs: 2000 })
    t.teardown(() => store.close())
    const ipam = new ClusterIpam(store, new ClusterNetworks(store, { hostId: 'host-a' }), async () => [])
    const start = Date.now()
    await t.rejects(ipam.requestAddress({ PoolID: 'cluster/web/4' }, log), /cluster network "web": an address needs etcd, which is unreachable/)
    t.ok(Date.now() - start < 30_000, `failed in ${Date.now() - start} ms`)
  })
}
