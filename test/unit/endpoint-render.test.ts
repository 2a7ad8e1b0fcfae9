// An endpoint change renders its network again only when the network's objects can change
// (modes' networkDependsOnEndpoints, services/network-state), and the endpoints are indexed by
// network and by host link (services/endpoint-map). Both are shortcuts that must never change
// what tsnet wants: after every step, what the engine's index holds for each owner must equal a
// fresh rendering of every record, as the boot reconcile would make it.
import t, { type Test } from 'tap'
import type { HostObject } from '../../src/core/objects.js'
import { keyOf } from '../../src/core/objects.js'
import type { EndpointRecord } from '../../src/core/records.js'
import { bridgeMode } from '../../src/modes/bridge.js'
import { EndpointMap } from '../../src/services/endpoint-map.js'
import { type Unit, attach, netReq, openUnit, program, revoke, tcp } from './fixtures/services.js'
import { dockerId, log } from './fixtures/util.js'

const NET = dockerId('0a')
const POLICY_NET = dockerId('0b')
const ALLOW = 'tsnet.allow'

const sorted = (objects: Iterable<HostObject>) => [...objects].map((o) => JSON.stringify([keyOf(o), o])).sort()

/** Every owner's objects in the engine's index against a fresh rendering of every record. */
function indexMatchesRecords(t: Test, u: Unit, step: string): void {
  const { state, engine } = u.services.driver
  const fresh = state.allChanges()
  const owners = new Set([...engine.desired.owners(), ...fresh.keys()])
  const differ = [...owners].filter((o) => JSON.stringify(sorted(engine.desired.objectsOf(o).values())) !== JSON.stringify(sorted(fresh.get(o) ?? [])))
  t.same(differ, [], `${step}: the index holds what the records want`)
}

const ep = (id: string, networkId: string, hostIf?: string): EndpointRecord =>
  ({ id, networkId, ...(hostIf ? { hostIf } : {}) }) as unknown as EndpointRecord

t.test('the index equals a fresh rendering after every kind of endpoint change', async (t) => {
  const u = await openUnit(t)
  const { driver } = u.services
  await driver.createNetwork(netReq(NET, '10.1.0.0/24', '10.1.0.1/24'), log)
  await driver.createNetwork(netReq(POLICY_NET, '10.2.0.0/24', '10.2.0.1/24', { [ALLOW]: '10.99.0.0/16 tcp/80' }), log)
  const [a, b, c] = [dockerId('e1'), dockerId('e2'), dockerId('e3')]
  await attach(u, NET, a, '10.1.0.2/24')
  indexMatchesRecords(t, u, 'a port-less endpoint joined')
  await attach(u, POLICY_NET, c, '10.2.0.2/24')
  indexMatchesRecords(t, u, 'an endpoint on a policy network (its address is in the allow set)')
  await attach(u, NET, b, '10.1.0.3/24')
  await program(u, NET, b, [tcp(80, 8080, { HostIP: '127.0.0.1' })])
  indexMatchesRecords(t, u, 'a loopback publish (route_localnet on)')
  await revoke(u, NET, b)
  indexMatchesRecords(t, u, 'the publish revoked (store first, then the host)')
  await program(u, NET, b, [tcp(80, 8081)])
  await driver.leave({ NetworkID: NET, EndpointID: b }, log)
  await driver.deleteEndpoint({ NetworkID: NET, EndpointID: b }, log)
  indexMatchesRecords(t, u, 'a wildcard publisher deleted without Revoke')
  await driver.deleteEndpoint({ NetworkID: POLICY_NET, EndpointID: c }, log)
  indexMatchesRecords(t, u, 'the policy network\'s endpoint deleted')
  await driver.leave({ NetworkID: NET, EndpointID: a }, log)
  await driver.deleteEndpoint({ NetworkID: NET, EndpointID: a }, log)
  indexMatchesRecords(t, u, 'the last endpoint gone')
  t.same((await u.dryRun()).changes, [], 'and a reconcile plans nothing')
})

t.test('bridge mode renders the network again only for a policy or a port that needs route_localnet', async (t) => {
  const plain = { policy: undefined } as never
  const withPolicy = { policy: '10.99.0.0/16 tcp/80' } as never
  const port = (hostIp: string) => ({ published: [{ family: 4, hostIp }] }) as unknown as EndpointRecord
  const bare = {} as EndpointRecord
  t.notOk(bridgeMode.networkDependsOnEndpoints(plain, undefined, bare), 'a port-less endpoint comes: no')
  t.notOk(bridgeMode.networkDependsOnEndpoints(plain, bare, undefined), 'a port-less endpoint goes: no')
  t.notOk(bridgeMode.networkDependsOnEndpoints(plain, bare, port('192.0.2.10')), 'a port on a specific address: no')
  t.ok(bridgeMode.networkDependsOnEndpoints(plain, bare, port('127.0.0.1')), 'a loopback port comes: yes')
  t.ok(bridgeMode.networkDependsOnEndpoints(plain, port(''), bare), 'a wildcard port goes: yes')
  t.ok(bridgeMode.networkDependsOnEndpoints(withPolicy, undefined, bare), 'any endpoint of a policy network: yes')
})

t.test('EndpointMap keeps its indexes in step with its entries', async (t) => {
  const m = new EndpointMap()
  m.set('a', ep('a', 'n1', 'veth-a'))
  m.set('b', ep('b', 'n1', 'veth-b'))
  m.set('c', ep('c', 'n2'))
  t.same(m.ofNetwork('n1').map((e) => e.id), ['a', 'b'])
  t.same(m.ofNetwork('n2').map((e) => e.id), ['c'])
  t.equal(m.otherWithHostIf('veth-a', 'x')?.id, 'a', 'another endpoint holds veth-a')
  t.equal(m.otherWithHostIf('veth-a', 'a'), undefined, 'an endpoint does not clash with itself')
  t.equal(m.otherWithHostIf(undefined, 'x'), undefined)
  m.set('a', ep('a', 'n2', 'veth-a2')) // replaced: moves network and link
  t.same(m.ofNetwork('n1').map((e) => e.id), ['b'])
  t.same(m.ofNetwork('n2').map((e) => e.id).sort(), ['a', 'c'])
  t.equal(m.otherWithHostIf('veth-a', 'x'), undefined, 'the old link name is free')
  t.equal(m.otherWithHostIf('veth-a2', 'x')?.id, 'a')
  t.ok(m.delete('b'))
  t.notOk(m.delete('b'), 'a second delete finds nothing')
  t.same(m.ofNetwork('n1'), [])
  t.equal(m.otherWithHostIf('veth-b', 'x'), undefined)
  t.equal(m.size, 2)
  m.clear()
  t.same([m.ofNetwork('n2'), m.size, m.otherWithHostIf('veth-a2', 'x')], [[], 0, undefined])
})
