// services/network-driver, endpoints: CreateEndpoint, Join, Leave, DeleteEndpoint, and the order of
// store and host on removals, as serve builds them (openServices + boot) over FakeHost and a FileStore.
import t, { type Test } from 'tap'
import { COMMON_OPTION } from '../../src/core/docker-keys.js'
import { bridgeNameFor, containerVethFor, hostVethFor } from '../../src/core/names.js'
import { FakeHost } from '../../src/host/fake-host.js'
import { OPT } from '../../src/protocol/types.js'
import { type Unit, epReq, netReq, openUnit, program, revoke, tcp, udp } from './fixtures/services.js'
import { dockerId, log } from './fixtures/util.js'

const NET = dockerId('0a')
const NET2 = dockerId('0b')
const EP = dockerId('e1')
const EP2 = dockerId('e2')
const SANDBOX = '/var/run/docker/netns/0123456789ab'

t.test('endpoint lifecycle: CreateEndpoint, Join, Leave, DeleteEndpoint, DeleteNetwork', async (t) => {
  const u = await openUnit(t)
  const { services: { driver }, host, dryRun } = u
  await driver.createNetwork(netReq(NET), log)
  const afterNetwork = host.state()
  const bridge = bridgeNameFor(NET)

  const created = await driver.createEndpoint(epReq(NET, EP), log)
  t.same(created, { Interface: { MacAddress: '02:42:ac:12:00:02' } }, 'the MAC tsnet chose is returned (Docker gave none)')
  const hostIf = hostVethFor(EP)
  const peer = containerVethFor(EP)
  t.match(host.links.get(hostIf), { type: 'veth', master: bridge, peer, mtu: 1500 }, 'host end on the bridge')
  t.match(host.links.get(peer), { type: 'veth', mac: '02:42:ac:12:00:02', peer: hostIf }, 'container end carries the MAC')
  t.match(await u.storedEndpoint(EP), { id: EP, networkId: NET, hostIf, containerIf: peer, address: '172.18.0.2/16', joined: false })
  t.same(driver.endpointOperInfo({ NetworkID: NET, EndpointID: EP }), { Value: { hostInterface: hostIf, macAddress: '02:42:ac:12:00:02', address: '172.18.0.2/16' } })
  const calls = host.calls.length
  t.same(await driver.createEndpoint(epReq(NET, EP), log), created, 'a retried CreateEndpoint answers the same')
  t.same(host.changesSince(calls), [], 'and applies nothing')
  t.same((await dryRun()).changes, [], 'a reconcile after CreateEndpoint plans nothing')

  const joined = await driver.join({ NetworkID: NET, EndpointID: EP, SandboxKey: SANDBOX, Options: { [OPT.portMap]: null, [OPT.exposedPorts]: null } }, log)
  t.same(joined, { InterfaceName: { SrcName: peer, DstPrefix: 'eth' }, Gateway: '172.18.0.1' })
  t.match(await u.storedEndpoint(EP), { joined: true, sandboxKey: SANDBOX }, 'the join is persisted')
  t.same(await driver.join({ NetworkID: NET, EndpointID: EP, SandboxKey: SANDBOX }, log), joined, 'a repeated Join answers the same')
  t.same((await dryRun()).changes, [], 'a reconcile after Join plans nothing')

  t.same(await driver.leave({ NetworkID: NET, EndpointID: EP }, log), {})
  const left = await u.storedEndpoint(EP)
  t.equal(left.joined, false)
  t.notOk('sandboxKey' in left, 'the sandbox key is dropped')
  t.ok(host.links.has(hostIf), 'Leave keeps the veth (Docker moves it back)')
  t.same(await driver.leave({ NetworkID: NET, EndpointID: EP }, log), {}, 'a second Leave is fine')
  t.same((await dryRun()).changes, [], 'a reconcile after Leave plans nothing')

  t.same(await driver.deleteEndpoint({ NetworkID: NET, EndpointID: EP }, log), {})
  t.notOk(host.links.has(hostIf), 'the host end is gone')
  t.notOk(host.links.has(peer), 'the peer is gone')
  t.equal(host.state(), afterNetwork, 'the host is as it was before the endpoint')
  t.same(await u.services.store.list('endpoints'), [])
  t.same(driver.endpointOperInfo({ NetworkID: NET, EndpointID: EP }), { Value: {} })
  t.same((await dryRun()).changes, [], 'a reconcile after DeleteEndpoint plans nothing')

  t.same(await driver.deleteNetwork({ NetworkID: NET }, log), {})
  t.equal(host.state(), new FakeHost().state(), 'bridge, group, entries and chains are gone')
  t.same(await u.services.store.list('networks'), [])
  t.same(driver.snapshot(), { networks: [], endpoints: [] })
})

t.test('CreateEndpoint with a MAC from Docker answers without a MAC', async (t) => {
  const { services: { driver }, host } = await openUnit(t)
  await driver.createNetwork(netReq(NET), log)
  t.same(await driver.createEndpoint(epReq(NET, EP, '172.18.0.2/16', '02:AA:00:00:00:01'), log), {})
  t.equal(host.links.get(containerVethFor(EP))?.mac, '02:aa:00:00:00:01', 'the given MAC is set on the interface')
})

t.test('CreateEndpoint refusals change nothing', async (t) => {
  const { services: { driver }, host, storeState } = await openUnit(t)
  await t.rejects(driver.createEndpoint(epReq(NET2, EP), log), { name: 'TsnetError', kind: 'notfound', message: /network 0b0123456789 is unknown to tsnet/ }, 'an unknown network is named in the error')
  await driver.createNetwork(netReq(NET), log)
  await driver.createEndpoint(epReq(NET, EP), log)
  const hostBefore = host.state()
  const storeBefore = await storeState()
  await t.rejects(driver.createEndpoint(epReq(NET, EP, '172.18.0.3/16'), log), { name: 'TsnetError', kind: 'conflict', message: /endpoint e10123456789 already exists in tsnet with different settings/ })
  await t.rejects(driver.createEndpoint(epReq(NET, EP2, '10.99.0.2/16'), log), { name: 'TsnetError', kind: 'invalid', message: /outside the subnets/ })
  const twin = EP.slice(0, 12) + 'f'.repeat(52) // same first 12 characters → same veth name
  await t.rejects(driver.createEndpoint(epReq(NET, twin, '172.18.0.9/16'), log), { name: 'TsnetError', kind: 'conflict', message: /would reuse interface tsve10123456789/ })
  t.equal(host.state(), hostBefore)
  t.equal(await storeState(), storeBefore)
})

t.test('a host or store failure in CreateEndpoint is rolled back', async (t) => {
  const { services: { driver }, host, storeState, failNextPut, dryRun } = await openUnit(t)
  await driver.createNetwork(netReq(NET), log)
  const hostBefore = host.state()
  const storeBefore = await storeState()
  host.failNext.add('link:create')
  await t.rejects(driver.createEndpoint(epReq(NET, EP), log), { name: 'TsnetError', kind: 'host', message: 'creating endpoint e10123456789 (rolled back: the host is as it was): injected failure in link:create' })
  t.equal(host.state(), hostBefore)
  failNextPut()
  await t.rejects(driver.createEndpoint(epReq(NET, EP), log), { name: 'TsnetError', kind: 'host', message: /^creating endpoint e10123456789 \(rolled back: the host is as it was\): disk full/ })
  t.equal(host.state(), hostBefore)
  t.equal(await storeState(), storeBefore)
  t.same(driver.snapshot().endpoints, [])
  t.same((await dryRun()).changes, [], 'the index was not changed either')
})

t.test('Join and Leave refusals', async (t) => {
  const u = await openUnit(t)
  const { services: { driver } } = u
  await t.rejects(driver.join({ NetworkID: NET, EndpointID: EP, SandboxKey: SANDBOX }, log), { name: 'TsnetError', kind: 'notfound', message: /network 0a0123456789 is unknown/ })
  await driver.createNetwork(netReq(NET), log)
  await driver.createNetwork(netReq(NET2, '10.1.0.0/16', '10.1.0.1/16'), log)
  await t.rejects(driver.join({ NetworkID: NET, EndpointID: EP, SandboxKey: SANDBOX }, log), { name: 'TsnetError', kind: 'notfound', message: /endpoint e10123456789 of network 0a0123456789 is unknown/ })
  await driver.createEndpoint(epReq(NET, EP), log)
  await t.rejects(driver.join({ NetworkID: NET2, EndpointID: EP, SandboxKey: SANDBOX }, log), { name: 'TsnetError', kind: 'notfound' }, 'the endpoint of another network')
  await t.rejects(driver.join({ NetworkID: NET, EndpointID: EP, SandboxKey: '' }, log), { name: 'TsnetError', kind: 'invalid', message: /SandboxKey/ })
  const hostBefore = u.host.state()
  const storeBefore = await u.storeState()
  await t.rejects(driver.join({ NetworkID: NET, EndpointID: EP, SandboxKey: SANDBOX, Options: { [OPT.portMap]: [{ Proto: 1, Port: 1 }] } }, log), { name: 'TsnetError', kind: 'invalid', message: /protocol number 1/ })
  await t.rejects(driver.join({ NetworkID: NET, EndpointID: EP, SandboxKey: SANDBOX, Options: { [OPT.exposedPorts]: 'x' } }, log), { name: 'TsnetError', kind: 'invalid' })
  t.equal(u.host.state(), hostBefore, 'a refused Join changes nothing')
  t.equal(await u.storeState(), storeBefore)
  t.same(await driver.leave({ NetworkID: NET2, EndpointID: EP }, log), {}, 'Leave for the wrong network is a no-op')
  t.same(await driver.leave({ NetworkID: NET, EndpointID: EP2 }, log), {}, 'Leave of an unknown endpoint')
})

t.test('deletes of unknown IDs succeed and change nothing', async (t) => {
  const { services: { driver }, host, storeState } = await openUnit(t)
  t.same(await driver.deleteNetwork({ NetworkID: NET }, log), {})
  t.same(await driver.deleteEndpoint({ NetworkID: NET, EndpointID: EP }, log), {})
  await driver.createNetwork(netReq(NET), log)
  await driver.createEndpoint(epReq(NET, EP), log)
  const hostBefore = host.state()
  const storeBefore = await storeState()
  t.same(await driver.deleteEndpoint({ NetworkID: NET, EndpointID: EP2 }, log), {}, 'unknown endpoint on a known network')
  t.same(await driver.deleteEndpoint({ NetworkID: NET2, EndpointID: EP }, log), {}, 'a known endpoint named with the wrong network is not deleted')
  t.same(await driver.deleteNetwork({ NetworkID: NET2 }, log), {})
  t.equal(host.state(), hostBefore)
  t.equal(await storeState(), storeBefore)
})

t.test('internal and IPv6 networks answer Join with the right gateways', async (t) => {
  const { services: { driver } } = await openUnit(t)
  await driver.createNetwork(netReq(NET, '172.18.0.0/16', '172.18.0.1/16', {}, { [OPT.internal]: true }), log)
  await driver.createEndpoint(epReq(NET, EP), log)
  t.same(await driver.join({ NetworkID: NET, EndpointID: EP, SandboxKey: SANDBOX }, log), { InterfaceName: { SrcName: containerVethFor(EP), DstPrefix: 'eth' } }, 'internal: no gateway')
  await driver.createNetwork(netReq(NET2, '10.1.0.0/16', '10.1.0.1/16', { [COMMON_OPTION.ifacePrefix]: 'ens' }, {}, { pool: 'fd00:1::/64', gw: 'fd00:1::1/64' }), log)
  await driver.createEndpoint(epReq(NET2, EP2, '10.1.0.2/16', '', 'fd00:1::2/64'), log)
  t.same(await driver.join({ NetworkID: NET2, EndpointID: EP2, SandboxKey: SANDBOX }, log),
    { InterfaceName: { SrcName: containerVethFor(EP2), DstPrefix: 'ens' }, Gateway: '10.1.0.1', GatewayIPv6: 'fd00:1::1' })
})

t.test('after a restart, old endpoints are still served, and what the old process made is cleaned up', async (t) => {
  const first = await openUnit(t)
  await first.services.driver.createNetwork(netReq(NET), log)
  await first.services.driver.createEndpoint(epReq(NET, EP), log)
  const again = await first.restart()
  const { driver } = again.services
  t.same(driver.snapshot().networks.map((n) => n.id), [NET])
  t.same(driver.snapshot().endpoints.map((e) => e.id), [EP])
  t.same(await driver.join({ NetworkID: NET, EndpointID: EP, SandboxKey: SANDBOX }, log), { InterfaceName: { SrcName: containerVethFor(EP), DstPrefix: 'eth' }, Gateway: '172.18.0.1' })
  t.same(await driver.createNetwork(netReq(NET), log), {}, 'an identical CreateNetwork still counts as the same network')
  await t.rejects(driver.createNetwork(netReq(NET2, '10.1.0.0/16', '10.1.0.1/16', { 'com.docker.network.bridge.name': bridgeNameFor(NET) }), log), { name: 'TsnetError', kind: 'invalid' }, 'tsnet\'s bridge names stay reserved')
  t.same(await driver.leave({ NetworkID: NET, EndpointID: EP }, log), {})
  t.same(await driver.deleteEndpoint({ NetworkID: NET, EndpointID: EP }, log), {})
  t.same(await driver.deleteNetwork({ NetworkID: NET }, log), {})
  t.equal(again.host.state(), new FakeHost().state(), 'a restarted service cleans up what the old one made')
})

t.test('allocateNetwork echoes options; external connectivity validates its request and changes nothing', async (t) => {
  const { services: { driver, ports }, host, storeState } = await openUnit(t)
  t.same(driver.allocateNetwork({ NetworkID: NET, Options: { a: 'b' } }), { Options: { a: 'b' } })
  t.same(driver.allocateNetwork({ NetworkID: NET, Options: null }), { Options: {} })
  await t.rejects(ports.program({ NetworkID: NET, EndpointID: EP, Options: { [OPT.portMap]: [{ Proto: 6, Port: 80, HostPort: 8080 }] } }, log),
    { name: 'TsnetError', kind: 'notfound', message: /network 0a0123456789 is unknown/ }, 'an unknown network')
  await driver.createNetwork(netReq(NET), log)
  await t.rejects(ports.program({ NetworkID: NET, EndpointID: EP, Options: {} }, log),
    { name: 'TsnetError', kind: 'notfound', message: /endpoint e10123456789 of network 0a0123456789 is unknown/ }, 'an unknown endpoint')
  await driver.createEndpoint(epReq(NET, EP), log)
  const hostBefore = host.state()
  const storeBefore = await storeState()
  await t.rejects(ports.program({ NetworkID: NET, EndpointID: EP, Options: { [OPT.portMap]: 'x' } }, log), { name: 'TsnetError', kind: 'invalid', message: /port map must be a list/ })
  await t.rejects(ports.program({ NetworkID: NET, EndpointID: EP, Options: { [OPT.exposedPorts]: [{ Proto: 1, Port: 80 }] } }, log), { name: 'TsnetError', kind: 'invalid', message: /protocol number 1/ })
  t.same(await ports.revoke({ NetworkID: NET2, EndpointID: EP }, log), {}, 'Revoke for an unknown network is a no-op')
  t.same(await ports.revoke({ NetworkID: NET, EndpointID: EP }, log), {}, 'Revoke of an endpoint with nothing published')
  t.equal(host.state(), hostBefore)
  t.equal(await storeState(), storeBefore)
})

// ------------------------------------------------------------------ removals: the record first, then the host

/** A network whose endpoint publishes tcp/8080 and udp/5353. */
async function published(t: Test): Promise<Unit> {
  const u = await openUnit(t)
  await u.services.driver.createNetwork(netReq(NET), log)
  const maps = [tcp(80, 8080), udp(53, 5353)]
  await u.services.driver.createEndpoint(epReq(NET, EP, '172.18.0.2/16', '', '', maps), log)
  await u.services.driver.join({ NetworkID: NET, EndpointID: EP, SandboxKey: SANDBOX, Options: {} }, log)
  await program(u, NET, EP, maps)
  t.same([...u.host.heldPorts].sort(), ['tcp/8080', 'udp/5353'], 'precondition: two ports published')
  t.equal(u.host.portRules.size, 2)
  return u
}

t.test('Revoke on a full disk changes nothing and says so; the retry unpublishes', async (t) => {
  const u = await published(t)
  const { host } = u
  const hostBefore = host.state()
  const storeBefore = await u.storeState()
  const flowsBefore = host.forgottenFlows.length
  u.failNextPut()
  await t.rejects(revoke(u, NET, EP), {
    name: 'TsnetError', message: "unpublishing ports of endpoint e10123456789: nothing was changed, because the endpoint's record could not be written: disk full (injected)",
  })
  t.equal(host.state(), hostBefore, 'the rules and held ports are all there')
  t.equal(await u.storeState(), storeBefore, 'the record still lists the ports: record and kernel agree')
  t.equal(host.forgottenFlows.length, flowsBefore, 'no flow was forgotten')
  t.same(await revoke(u, NET, EP), {}, 'the retry works')
  t.equal(host.portRules.size + host.heldPorts.size, 0, 'and unpublishes')
  const again = await u.restart()
  t.equal(host.portRules.size + host.heldPorts.size, 0, 'a restart publishes nothing again')
  t.notOk(again.services.driver.snapshot().endpoints[0]?.published, 'the restarted service knows nothing is published')
})

t.test('Revoke whose host change fails after the record was written: nothing publishes the port again', async (t) => {
  const u = await published(t)
  const { host } = u
  host.failNext.add('dnat:delete')
  await t.rejects(revoke(u, NET, EP), { name: 'TsnetError', kind: 'host', message: /^unpublishing ports of endpoint e10123456789: injected failure in dnat:delete$/ })
  t.notOk('published' in (await u.storedEndpoint(EP)), 'the record no longer lists the ports (written first)')
  t.equal(host.portRules.size, 2, 'precondition: the rules are still in the kernel')
  t.same(host.forgottenFlows.at(-1), [{ family: 4, proto: 'udp', hostPort: 5353, hostIp: '' }], 'the UDP flows are forgotten all the same (a retry would no longer know the port)')
  t.same((await u.dryRun()).changes.sort(), [
    ...host.ofKind('dnat').map((r) => `delete dnat 4 ${r.rule}`), 'delete port tcp/8080 4:0.0.0.0', 'delete port udp/5353 4:0.0.0.0',
    `update sysctl net/ipv4/conf/${bridgeNameFor(NET)}/route_localnet`,
  ].sort(), 'what is left is no longer wanted (and route_localnet no longer needed): the next reconcile finishes the job')
  await u.restart()
  t.equal(host.portRules.size, 0, 'the boot reconcile removes the rules no record explains')
  t.equal(host.heldPorts.size, 0, 'and holds no port: the revoked ports stay revoked')
})

t.test('DeleteEndpoint on a failing store changes nothing and says so', async (t) => {
  const u = await published(t)
  const { services: { driver }, host } = u
  const hostBefore = host.state()
  const storeBefore = await u.storeState()
  u.failNextDelete()
  await t.rejects(driver.deleteEndpoint({ NetworkID: NET, EndpointID: EP }, log), {
    name: 'TsnetError', message: 'deleting endpoint e10123456789: nothing was changed, because its record could not be removed: I/O error (injected)',
  })
  t.equal(host.state(), hostBefore, 'veth, rules and held ports are all there')
  t.equal(await u.storeState(), storeBefore, 'and so is the record')
  u.failNextDelete()
  await t.rejects(driver.deleteNetwork({ NetworkID: NET }, log), { name: 'TsnetError', message: /^deleting network 0a0123456789: nothing was changed, because its record could not be removed/ }, 'DeleteNetwork alike')
  t.equal(host.state(), hostBefore)
  t.equal(await u.storeState(), storeBefore)
  t.same(await driver.deleteEndpoint({ NetworkID: NET, EndpointID: EP }, log), {}, 'the retry works')
  t.equal(host.portRules.size + host.heldPorts.size, 0)
})

t.test('DeleteEndpoint whose host change fails after the record went cannot resurrect a port', async (t) => {
  const u = await published(t)
  const { services: { driver }, host } = u
  host.failNext.add('link:delete')
  await t.rejects(driver.deleteEndpoint({ NetworkID: NET, EndpointID: EP }, log), { name: 'TsnetError', kind: 'host', message: /^deleting endpoint e10123456789: injected failure in link:delete$/ })
  t.equal(host.portRules.size + host.heldPorts.size, 0, 'the ports went before the failing step, and no rollback brings them back')
  t.ok(host.links.has(hostVethFor(EP)), 'precondition: the veth is still there')
  t.same(driver.snapshot().endpoints, [], 'the endpoint is gone from tsnet (its record went first)')
  t.same(await driver.deleteEndpoint({ NetworkID: NET, EndpointID: EP }, log), {}, 'Docker\'s retry answers')
  t.same((await u.dryRun()).changes, [`delete link ${hostVethFor(EP)}`, `update sysctl net/ipv4/conf/${bridgeNameFor(NET)}/route_localnet`],
    'the veth is no longer wanted, nor route_localnet')
  await u.services.reconciler.pass('periodic')
  t.notOk(host.links.has(hostVethFor(EP)), 'the next reconcile removes the veth')
  t.equal(host.sysctls.get(`net/ipv4/conf/${bridgeNameFor(NET)}/route_localnet`), '0', 'and turns route_localnet off')
  const again = await u.restart()
  t.same(again.services.driver.snapshot().endpoints, [], 'after a restart the endpoint is still gone')
  t.equal(host.portRules.size + host.heldPorts.size, 0, 'and nothing is published again')
})
