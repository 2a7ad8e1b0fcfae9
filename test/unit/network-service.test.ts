// services/network-service over FakeHost and a FileStore in a temporary directory.
import t, { type Test } from 'tap'
import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { OPTION } from '../../src/core/network-plan.js'
import { GROUP, deviceGroupOf, networkEntries } from '../../src/core/edge-plan.js'
import { bridgeNameFor, containerVethFor, hostVethFor, networkAlias, networkTag } from '../../src/core/names.js'
import type { EndpointRecord, NetworkRecord } from '../../src/core/records.js'
import { FakeHost } from '../../src/host/fake-host.js'
import { OPT, type CreateEndpointRequest, type CreateNetworkRequest } from '../../src/protocol/types.js'
import { NetworkService } from '../../src/services/network-service.js'
import { FileStore } from '../../src/store/file-store.js'
import type { Collection, Store } from '../../src/store/store.js'
import { dockerId, log, tempDir } from './fixtures/util.js'

const NET = dockerId('0a')
const NET2 = dockerId('0b')
const EP = dockerId('e1')
const EP2 = dockerId('e2')
const SANDBOX = '/var/run/docker/netns/0123456789ab'

function netReq(id = NET, generic: Record<string, string> = {}, pool = '172.18.0.0/16', gw = '172.18.0.1/16', extra: Record<string, unknown> = {}): CreateNetworkRequest {
  return {
    NetworkID: id,
    Options: { [OPT.generic]: generic, [OPT.enableIpv6]: false, ...extra },
    IPv4Data: [{ AddressSpace: 'LocalDefault', Pool: pool, Gateway: gw }],
    IPv6Data: [],
  }
}

function epReq(net = NET, ep = EP, address = '172.18.0.2/16', mac = ''): CreateEndpointRequest {
  return {
    NetworkID: net,
    EndpointID: ep,
    Interface: { Address: address, AddressIPv6: '', MacAddress: mac },
    Options: { [OPT.portMap]: [], [OPT.exposedPorts]: [] },
  }
}

/** A Store that can be told to fail its next put/delete, wrapping the real FileStore. */
class FlakyStore implements Store {
  failPut = false
  failDelete = false
  constructor(private readonly inner: Store) {}
  list<T>(prefix: string) { return this.inner.list<T>(prefix) }
  get<T>(key: string) { return this.inner.get<T>(key) }
  txn(...args: Parameters<Store['txn']>) { return this.inner.txn(...args) }
  watch(...args: Parameters<Store['watch']>) { return this.inner.watch(...args) }
  lease(ttl: number) { return this.inner.lease(ttl) }
  close() { return this.inner.close() }
  async put(c: Collection, id: string, v: unknown) {
    if (this.failPut) { this.failPut = false; throw new Error('disk full (injected)') }
    return this.inner.put(c, id, v)
  }
  async delete(c: Collection, id: string) {
    if (this.failDelete) { this.failDelete = false; throw new Error('I/O error (injected)') }
    await this.inner.delete(c, id)
  }
}

async function setup(t: Test, defaultMtu?: number) {
  const dir = await tempDir(t)
  const store = new FlakyStore(await FileStore.open(dir))
  const host = new FakeHost()
  const svc = new NetworkService(store, host, defaultMtu === undefined ? {} : { defaultMtu })
  await svc.load()
  const reload = async () => {
    const s = new NetworkService(await FileStore.open(dir), host, {})
    await s.load()
    return s
  }
  /** Every file of the store with its content, for before/after comparisons. */
  const storeState = async () => {
    const out: Record<string, string> = {}
    for (const c of ['networks', 'endpoints']) {
      for (const f of (await readdir(join(dir, 'store', c))).sort()) out[`${c}/${f}`] = await readFile(join(dir, 'store', c, f), 'utf8')
    }
    return JSON.stringify(out)
  }
  return { dir, store, host, svc, reload, storeState }
}

t.test('capabilities', async (t) => {
  const { svc } = await setup(t)
  t.same(svc.capabilities(), { Scope: 'local', ConnectivityScope: 'local' })
})

/** The ipset entries carrying a network's tag, as `set entry`, sorted. */
const entriesOf = (host: FakeHost, id: string) => [...host.sets.values()].filter((e) => e.comment === networkTag(id)).map((e) => `${e.set} ${e.entry}`).sort()

t.test('CreateNetwork makes the bridge with the gateway address, its device group and its ipset entries', async (t) => {
  const { svc, host, store } = await setup(t)
  t.same(await svc.createNetwork(netReq(), log), {})
  const bridge = bridgeNameFor(NET)
  const link = host.links.get(bridge)
  t.ok(link, `bridge ${bridge} exists`)
  t.match(link, { name: bridge, kind: 'bridge', alias: networkAlias(NET), mtu: 1500, up: true })
  t.same(link?.addresses, ['172.18.0.1/16'], 'the gateway address is on the bridge')
  t.equal(host.groups.get(bridge), GROUP.base, 'the bridge carries the tsnet device group, no option flags (ICC on, not internal)')
  t.equal(host.edge, true, "tsnet's chains are in place")
  t.same([...host.sets.keys()].sort(), [`tsnet-masq4 172.18.0.0/16`, `tsnet-src4 172.18.0.0/16,${bridge}`], 'anti-spoofing and masquerade entries of the subnet, nothing else')
  t.ok([...host.sets.values()].every((e) => e.comment === networkTag(NET)), 'each entry is commented with the network')
  t.equal(host.sysctls.get('net/ipv4/ip_forward'), '1', 'forwarding is on')
  t.equal(host.sysctls.get(`net/ipv4/conf/${bridge}/route_localnet`), '1', 'route_localnet on the bridge')
  t.equal(host.sysctls.get('net/bridge/bridge-nf-call-iptables'), '1', 'bridged frames meet iptables')
  const stored = await store.list<NetworkRecord>('networks')
  t.equal(stored.length, 1)
  t.match(stored[0]?.value, { id: NET, bridge, mtu: 1500, ipv4Subnets: [{ pool: '172.18.0.0/16', gateway: '172.18.0.1/16' }] })
  t.same(svc.snapshot().networks.map((n) => n.id), [NET])
})

t.test('ICC, masquerade and internal options show in the device group and the entries', async (t) => {
  const { svc, host } = await setup(t)
  await svc.createNetwork(netReq(NET, { [OPTION.icc]: 'false', [OPTION.masquerade]: 'false' }), log)
  await svc.createNetwork(netReq(NET2, {}, '10.1.0.0/16', '10.1.0.1/16', { [OPT.internal]: true }), log)
  t.equal(host.groups.get(bridgeNameFor(NET)), GROUP.base | GROUP.iccOff, 'enable_icc=false sets the ICC flag')
  t.equal(host.groups.get(bridgeNameFor(NET2)), GROUP.base | GROUP.internal, 'internal sets the internal flag')
  t.same(entriesOf(host, NET), [`tsnet-src4 172.18.0.0/16,${bridgeNameFor(NET)}`], 'masquerade off: no masq entry')
  t.same(entriesOf(host, NET2), [`tsnet-src4 10.1.0.0/16,${bridgeNameFor(NET2)}`], 'internal: no masq entry')
  t.equal(host.sysctls.get('net/ipv4/ip_forward'), '1')
  for (const n of svc.snapshot().networks) t.equal(host.groups.get(n.bridge), deviceGroupOf(n), `${n.bridge}: the group edge-plan derives from the record`)
})

t.test('a dual-stack network has IPv4 and IPv6 entries and turns on IPv6 forwarding', async (t) => {
  const { svc, host } = await setup(t)
  await svc.createNetwork({
    NetworkID: NET,
    Options: { [OPT.generic]: {}, [OPT.enableIpv6]: true },
    IPv4Data: [{ Pool: '10.1.0.0/16', Gateway: '10.1.0.1/16' }],
    IPv6Data: [{ Pool: 'fd00:1::/64', Gateway: 'fd00:1::1/64' }],
  }, log)
  const bridge = bridgeNameFor(NET)
  t.same(entriesOf(host, NET), [
    'tsnet-masq4 10.1.0.0/16', 'tsnet-masq6 fd00:1::/64', `tsnet-src4 10.1.0.0/16,${bridge}`, `tsnet-src6 fd00:1::/64,${bridge}`,
  ])
  t.equal(host.sysctls.get('net/ipv6/conf/all/forwarding'), '1')
})

t.test('the MTU comes from the option, the config, else the default route', async (t) => {
  const a = await setup(t)
  a.host.mtuOfDefaultRoute = 1450
  await a.svc.createNetwork(netReq(), log)
  t.equal(a.host.links.get(bridgeNameFor(NET))?.mtu, 1450, 'default route MTU')
  a.host.mtuOfDefaultRoute = undefined
  await a.svc.createNetwork(netReq(NET2, {}, '10.1.0.0/16', '10.1.0.1/16'), log)
  t.equal(a.host.links.get(bridgeNameFor(NET2))?.mtu, 1500, 'no default route: 1500')
  const b = await setup(t, 9000)
  await b.svc.createNetwork(netReq(NET, { [OPTION.mtu]: '1400' }), log)
  t.equal(b.host.links.get(bridgeNameFor(NET))?.mtu, 1400, 'the option wins over the config')
  await b.svc.createNetwork(netReq(NET2, {}, '10.1.0.0/16', '10.1.0.1/16'), log)
  t.equal(b.host.links.get(bridgeNameFor(NET2))?.mtu, 9000, 'the configured default')
})

t.test('a repeated identical CreateNetwork is fine and adds nothing', async (t) => {
  const { svc, host, storeState } = await setup(t)
  await svc.createNetwork(netReq(), log)
  const hostBefore = host.state()
  const storeBefore = await storeState()
  t.same(await svc.createNetwork(netReq(), log), {})
  t.same(await svc.createNetwork(netReq(), log), {})
  t.equal(host.state(), hostBefore, 'no duplicate bridge, address or rule')
  t.equal(await storeState(), storeBefore, 'the stored record is unchanged')
  t.equal(svc.snapshot().networks.length, 1)
  t.equal(host.links.get(bridgeNameFor(NET))?.addresses.length, 1)
})

t.test('a different body for the same network ID is refused', async (t) => {
  const { svc, host, storeState } = await setup(t)
  await svc.createNetwork(netReq(), log)
  const hostBefore = host.state()
  const storeBefore = await storeState()
  await t.rejects(svc.createNetwork(netReq(NET, {}, '172.19.0.0/16', '172.19.0.1/16'), log),
    { name: 'TsnetError', kind: 'conflict', message: /network 0a0123456789 already exists in tsnet with different settings/ })
  await t.rejects(svc.createNetwork(netReq(NET, { [OPTION.mtu]: '1400' }), log), { name: 'TsnetError', kind: 'conflict' }, 'another MTU')
  t.equal(host.state(), hostBefore, 'the host is untouched')
  t.equal(await storeState(), storeBefore, 'the store is untouched')
})

t.test('a bridge-name clash is refused', async (t) => {
  const { svc, host, storeState } = await setup(t)
  await svc.createNetwork(netReq(NET, { [OPTION.bridgeName]: 'mybr0' }), log)
  t.ok(host.links.has('mybr0'))
  const hostBefore = host.state()
  const storeBefore = await storeState()
  await t.rejects(svc.createNetwork(netReq(NET2, { [OPTION.bridgeName]: 'mybr0' }, '10.1.0.0/16', '10.1.0.1/16'), log),
    { name: 'TsnetError', kind: 'conflict', message: /bridge name mybr0 is already used by network 0a0123456789/ })
  await t.rejects(svc.createNetwork(netReq(NET2, { [OPTION.bridgeName]: 'mybr0' }, '10.1.0.0/16', '10.1.0.1/16'), log), { name: 'TsnetError', kind: 'conflict' }, 'refused again on retry')
  t.equal(host.state(), hostBefore)
  t.equal(await storeState(), storeBefore)
})

t.test('a user bridge name equal to another network\'s automatic name is refused', async (t) => {
  const { svc, host } = await setup(t)
  await svc.createNetwork(netReq(), log)
  const before = host.state()
  await t.rejects(svc.createNetwork(netReq(NET2, { [OPTION.bridgeName]: bridgeNameFor(NET) }, '10.1.0.0/16', '10.1.0.1/16'), log),
    { name: 'TsnetError', kind: 'invalid', message: /starts with tsbr-, which tsnet reserves/ })
  t.equal(host.state(), before)
})

t.test('two networks asking for the same bridge name: the second is refused', async (t) => {
  const { svc, host } = await setup(t)
  await svc.createNetwork(netReq(NET, { [OPTION.bridgeName]: 'mybr0' }), log)
  const before = host.state()
  await t.rejects(svc.createNetwork(netReq(NET2, { [OPTION.bridgeName]: 'mybr0' }, '10.1.0.0/16', '10.1.0.1/16'), log),
    { name: 'TsnetError', kind: 'conflict', message: /bridge name mybr0 is already used/ })
  t.equal(host.state(), before)
})

t.test('two networks racing for one bridge name: one wins, the loser leaves the winner alone', async (t) => {
  const { svc, host } = await setup(t)
  const results = await Promise.allSettled([
    svc.createNetwork(netReq(NET, { [OPTION.bridgeName]: 'racebr' }), log),
    svc.createNetwork(netReq(NET2, { [OPTION.bridgeName]: 'racebr' }, '10.1.0.0/16', '10.1.0.1/16'), log),
  ])
  t.same(results.map((r) => r.status).sort(), ['fulfilled', 'rejected'])
  const winner = results[0]?.status === 'fulfilled' ? NET : NET2
  t.equal(host.links.get('racebr')?.alias, networkAlias(winner), 'the bridge is the winner\'s')
  t.same(svc.snapshot().networks.map((n) => n.id), [winner])
})

t.test('a link of the same name that tsnet does not own is refused and left alone', async (t) => {
  const { svc, host, storeState } = await setup(t)
  host.links.set('mybr0', { name: 'mybr0', kind: 'bridge', alias: 'someone-else', mtu: 1500, up: true, addresses: ['192.0.2.1/24'] })
  const hostBefore = host.state()
  const storeBefore = await storeState()
  await t.rejects(svc.createNetwork(netReq(NET, { [OPTION.bridgeName]: 'mybr0' }), log),
    { name: 'TsnetError', kind: 'conflict', message: /rolled back.*a link named mybr0 already exists and is not tsnet's/ })
  t.equal(host.state(), hostBefore, 'the foreign link is untouched')
  t.equal(await storeState(), storeBefore)
  t.same(svc.snapshot().networks, [])
})

t.test('an injected host failure leaves host and store exactly as before', async (t) => {
  // (tsnet's chains are set up once per process, with its first network: see the next subtests.)
  for (const op of ['setSysctl', 'ensureBridge', 'syncSetEntries'] as const) {
    await t.test(`failure in ${op}`, async (t) => {
      const { svc, host, storeState } = await setup(t)
      await svc.createNetwork(netReq(NET2, {}, '10.1.0.0/16', '10.1.0.1/16'), log) // something already there
      const hostBefore = host.state()
      const storeBefore = await storeState()
      host.failNext.add(op)
      const err = await svc.createNetwork(netReq(), log).then(() => undefined, (e: unknown) => e as Error)
      t.ok(err, 'CreateNetwork failed')
      t.match(err, { name: 'TsnetError', kind: 'host' })
      t.match(err?.message, /creating network 0a0123456789 \(rolled back: nothing was left on the host\)/, 'the error says it was rolled back')
      t.match(err?.message, new RegExp(`injected failure in ${op}`), 'and why')
      t.equal(host.state(), hostBefore, 'FakeHost.state() as before')
      t.equal(await storeState(), storeBefore, 'the store as before')
      t.same(svc.snapshot().networks.map((n) => n.id), [NET2], 'not remembered in memory')
      t.same(await svc.createNetwork(netReq(), log), {}, 'a retry then succeeds')
      t.ok(host.links.has(bridgeNameFor(NET)))
      t.same(entriesOf(host, NET), [`tsnet-masq4 172.18.0.0/16`, `tsnet-src4 172.18.0.0/16,${bridgeNameFor(NET)}`], 'with its entries')
    })
  }
  for (const op of ['ensureEdge', 'syncSetEntries'] as const) {
    await t.test(`failure in ${op} for the first network: tsnet's chains go too`, async (t) => {
      const { svc, host, storeState } = await setup(t)
      const storeBefore = await storeState()
      host.failNext.add(op)
      await t.rejects(svc.createNetwork(netReq(), log), { name: 'TsnetError', kind: 'host', message: new RegExp(`rolled back: nothing was left on the host.*injected failure in ${op}`) })
      t.equal(host.state(), new FakeHost().state(), 'no link, entry, group or chain is left')
      t.equal(await storeState(), storeBefore)
      t.same(svc.snapshot().networks, [])
    })
  }
})

t.test('a store failure during CreateNetwork is rolled back on the host', async (t) => {
  const { svc, host, store, storeState } = await setup(t)
  const hostBefore = host.state()
  const storeBefore = await storeState()
  store.failPut = true
  await t.rejects(svc.createNetwork(netReq(), log), { name: 'TsnetError', kind: 'host', message: /rolled back.*disk full/ })
  t.equal(host.state(), hostBefore)
  t.equal(await storeState(), storeBefore)
  t.same(svc.snapshot().networks, [])
})

t.test('when the rollback itself fails, the error does not claim a clean host', async (t) => {
  await t.test('CreateNetwork', async (t) => {
    const { svc, host } = await setup(t)
    host.failNext.add('syncSetEntries')
    host.failNext.add('deleteOwnedLink') // the rollback cannot remove the bridge
    const err = await svc.createNetwork(netReq(), log).then(() => undefined, (e: unknown) => e as Error)
    t.ok(host.links.has(bridgeNameFor(NET)), 'precondition: the bridge is still on the host')
    t.match(err, { name: 'TsnetError', kind: 'host', message: /injected failure in syncSetEntries/ }, 'CreateNetwork fails with the original cause')
    t.notMatch(err?.message ?? '', /nothing was left on the host/, `the message is true (got: ${err?.message})`)
    t.same(await svc.createNetwork(netReq(), log), {}, 'a retry adopts the leftover bridge (it carries our alias)')
  })
  await t.test('CreateEndpoint', async (t) => {
    const { svc, host, store } = await setup(t)
    await svc.createNetwork(netReq(), log)
    store.failPut = true
    host.failNext.add('deleteOwnedLink')
    const err = await svc.createEndpoint(epReq(), log).then(() => undefined, (e: unknown) => e as Error)
    t.ok(host.links.has(hostVethFor(EP)), 'precondition: the veth is still on the host')
    t.match(err, { name: 'TsnetError', kind: 'host', message: /disk full/ }, 'CreateEndpoint fails with the original cause')
    t.notMatch(err?.message ?? '', /veth removed/, `the message is true (got: ${err?.message})`)
  })
})

t.test('endpoint lifecycle: CreateEndpoint, Join, Leave, DeleteEndpoint, DeleteNetwork', async (t) => {
  const { svc, host, store } = await setup(t)
  await svc.createNetwork(netReq(), log)
  const afterNetwork = host.state()
  const bridge = bridgeNameFor(NET)

  const created = await svc.createEndpoint(epReq(), log)
  t.same(created, { Interface: { MacAddress: '02:42:ac:12:00:02' } }, 'the MAC tsnet chose is returned (Docker gave none)')
  const hostIf = hostVethFor(EP)
  const peer = containerVethFor(EP)
  t.match(host.links.get(hostIf), { kind: 'veth', master: bridge, peer, mtu: 1500 }, 'host end on the bridge')
  t.match(host.links.get(peer), { kind: 'veth', mac: '02:42:ac:12:00:02', peer: hostIf }, 'container end carries the MAC')
  t.match((await store.list<EndpointRecord>('endpoints'))[0]?.value, { id: EP, networkId: NET, address: '172.18.0.2/16', joined: false })
  t.same(svc.endpointOperInfo({ NetworkID: NET, EndpointID: EP }), { Value: { hostInterface: hostIf, macAddress: '02:42:ac:12:00:02', address: '172.18.0.2/16' } })
  t.same(await svc.createEndpoint(epReq(), log), created, 'a retried CreateEndpoint answers the same')

  const joined = await svc.join({ NetworkID: NET, EndpointID: EP, SandboxKey: SANDBOX, Options: { [OPT.portMap]: null, [OPT.exposedPorts]: null } }, log)
  t.same(joined, { InterfaceName: { SrcName: peer, DstPrefix: 'eth' }, Gateway: '172.18.0.1' })
  t.match((await store.list<EndpointRecord>('endpoints'))[0]?.value, { joined: true, sandboxKey: SANDBOX }, 'the join is persisted')
  t.same(await svc.join({ NetworkID: NET, EndpointID: EP, SandboxKey: SANDBOX }, log), joined, 'a repeated Join answers the same')

  t.same(await svc.leave({ NetworkID: NET, EndpointID: EP }, log), {})
  const left = (await store.list<EndpointRecord>('endpoints'))[0]?.value
  t.equal(left?.joined, false)
  t.notOk(left && 'sandboxKey' in left, 'the sandbox key is dropped')
  t.ok(host.links.has(hostIf), 'Leave keeps the veth (Docker moves it back)')
  t.same(await svc.leave({ NetworkID: NET, EndpointID: EP }, log), {}, 'a second Leave is fine')

  t.same(await svc.deleteEndpoint({ NetworkID: NET, EndpointID: EP }, log), {})
  t.notOk(host.links.has(hostIf), 'the host end is gone')
  t.notOk(host.links.has(peer), 'the peer is gone')
  t.equal(host.state(), afterNetwork, 'the host is as it was before the endpoint')
  t.same(await store.list('endpoints'), [])
  t.same(svc.endpointOperInfo({ NetworkID: NET, EndpointID: EP }), { Value: {} })

  t.same(await svc.deleteNetwork({ NetworkID: NET }, log), {})
  t.equal(host.state(), new FakeHost().state(), 'bridge, group, entries and chains are gone')
  t.same(await store.list('networks'), [])
  t.same(svc.snapshot(), { networks: [], endpoints: [] })
})

t.test('CreateEndpoint with a MAC from Docker answers without a MAC', async (t) => {
  const { svc, host } = await setup(t)
  await svc.createNetwork(netReq(), log)
  t.same(await svc.createEndpoint(epReq(NET, EP, '172.18.0.2/16', '02:AA:00:00:00:01'), log), {})
  t.equal(host.links.get(containerVethFor(EP))?.mac, '02:aa:00:00:00:01', 'the given MAC is set on the interface')
})

t.test('CreateEndpoint refusals', async (t) => {
  const { svc, host, storeState } = await setup(t)
  await t.rejects(svc.createEndpoint(epReq(NET2), log), {
    name: 'TsnetError', kind: 'notfound', message: /network 0b0123456789 is unknown to tsnet/,
  }, 'an unknown network is named in the error')
  await svc.createNetwork(netReq(), log)
  await svc.createEndpoint(epReq(), log)
  const hostBefore = host.state()
  const storeBefore = await storeState()
  await t.rejects(svc.createEndpoint(epReq(NET, EP, '172.18.0.3/16'), log), { name: 'TsnetError', kind: 'conflict', message: /endpoint e10123456789 already exists in tsnet with different settings/ })
  await t.rejects(svc.createEndpoint(epReq(NET, EP2, '10.99.0.2/16'), log), { name: 'TsnetError', kind: 'invalid', message: /outside the subnets/ })
  const twin = EP.slice(0, 12) + 'f'.repeat(52) // same first 12 characters → same veth name
  await t.rejects(svc.createEndpoint(epReq(NET, twin, '172.18.0.9/16'), log), { name: 'TsnetError', kind: 'conflict', message: /would reuse interface tsve10123456789/ })
  t.equal(host.state(), hostBefore)
  t.equal(await storeState(), storeBefore)
})

t.test('a host failure in CreateEndpoint is rolled back', async (t) => {
  const { svc, host, store, storeState } = await setup(t)
  await svc.createNetwork(netReq(), log)
  const hostBefore = host.state()
  const storeBefore = await storeState()
  host.failNext.add('ensureVeth')
  await t.rejects(svc.createEndpoint(epReq(), log), { name: 'TsnetError', kind: 'host', message: /creating endpoint e10123456789 \(rolled back: veth removed\): injected failure in ensureVeth/ })
  store.failPut = true
  await t.rejects(svc.createEndpoint(epReq(), log), { name: 'TsnetError', kind: 'host', message: /rolled back.*disk full/ })
  t.equal(host.state(), hostBefore)
  t.equal(await storeState(), storeBefore)
  t.same(svc.snapshot().endpoints, [])
})

t.test('Join and Leave refusals', async (t) => {
  const { svc } = await setup(t)
  await t.rejects(svc.join({ NetworkID: NET, EndpointID: EP, SandboxKey: SANDBOX }, log), { name: 'TsnetError', kind: 'notfound', message: /network 0a0123456789 is unknown/ })
  await svc.createNetwork(netReq(), log)
  await svc.createNetwork(netReq(NET2, {}, '10.1.0.0/16', '10.1.0.1/16'), log)
  await t.rejects(svc.join({ NetworkID: NET, EndpointID: EP, SandboxKey: SANDBOX }, log), { name: 'TsnetError', kind: 'notfound', message: /endpoint e10123456789 of network 0a0123456789 is unknown/ })
  await svc.createEndpoint(epReq(), log)
  await t.rejects(svc.join({ NetworkID: NET2, EndpointID: EP, SandboxKey: SANDBOX }, log), { name: 'TsnetError', kind: 'notfound' }, 'the endpoint of another network')
  await t.rejects(svc.join({ NetworkID: NET, EndpointID: EP, SandboxKey: '' }, log), { name: 'TsnetError', kind: 'invalid', message: /SandboxKey/ })
  await t.rejects(svc.join({ NetworkID: NET, EndpointID: EP, SandboxKey: SANDBOX, Options: { [OPT.portMap]: [{ Proto: 1, Port: 1 }] } }, log), { name: 'TsnetError', kind: 'invalid', message: /protocol number 1/ })
  t.same(await svc.leave({ NetworkID: NET2, EndpointID: EP }, log), {}, 'Leave for the wrong network is a no-op')
  t.same(await svc.leave({ NetworkID: NET, EndpointID: EP2 }, log), {}, 'Leave of an unknown endpoint')
})

t.test('deletes of unknown IDs succeed', async (t) => {
  const { svc, host, storeState } = await setup(t)
  t.same(await svc.deleteNetwork({ NetworkID: NET }, log), {})
  t.same(await svc.deleteEndpoint({ NetworkID: NET, EndpointID: EP }, log), {})
  await svc.createNetwork(netReq(), log)
  await svc.createEndpoint(epReq(), log)
  const hostBefore = host.state()
  const storeBefore = await storeState()
  t.same(await svc.deleteEndpoint({ NetworkID: NET, EndpointID: EP2 }, log), {}, 'unknown endpoint on a known network')
  t.same(await svc.deleteEndpoint({ NetworkID: NET2, EndpointID: EP }, log), {}, 'a known endpoint named with the wrong network is not deleted')
  t.same(await svc.deleteNetwork({ NetworkID: NET2 }, log), {})
  t.equal(host.state(), hostBefore)
  t.equal(await storeState(), storeBefore)
})

t.test('DeleteNetwork removes endpoints still attached', async (t) => {
  const { svc, host, store } = await setup(t)
  await svc.createNetwork(netReq(), log)
  await svc.createEndpoint(epReq(), log)
  await svc.createEndpoint(epReq(NET, EP2, '172.18.0.3/16'), log)
  await svc.deleteNetwork({ NetworkID: NET }, log)
  t.equal(host.state(), new FakeHost().state(), 'nothing left on the host')
  t.same(await store.list('endpoints'), [])
  t.same(await store.list('networks'), [])
})

t.test('a failed DeleteNetwork keeps the network known so Docker can retry', async (t) => {
  const { svc, host } = await setup(t)
  await svc.createNetwork(netReq(), log)
  host.failNext.add('deleteOwnedLink')
  await t.rejects(svc.deleteNetwork({ NetworkID: NET }, log), { name: 'TsnetError', kind: 'host', message: /deleting network 0a0123456789: injected failure/ })
  t.same(svc.snapshot().networks.map((n) => n.id), [NET])
  t.same(await svc.deleteNetwork({ NetworkID: NET }, log), {})
  t.equal(host.state(), new FakeHost().state())
})

t.test('internal and IPv6 networks answer Join with the right gateways', async (t) => {
  const { svc } = await setup(t)
  await svc.createNetwork(netReq(NET, {}, '172.18.0.0/16', '172.18.0.1/16', { [OPT.internal]: true }), log)
  await svc.createEndpoint(epReq(), log)
  t.same(await svc.join({ NetworkID: NET, EndpointID: EP, SandboxKey: SANDBOX }, log), { InterfaceName: { SrcName: containerVethFor(EP), DstPrefix: 'eth' } }, 'internal: no gateway')
  await svc.createNetwork({
    NetworkID: NET2,
    Options: { [OPT.generic]: { [OPTION.ifacePrefix]: 'ens' }, [OPT.enableIpv6]: true },
    IPv4Data: [{ Pool: '10.1.0.0/16', Gateway: '10.1.0.1/16' }],
    IPv6Data: [{ Pool: 'fd00:1::/64', Gateway: 'fd00:1::1/64' }],
  }, log)
  await svc.createEndpoint({ NetworkID: NET2, EndpointID: EP2, Interface: { Address: '10.1.0.2/16', AddressIPv6: 'fd00:1::2/64', MacAddress: '' } }, log)
  t.same(await svc.join({ NetworkID: NET2, EndpointID: EP2, SandboxKey: SANDBOX }, log),
    { InterfaceName: { SrcName: containerVethFor(EP2), DstPrefix: 'ens' }, Gateway: '10.1.0.1', GatewayIPv6: 'fd00:1::1' })
})

t.test('after a reload from the store, old endpoints are still served', async (t) => {
  const { svc, reload, host } = await setup(t)
  await svc.createNetwork(netReq(), log)
  await svc.createEndpoint(epReq(), log)
  const again = await reload()
  t.same(again.snapshot().networks.map((n) => n.id), [NET])
  t.same(again.snapshot().endpoints.map((e) => e.id), [EP])
  t.same(await again.join({ NetworkID: NET, EndpointID: EP, SandboxKey: SANDBOX }, log),
    { InterfaceName: { SrcName: containerVethFor(EP), DstPrefix: 'eth' }, Gateway: '172.18.0.1' })
  t.same(await again.createNetwork(netReq(), log), {}, 'an identical CreateNetwork still counts as the same network')
  await t.rejects(again.createNetwork(netReq(NET2, { [OPTION.bridgeName]: bridgeNameFor(NET) }, '10.1.0.0/16', '10.1.0.1/16'), log), { name: 'TsnetError', kind: 'invalid' }, 'tsnet\'s bridge names stay reserved')
  t.same(await again.leave({ NetworkID: NET, EndpointID: EP }, log), {})
  t.same(await again.deleteEndpoint({ NetworkID: NET, EndpointID: EP }, log), {})
  t.same(await again.deleteNetwork({ NetworkID: NET }, log), {})
  t.equal(host.state(), new FakeHost().state(), 'a reloaded service cleans up what the old one made')
})

t.test('concurrent CreateNetwork calls for one bridge name: one wins, nothing leaks', async (t) => {
  const { svc, host, store } = await setup(t)
  const results = await Promise.allSettled([
    svc.createNetwork(netReq(NET, { [OPTION.bridgeName]: 'shared0' }), log),
    svc.createNetwork(netReq(NET2, { [OPTION.bridgeName]: 'shared0' }, '10.1.0.0/16', '10.1.0.1/16'), log),
  ])
  t.equal(results.filter((r) => r.status === 'fulfilled').length, 1, 'exactly one succeeds')
  t.equal((await store.list('networks')).length, 1, 'one network stored')
  const winner = (await store.list<NetworkRecord>('networks'))[0]?.value as NetworkRecord
  t.same([...host.sets.keys()].sort(), networkEntries(winner).map((e) => `${e.set} ${e.entry}`).sort(), 'exactly the winner\'s entries')
  t.same([...host.sets.values()].map((e) => e.comment), networkEntries(winner).map(() => networkTag(winner.id)), 'all tagged with the winner')
  t.equal(host.links.size, 1, 'one bridge')
  t.same([...host.groups.keys()], ['shared0'], 'one device group')
})

t.test('allocateNetwork echoes options; external connectivity validates its request', async (t) => {
  const { svc, host, storeState } = await setup(t)
  t.same(svc.allocateNetwork({ NetworkID: NET, Options: { a: 'b' } }), { Options: { a: 'b' } })
  t.same(svc.allocateNetwork({ NetworkID: NET, Options: null }), { Options: {} })
  await t.rejects(svc.programExternalConnectivity({ NetworkID: NET, EndpointID: EP, Options: { [OPT.portMap]: [{ Proto: 6, Port: 80, HostPort: 8080 }] } }, log),
    { name: 'TsnetError', kind: 'notfound', message: /network 0a0123456789 is unknown/ }, 'an unknown network')
  await svc.createNetwork(netReq(), log)
  await t.rejects(svc.programExternalConnectivity({ NetworkID: NET, EndpointID: EP, Options: {} }, log),
    { name: 'TsnetError', kind: 'notfound', message: /endpoint e10123456789 of network 0a0123456789 is unknown/ }, 'an unknown endpoint')
  await svc.createEndpoint(epReq(), log)
  const hostBefore = host.state()
  const storeBefore = await storeState()
  await t.rejects(svc.programExternalConnectivity({ NetworkID: NET, EndpointID: EP, Options: { [OPT.portMap]: 'x' } }, log), { name: 'TsnetError', kind: 'invalid', message: /port map must be a list/ })
  await t.rejects(svc.programExternalConnectivity({ NetworkID: NET, EndpointID: EP, Options: { [OPT.exposedPorts]: [{ Proto: 1, Port: 80 }] } }, log), { name: 'TsnetError', kind: 'invalid', message: /protocol number 1/ })
  t.same(await svc.revokeExternalConnectivity({ NetworkID: NET2, EndpointID: EP }, log), {}, 'Revoke for an unknown network is a no-op')
  t.same(await svc.revokeExternalConnectivity({ NetworkID: NET, EndpointID: EP }, log), {}, 'Revoke of an endpoint with nothing published')
  t.equal(host.state(), hostBefore)
  t.equal(await storeState(), storeBefore)
})
