// services/network-driver, networks: CreateNetwork and DeleteNetwork as serve builds them
// (openServices + boot), over FakeHost and a FileStore in a temporary directory.
import t from 'tap'
import { readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { GROUP, deviceGroupOf, networkEntries } from '../../src/core/edge-plan.js'
import { COMMON_OPTION } from '../../src/core/docker-keys.js'
import { bridgeNameFor, networkAlias, networkTag } from '../../src/core/names.js'
import type { NetworkRecord } from '../../src/core/records.js'
import { FakeHost } from '../../src/host/fake-host.js'
import { BRIDGE_OPTION, bridgeEdge, bridgeOf } from '../../src/modes/bridge.js'
import { OPT } from '../../src/protocol/types.js'
import { TestHost, entriesOf, epReq, netReq, openUnit, plant } from './fixtures/services.js'
import { dockerId, log } from './fixtures/util.js'

const NET = dockerId('0a')
const NET2 = dockerId('0b')
const EP = dockerId('e1')
const OPTION = { ...COMMON_OPTION, ...BRIDGE_OPTION }

t.test('capabilities', async (t) => {
  const { services } = await openUnit(t)
  t.same(services.driver.capabilities(), { Scope: 'local', ConnectivityScope: 'local' })
})

t.test('CreateNetwork makes the bridge with the gateway address, its device group and its ipset entries', async (t) => {
  const { services, host, storedNetwork, dryRun } = await openUnit(t)
  t.same(await services.driver.createNetwork(netReq(NET), log), {})
  const bridge = bridgeNameFor(NET)
  const link = host.links.get(bridge)
  t.ok(link, `bridge ${bridge} exists`)
  t.match(link, { name: bridge, type: 'bridge', alias: networkAlias(NET), mtu: 1500, up: true })
  t.same(link?.addresses, ['172.18.0.1/16'], 'the gateway address is on the bridge')
  t.equal(host.groups.get(bridge), GROUP.base, 'the bridge carries the tsnet device group, no option flags (ICC on, not internal)')
  t.equal(host.edge, true, "tsnet's chains are in place")
  t.same([...host.sets.keys()].sort(), ['tsnet-masq4 172.18.0.0/16', `tsnet-src4 172.18.0.0/16,${bridge}`], 'anti-spoofing and masquerade entries of the subnet, nothing else')
  t.ok([...host.sets.values()].every((e) => e.comment === networkTag(NET)), 'each entry is commented with the network')
  t.equal(host.sysctls.get('net/ipv4/ip_forward'), '1', 'forwarding is on')
  t.equal(host.sysctls.get(`net/ipv4/conf/${bridge}/route_localnet`), '0', 'no route_localnet on the bridge: no published port needs it')
  t.equal(host.sysctls.get(`net/ipv6/conf/${bridge}/accept_ra`), '0', 'no Router Advertisements on the bridge')
  t.equal(host.sysctls.get('net/bridge/bridge-nf-call-iptables'), '1', 'bridged frames meet iptables')
  t.match(await storedNetwork(NET), { id: NET, mode: 'bridge', spec: { bridge, bridgeNamedByUser: false }, mtu: 1500, ipv4Subnets: [{ pool: '172.18.0.0/16', gateway: '172.18.0.1/16' }] })
  t.same(services.driver.snapshot().networks.map((n) => n.id), [NET])
  t.same((await dryRun()).changes, [], 'a reconcile right after plans nothing')
})

t.test('ICC, masquerade and internal options show in the device group and the entries', async (t) => {
  const { services, host } = await openUnit(t)
  await services.driver.createNetwork(netReq(NET, '172.18.0.0/16', '172.18.0.1/16', { [OPTION.icc]: 'false', [OPTION.masquerade]: 'false' }), log)
  await services.driver.createNetwork(netReq(NET2, '10.1.0.0/16', '10.1.0.1/16', {}, { [OPT.internal]: true }), log)
  t.equal(host.groups.get(bridgeNameFor(NET)), GROUP.base | GROUP.iccOff, 'enable_icc=false sets the ICC flag')
  t.equal(host.groups.get(bridgeNameFor(NET2)), GROUP.base | GROUP.internal, 'internal sets the internal flag')
  t.same(entriesOf(host, NET), [`tsnet-src4 172.18.0.0/16,${bridgeNameFor(NET)}`], 'masquerade off: no masq entry')
  t.same(entriesOf(host, NET2), [`tsnet-src4 10.1.0.0/16,${bridgeNameFor(NET2)}`], 'internal: no masq entry')
  t.equal(host.sysctls.get('net/ipv4/ip_forward'), '1')
  for (const n of services.driver.snapshot().networks) t.equal(host.groups.get(bridgeOf(n)), deviceGroupOf(n), `${bridgeOf(n)}: the group edge-plan derives from the record`)
})

t.test('an internal network alone does not turn forwarding on', async (t) => {
  const { services, host } = await openUnit(t)
  await services.driver.createNetwork(netReq(NET, '10.9.0.0/24', '10.9.0.1/24', {}, { [OPT.internal]: true }), log)
  t.equal(host.sysctls.get('net/ipv4/ip_forward'), undefined, 'an internal network does not need forwarding')
})

t.test('a dual-stack network has IPv4 and IPv6 entries and turns on IPv6 forwarding', async (t) => {
  const { services, host } = await openUnit(t)
  await services.driver.createNetwork(netReq(NET, '10.1.0.0/16', '10.1.0.1/16', {}, {}, { pool: 'fd00:1::/64', gw: 'fd00:1::1/64' }), log)
  const bridge = bridgeNameFor(NET)
  t.same(entriesOf(host, NET), ['tsnet-masq4 10.1.0.0/16', 'tsnet-masq6 fd00:1::/64', `tsnet-src4 10.1.0.0/16,${bridge}`, `tsnet-src6 fd00:1::/64,${bridge}`])
  t.equal(host.sysctls.get('net/ipv6/conf/all/forwarding'), '1')
  t.same(host.links.get(bridge)?.addresses.sort(), ['10.1.0.1/16', 'fd00:1::1/64'], 'both gateways on the bridge')
})

t.test('the MTU comes from the option, the config, else the default route', async (t) => {
  const host = new TestHost()
  host.mtuOfDefaultRoute = 1450
  const a = await openUnit(t, { host })
  await a.services.driver.createNetwork(netReq(NET), log)
  t.equal(host.links.get(bridgeNameFor(NET))?.mtu, 1450, 'default route MTU')
  host.mtuOfDefaultRoute = undefined
  await a.services.driver.createNetwork(netReq(NET2, '10.1.0.0/16', '10.1.0.1/16'), log)
  t.equal(host.links.get(bridgeNameFor(NET2))?.mtu, 1500, 'no default route: 1500')
  const b = await openUnit(t, { defaultMtu: 9000 })
  await b.services.driver.createNetwork(netReq(NET, '172.18.0.0/16', '172.18.0.1/16', { [OPTION.mtu]: '1400' }), log)
  t.equal(b.host.links.get(bridgeNameFor(NET))?.mtu, 1400, 'the option wins over the config')
  await b.services.driver.createNetwork(netReq(NET2, '10.1.0.0/16', '10.1.0.1/16'), log)
  t.equal(b.host.links.get(bridgeNameFor(NET2))?.mtu, 9000, 'the configured default')
})

t.test('a repeated identical CreateNetwork is fine and applies nothing', async (t) => {
  const { services, host, storeState, dryRun } = await openUnit(t)
  await services.driver.createNetwork(netReq(NET), log)
  const hostBefore = host.state()
  const storeBefore = await storeState()
  const calls = host.calls.length
  t.same(await services.driver.createNetwork(netReq(NET), log), {})
  t.same(await services.driver.createNetwork(netReq(NET), log), {})
  t.same(host.changesSince(calls), [], 'no host change at all')
  t.equal(host.state(), hostBefore, 'no duplicate bridge, address or rule')
  t.equal(await storeState(), storeBefore, 'the stored record is unchanged')
  t.equal(services.driver.snapshot().networks.length, 1)
  t.equal(host.links.get(bridgeNameFor(NET))?.addresses.length, 1)
  t.same((await dryRun()).changes, [])
})

t.test('a retried CreateNetwork puts back what is missing of the network', async (t) => {
  const { services, host } = await openUnit(t)
  await services.driver.createNetwork(netReq(NET), log)
  const made = host.state()
  host.objects.delete(`set tsnet-masq4 172.18.0.0/16`)
  host.objects.delete(`addr ${bridgeNameFor(NET)} 172.18.0.1/16`)
  t.same(await services.driver.createNetwork(netReq(NET), log), {})
  t.equal(host.state(), made, 'Docker\'s retry of a create checks every object of the network, not only the changed ones')
})

t.test('a different body for the same network ID is refused', async (t) => {
  const { services, host, storeState } = await openUnit(t)
  await services.driver.createNetwork(netReq(NET), log)
  const hostBefore = host.state()
  const storeBefore = await storeState()
  await t.rejects(services.driver.createNetwork(netReq(NET, '172.19.0.0/16', '172.19.0.1/16'), log),
    { name: 'TsnetError', kind: 'conflict', message: /network 0a0123456789 already exists in tsnet with different settings/ })
  await t.rejects(services.driver.createNetwork(netReq(NET, '172.18.0.0/16', '172.18.0.1/16', { [OPTION.mtu]: '1400' }), log), { name: 'TsnetError', kind: 'conflict' }, 'another MTU')
  t.equal(host.state(), hostBefore, 'the host is untouched')
  t.equal(await storeState(), storeBefore, 'the store is untouched')
})

t.test('a bridge-name clash is refused, also on retry', async (t) => {
  const { services, host, storeState } = await openUnit(t)
  await services.driver.createNetwork(netReq(NET, '172.18.0.0/16', '172.18.0.1/16', { [OPTION.bridgeName]: 'mybr0' }), log)
  t.ok(host.links.has('mybr0'))
  const hostBefore = host.state()
  const storeBefore = await storeState()
  const req = netReq(NET2, '10.1.0.0/16', '10.1.0.1/16', { [OPTION.bridgeName]: 'mybr0' })
  await t.rejects(services.driver.createNetwork(req, log), { name: 'TsnetError', kind: 'conflict', message: /bridge name mybr0 is already used by network 0a0123456789/ })
  await t.rejects(services.driver.createNetwork(req, log), { name: 'TsnetError', kind: 'conflict' }, 'refused again on retry')
  t.equal(host.state(), hostBefore)
  t.equal(await storeState(), storeBefore)
})

t.test('a user bridge name equal to another network\'s automatic name is refused', async (t) => {
  const { services, host } = await openUnit(t)
  await services.driver.createNetwork(netReq(NET), log)
  const before = host.state()
  await t.rejects(services.driver.createNetwork(netReq(NET2, '10.1.0.0/16', '10.1.0.1/16', { [OPTION.bridgeName]: bridgeNameFor(NET) }), log),
    { name: 'TsnetError', kind: 'invalid', message: /starts with tsbr-, which tsnet reserves/ })
  t.equal(host.state(), before)
})

t.test('two networks racing for one bridge name: one wins, the loser leaves the winner alone and nothing leaks', async (t) => {
  const { services, host } = await openUnit(t)
  const results = await Promise.allSettled([
    services.driver.createNetwork(netReq(NET, '172.18.0.0/16', '172.18.0.1/16', { [OPTION.bridgeName]: 'racebr' }), log),
    services.driver.createNetwork(netReq(NET2, '10.1.0.0/16', '10.1.0.1/16', { [OPTION.bridgeName]: 'racebr' }), log),
  ])
  t.same(results.map((r) => r.status).sort(), ['fulfilled', 'rejected'])
  const winner = services.driver.snapshot().networks[0] as NetworkRecord
  t.equal(winner.id, results[0]?.status === 'fulfilled' ? NET : NET2)
  t.equal(host.links.get('racebr')?.alias, networkAlias(winner.id), 'the bridge is the winner\'s')
  const want = networkEntries(bridgeEdge(winner, 'racebr'))
  t.same([...host.sets.keys()].sort(), want.map((e) => `${e.set} ${e.entry}`).sort(), 'exactly the winner\'s entries')
  t.ok([...host.sets.values()].every((e) => e.comment === networkTag(winner.id)), 'all tagged with the winner')
  t.equal(host.links.size, 1, 'one bridge')
  t.same([...host.groups.keys()], ['racebr'], 'one device group')
})

t.test('a link of the same name that tsnet does not own is refused before any change, and left alone', async (t) => {
  const { services, host, storeState } = await openUnit(t)
  plant(host, { kind: 'link', name: 'mybr0', type: 'bridge', alias: 'someone-else', mtu: 1500, up: true, recreate: true })
  plant(host, { kind: 'addr', link: 'mybr0', cidr: '192.0.2.1/24' })
  const hostBefore = host.state()
  const storeBefore = await storeState()
  const calls = host.calls.length
  await t.rejects(services.driver.createNetwork(netReq(NET, '172.18.0.0/16', '172.18.0.1/16', { [OPTION.bridgeName]: 'mybr0' }), log), {
    name: 'TsnetError', kind: 'conflict',
    message: "creating network 0a0123456789: a link named mybr0 already exists and is not tsnet's (it belongs to someone-else)",
  })
  t.same(host.changesSince(calls), [], 'not one change was attempted')
  t.equal(host.state(), hostBefore, 'the foreign link is untouched')
  t.equal(host.sysctls.get('net/ipv4/ip_forward'), undefined, 'forwarding was not turned on')
  t.equal(await storeState(), storeBefore)
  t.same(services.driver.snapshot().networks, [])
})

t.test('an injected host failure leaves host and store exactly as before', async (t) => {
  for (const op of ['sysctl', 'link:create', 'addr:create', 'setEntry:create'] as const) {
    await t.test(`failure in ${op}`, async (t) => {
      const { services, host, storeState, dryRun } = await openUnit(t)
      await services.driver.createNetwork(netReq(NET2, '10.1.0.0/16', '10.1.0.1/16'), log) // something already there
      const hostBefore = host.state()
      const storeBefore = await storeState()
      host.failNext.add(op)
      const err = await services.driver.createNetwork(netReq(NET), log).then(() => undefined, (e: unknown) => e as Error)
      t.match(err, { name: 'TsnetError', kind: 'host' }, 'CreateNetwork failed')
      t.match(err?.message, /^creating network 0a0123456789 \(rolled back: the host is as it was\): /, 'the error says it was rolled back')
      t.match(err?.message, new RegExp(`injected failure in ${op}`), 'and why')
      t.equal(host.state(), hostBefore, 'FakeHost.state() as before')
      t.equal(await storeState(), storeBefore, 'the store as before')
      t.same(services.driver.snapshot().networks.map((n) => n.id), [NET2], 'not remembered in memory')
      t.same((await dryRun()).changes, [], 'nothing is left for a reconcile to do: the index was not changed either')
      t.same(await services.driver.createNetwork(netReq(NET), log), {}, 'a retry then succeeds')
      t.ok(host.links.has(bridgeNameFor(NET)))
      t.same(entriesOf(host, NET), ['tsnet-masq4 172.18.0.0/16', `tsnet-src4 172.18.0.0/16,${bridgeNameFor(NET)}`], 'with its entries')
    })
  }
  for (const op of ['chains:create', 'setEntry:create'] as const) {
    await t.test(`failure in ${op} for the first network: tsnet's chains go too`, async (t) => {
      const { services, host, storeState } = await openUnit(t)
      const storeBefore = await storeState()
      host.failNext.add(op)
      await t.rejects(services.driver.createNetwork(netReq(NET), log), { name: 'TsnetError', kind: 'host', message: new RegExp(`rolled back: the host is as it was\\): .*injected failure in ${op}`) })
      t.equal(host.state(), new FakeHost().state(), 'no link, entry, group or chain is left')
      t.equal(await storeState(), storeBefore)
      t.same(services.driver.snapshot().networks, [])
    })
  }
})

t.test('a store failure during CreateNetwork is rolled back on the host', async (t) => {
  const { services, host, storeState, failNextPut } = await openUnit(t)
  const hostBefore = host.state()
  const storeBefore = await storeState()
  failNextPut()
  await t.rejects(services.driver.createNetwork(netReq(NET), log), { name: 'TsnetError', kind: 'host', message: /^creating network 0a0123456789 \(rolled back: the host is as it was\): disk full/ })
  t.equal(host.state(), hostBefore)
  t.equal(await storeState(), storeBefore)
  t.same(services.driver.snapshot().networks, [])
})

t.test('when the rollback itself fails, the error does not claim a clean host', async (t) => {
  await t.test('CreateNetwork', async (t) => {
    const { services, host } = await openUnit(t)
    host.failNext.add('setEntry:create')
    host.failNext.add('link:delete') // the rollback cannot remove the bridge
    const err = await services.driver.createNetwork(netReq(NET), log).then(() => undefined, (e: unknown) => e as Error)
    t.ok(host.links.has(bridgeNameFor(NET)), 'precondition: the bridge is still on the host')
    t.match(err, { name: 'TsnetError', kind: 'host', message: /injected failure in setEntry:create/ }, 'CreateNetwork fails with the original cause')
    t.match(err?.message, /^creating network 0a0123456789 \(rollback incomplete: 1 change\(s\) could not be undone, see the tsnet log\): /, 'and says the rollback is incomplete')
    t.notMatch(err?.message ?? '', /the host is as it was/, `the message is true (got: ${err?.message})`)
    t.same(await services.driver.createNetwork(netReq(NET), log), {}, 'a retry adopts the leftover bridge (it carries our alias)')
    t.equal(host.links.size, 1)
  })
  await t.test('CreateEndpoint', async (t) => {
    const { services, host, failNextPut } = await openUnit(t)
    await services.driver.createNetwork(netReq(NET), log)
    failNextPut()
    host.failNext.add('link:delete')
    const err = await services.driver.createEndpoint(epReq(NET, EP), log).then(() => undefined, (e: unknown) => e as Error)
    t.ok(host.links.has(`tsv${EP.slice(0, 12)}`), 'precondition: the veth is still on the host')
    t.match(err, { name: 'TsnetError', kind: 'host', message: /disk full/ }, 'CreateEndpoint fails with the original cause')
    t.match(err?.message, /^creating endpoint e10123456789 \(rollback incomplete: 1 change\(s\) could not be undone, see the tsnet log\): /)
  })
})

t.test('a subnet overlapping another tsnet network\'s is refused, naming both; nothing changes', async (t) => {
  const { services, host, dir } = await openUnit(t)
  await services.names.update([{ id: NET, name: 'web', driver: 'tsnet', subnets: ['10.9.0.0/24', 'fd00:9::/64'] }])
  const dual = (id: string, v4: string, v6pool: string) =>
    netReq(id, v4, v4.replace(/0\/(\d+)$/, '1/$1'), {}, {}, { pool: v6pool, gw: v6pool.replace(/::\/64$/, '::1/64') })
  await services.driver.createNetwork(dual(NET, '10.9.0.0/24', 'fd00:9::/64'), log)
  const hostBefore = host.state()
  const files = async () => (await readdir(join(dir, 'store', 'networks'))).sort()
  const storeBefore = await files()

  await t.rejects(services.driver.createNetwork(netReq(NET2, '10.9.0.128/25', '10.9.0.129/25'), log), {
    name: 'TsnetError', kind: 'conflict',
    message: 'subnet 10.9.0.128/25 of network 0b0123456789 overlaps subnet 10.9.0.0/24 of tsnet network web: tsnet networks may not share addresses, because the firewall tells networks apart by their subnets (give a free --subnet, or use --ipam-driver tsnet, which never hands out overlapping pools)',
  }, 'IPv4: the new network by short ID (Docker has not named it yet), the other by its Docker name')
  await t.rejects(services.driver.createNetwork(dual(NET2, '10.10.0.0/24', 'fd00:9::/48'), log), { name: 'TsnetError', kind: 'conflict', message: /^subnet fd00:9::\/48 of network 0b0123456789 overlaps subnet fd00:9::\/64 of tsnet network web:/ }, 'IPv6 alone')
  await services.names.update([])
  await t.rejects(services.driver.createNetwork(netReq(NET2, '10.0.0.0/8', '10.0.0.1/8'), log), { name: 'TsnetError', kind: 'conflict', message: /^subnet 10\.0\.0\.0\/8 of network 0b0123456789 overlaps subnet 10\.9\.0\.0\/24 of tsnet network 0a0123456789:/ }, 'a name Docker does not know: the short ID')
  t.equal(host.state(), hostBefore, 'the host is untouched')
  t.same(await files(), storeBefore, 'the store is untouched')
  t.same(services.driver.snapshot().networks.map((n) => n.id), [NET])

  t.same(await services.driver.createNetwork(dual(NET, '10.9.0.0/24', 'fd00:9::/64'), log), {}, 'a retried identical CreateNetwork still succeeds')
  t.same(await services.driver.createNetwork(dual(NET2, '10.10.0.0/24', 'fd00:10::/64'), log), {}, 'control: free subnets in both families work')
  t.same(await services.driver.createNetwork({ NetworkID: dockerId('0c'), Options: { [OPT.generic]: {} }, IPv4Data: [{ AddressSpace: 'LocalDefault', Pool: '0.0.0.0/0' }], IPv6Data: [] }, log), {}, 'the null IPAM driver (0.0.0.0/0, no address) overlaps nothing')
})

t.test('two overlapping CreateNetwork calls at once: one wins, the other is refused', async (t) => {
  const { services } = await openUnit(t)
  const results = await Promise.allSettled([
    services.driver.createNetwork(netReq(NET, '10.9.0.0/24', '10.9.0.1/24'), log),
    services.driver.createNetwork(netReq(NET2, '10.9.0.0/16', '10.9.0.1/16'), log),
  ])
  t.same(results.map((r) => r.status).sort(), ['fulfilled', 'rejected'])
  t.match(results.find((r) => r.status === 'rejected'), { reason: { kind: 'conflict', message: /overlaps subnet/ } })
  t.equal(services.driver.snapshot().networks.length, 1)
})

t.test('DeleteNetwork removes endpoints still attached; a second one and unknown IDs are fine', async (t) => {
  const { services, host, storeState, dryRun } = await openUnit(t)
  t.same(await services.driver.deleteNetwork({ NetworkID: NET }, log), {}, 'an unknown network')
  await services.driver.createNetwork(netReq(NET), log)
  await services.driver.createEndpoint(epReq(NET, EP), log)
  await services.driver.createEndpoint(epReq(NET, dockerId('e2'), '172.18.0.3/16'), log)
  await services.driver.deleteNetwork({ NetworkID: NET }, log)
  t.equal(host.state(), new FakeHost().state(), 'nothing left on the host: bridge, veths, group, entries and chains are gone')
  t.equal(await storeState(), JSON.stringify({}), 'no network or endpoint record')
  t.same(services.driver.snapshot(), { networks: [], endpoints: [], creating: [] })
  const calls = host.calls.length
  t.same(await services.driver.deleteNetwork({ NetworkID: NET }, log), {}, 'a repeated DeleteNetwork')
  t.same(host.changesSince(calls), [], 'applies nothing')
  t.same((await dryRun()).changes, [])
})

t.test('DeleteNetwork on a failing store changes nothing and says so', async (t) => {
  const { services, host, storeState, failNextDelete } = await openUnit(t)
  await services.driver.createNetwork(netReq(NET), log)
  await services.driver.createEndpoint(epReq(NET, EP), log)
  const hostBefore = host.state()
  const storeBefore = await storeState()
  failNextDelete()
  await t.rejects(services.driver.deleteNetwork({ NetworkID: NET }, log), { name: 'TsnetError', message: /^deleting network 0a0123456789: nothing was changed, because its record could not be removed: I\/O error \(injected\)$/ })
  t.equal(host.state(), hostBefore)
  t.equal(await storeState(), storeBefore)
  t.same(await services.driver.deleteNetwork({ NetworkID: NET }, log), {}, 'the retry works')
  t.equal(host.state(), new FakeHost().state())
})

t.test('a DeleteNetwork whose store fails part way removes what it removed from the host too, and says so', async (t) => {
  const { services, host, storeState, failNextDelete, dryRun } = await openUnit(t)
  await services.driver.createNetwork(netReq(NET), log)
  await services.driver.createEndpoint(epReq(NET, EP), log)
  await services.driver.createEndpoint(epReq(NET, dockerId('e2'), '172.18.0.3/16'), log)
  const [first, second] = services.driver.snapshot().endpoints.map((e) => e.id)
  failNextDelete(1)
  await t.rejects(services.driver.deleteNetwork({ NetworkID: NET }, log), {
    name: 'TsnetError', message: 'deleting network 0a0123456789: stopped part way, because a record could not be removed (the endpoints removed so far are gone from the host too): I/O error (injected)',
  })
  t.same(services.driver.snapshot().endpoints.map((e) => e.id), [second], 'the first endpoint is gone from tsnet')
  t.same(Object.keys(JSON.parse(await storeState()) as object).sort(), [`endpoints/${second}.json`, `networks/${NET}.json`], 'and from the store')
  t.notOk(host.links.has(`tsv${first?.slice(0, 12)}`), 'and from the host')
  t.ok(host.links.has(`tsv${second?.slice(0, 12)}`) && host.links.has(bridgeNameFor(NET)), 'the rest stays')
  t.same((await dryRun()).changes, [], 'host and records agree')
  t.same(await services.driver.deleteNetwork({ NetworkID: NET }, log), {}, 'the retry finishes')
  t.equal(host.state(), new FakeHost().state())
})

t.test('a DeleteNetwork whose host change fails: the records are gone, nothing comes back, and a reconcile removes the rest', async (t) => {
  const { services, host, storeState, dryRun } = await openUnit(t)
  await services.driver.createNetwork(netReq(NET), log)
  await services.driver.createEndpoint(epReq(NET, EP), log)
  await services.driver.createNetwork(netReq(NET2, '10.1.0.0/16', '10.1.0.1/16'), log)
  const onlyNet2 = await openUnit(t)
  await onlyNet2.services.driver.createNetwork(netReq(NET2, '10.1.0.0/16', '10.1.0.1/16'), log)
  host.failNext.add('link:delete')
  await t.rejects(services.driver.deleteNetwork({ NetworkID: NET }, log), { name: 'TsnetError', kind: 'host', message: /^deleting network 0a0123456789: .*injected failure in link:delete/ })
  t.same(services.driver.snapshot().networks.map((n) => n.id), [NET2], 'the network is gone from tsnet (its record went first)')
  t.same(Object.keys(JSON.parse(await storeState()) as object), [`networks/${NET2}.json`], 'and from the store')
  t.notOk([...host.sets.values()].some((e) => e.comment === networkTag(NET)), 'what went before the failure stays gone (no rollback brings back a removed network)')
  t.ok((await dryRun()).changes.length > 0, 'precondition: something of the network is left on the host')
  t.same(await services.driver.deleteNetwork({ NetworkID: NET }, log), {}, 'Docker\'s retry answers')
  await services.reconciler.pass('periodic')
  t.equal(host.state(), onlyNet2.host.state(), 'the reconcile removed the rest; the other network is untouched')
})

t.test('ICC off without br_netfilter is refused before anything changes', async (t) => {
  const host = new TestHost()
  host.hostFacts = { ...host.hostFacts, brNetfilter: false }
  const { services } = await openUnit(t, { host })
  const calls = host.calls.length
  await t.rejects(services.driver.createNetwork(netReq(NET, '10.9.0.0/24', '10.9.0.1/24', { [OPTION.icc]: 'false' }), log),
    { name: 'TsnetError', kind: 'invalid', message: /enable_icc=false needs the br_netfilter kernel module/ })
  t.same(host.changesSince(calls), [], 'no change was attempted')
  t.equal(host.state(), new FakeHost().state(), 'no link, entry, group or chain is left')
  t.equal(host.sysctls.get('net/ipv4/ip_forward'), undefined, 'forwarding not turned on (so FORWARD keeps its policy: see bridge-sysctls)')
  t.same(await services.driver.createNetwork(netReq(NET, '10.9.0.0/24', '10.9.0.1/24'), log), {}, 'control: ICC on needs no br_netfilter')
  t.equal(host.sysctls.get('net/bridge/bridge-nf-call-iptables'), undefined, 'and tsnet does not write its setting')
})

t.test('the chains stay while another network is being created: a failing create does not take them along', async (t) => {
  for (const how of ['refused', 'fails after changes'] as const) {
    await t.test(how, async (t) => {
      const { services, host } = await openUnit(t)
      const put = services.store.put.bind(services.store)
      let open!: () => void
      let reached!: () => void
      const gate = new Promise<void>((r) => { open = r })
      const atPut = new Promise<void>((r) => { reached = r })
      // NET's record write (its host work is done) waits while NET2 is tried.
      services.store.put = async (c, id, v) => {
        if (id === NET) { reached(); await gate }
        return put(c, id, v)
      }
      plant(host, { kind: 'link', name: 'foreign0', type: 'bridge', alias: 'not-tsnet', mtu: 1500, up: true, recreate: true })
      const a = services.driver.createNetwork(netReq(NET), log)
      await atPut
      t.equal(host.edge, true, 'precondition: NET\'s chains are in place, its record is being written')
      if (how === 'fails after changes') host.failNext.add('addr:create')
      const generic: Record<string, string> = how === 'refused' ? { [OPTION.bridgeName]: 'foreign0' } : {}
      const b = services.driver.createNetwork(netReq(NET2, '10.1.0.0/24', '10.1.0.1/24', generic), log).then(() => undefined, (e: unknown) => e)
      open()
      await a
      t.match(await b, { name: 'TsnetError', message: how === 'refused' ? /foreign0 already exists and is not tsnet's/ : /rolled back: the host is as it was\): injected failure in addr:create/ })
      t.same(services.driver.snapshot().networks.map((n) => n.id), [NET])
      t.equal(host.edge, true, "tsnet's chains are in place for NET")
      t.same(entriesOf(host, NET), ['tsnet-masq4 172.18.0.0/16', `tsnet-src4 172.18.0.0/16,${bridgeNameFor(NET)}`], 'NET\'s entries are in place')
      t.notOk(host.links.has(bridgeNameFor(NET2)), 'NET2 left nothing')
    })
  }
})

t.test('a retried CreateNetwork of a network with containers leaves their policy entries and route_localnet alone', async (t) => {
  const u = await openUnit(t)
  const { services: { driver, ports }, host } = u
  const req = netReq(NET, '172.18.0.0/16', '172.18.0.1/16', { [OPTION.allow]: '10.99.0.0/16 tcp/443' })
  await driver.createNetwork(req, log)
  await driver.createEndpoint(epReq(NET, EP), log)
  await driver.join({ NetworkID: NET, EndpointID: EP, SandboxKey: '/var/run/docker/netns/x' }, log)
  await ports.program({ NetworkID: NET, EndpointID: EP, Options: { [OPT.portMap]: [{ Proto: 6, Port: 80, HostPort: 8080, HostPortEnd: 8080 }] } }, log)
  const before = host.state()
  t.equal(host.sysctls.get(`net/ipv4/conf/${bridgeNameFor(NET)}/route_localnet`), '1', 'precondition: a wildcard port needs route_localnet')
  t.ok(host.sets.has('tsnet-allow4 172.18.0.2,tcp:443,10.99.0.0/16'), 'precondition: the container\'s policy entry')
  const calls = host.calls.length
  t.same(await driver.createNetwork(req, log), {})
  t.same(host.changesSince(calls), [], 'nothing applied')
  t.equal(host.state(), before, 'the entry is still there')
  t.equal(host.sysctls.get(`net/ipv4/conf/${bridgeNameFor(NET)}/route_localnet`), '1', 'and route_localnet is still on')
})
