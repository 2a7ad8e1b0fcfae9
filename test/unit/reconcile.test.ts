// NetworkService.restoreHost (boot reconcile) over FakeHost and a FileStore in a temporary directory.
import t, { type Test } from 'tap'
import { GROUP, type SetEntry, dnatRule, entryKey } from '../../src/core/edge-plan.js'
import { OPTION } from '../../src/core/network-plan.js'
import { bridgeNameFor, containerVethFor, endpointAlias, hostVethFor, macFromSeed, networkAlias, networkTag } from '../../src/core/names.js'
import { FakeHost, type FakeLink } from '../../src/host/fake-host.js'
import type { Logger } from 'pino'
import { OPT, type CreateNetworkRequest } from '../../src/protocol/types.js'
import { NetworkService } from '../../src/services/network-service.js'
import { FileStore } from '../../src/store/file-store.js'
import { captureLog, ERROR_LEVEL } from './fixtures/gc-fakes.js'
import { dockerId, log, tempDir } from './fixtures/util.js'

const NET = dockerId('0a')
const NET2 = dockerId('0b')
const NET3 = dockerId('0c')
const EP = dockerId('e1')
const EP2 = dockerId('e2')
const GHOST_NET = dockerId('dd')
const GHOST_EP = dockerId('de')

function netReq(id: string, pool: string, gw: string, generic: Record<string, string> = {}, v6?: { pool: string; gw: string }): CreateNetworkRequest {
  return {
    NetworkID: id,
    Options: { [OPT.generic]: generic, [OPT.enableIpv6]: v6 !== undefined },
    IPv4Data: [{ AddressSpace: 'LocalDefault', Pool: pool, Gateway: gw }],
    IPv6Data: v6 ? [{ AddressSpace: 'LocalDefault', Pool: v6.pool, Gateway: v6.gw }] : [],
  }
}

/**
 * Three networks made on a first host: NET (MTU 1400, one endpoint), NET2 (dual stack, user
 * bridge name), NET3 (plain). Returns a service over the same store on `host` (a fresh one by
 * default: a reboot) and the first host's state for comparison.
 */
async function setup(t: Test, host = new FakeHost()) {
  const dir = await tempDir(t)
  const first = new FakeHost()
  const svc0 = new NetworkService(await FileStore.open(dir), first, {})
  await svc0.load()
  await svc0.createNetwork(netReq(NET, '172.18.0.0/16', '172.18.0.1/16', { [OPTION.mtu]: '1400' }), log)
  await svc0.createNetwork(netReq(NET2, '10.1.0.0/24', '10.1.0.1/24', { [OPTION.bridgeName]: 'mybr0' }, { pool: 'fd00:1::/64', gw: 'fd00:1::1/64' }), log)
  await svc0.createNetwork(netReq(NET3, '10.2.0.0/24', '10.2.0.1/24'), log)
  const networksOnly = first.state()
  await svc0.createEndpoint({ NetworkID: NET, EndpointID: EP, Interface: { Address: '172.18.0.2/16', AddressIPv6: '', MacAddress: '' } }, log)
  const open = async (h: FakeHost) => {
    const svc = new NetworkService(await FileStore.open(dir), h, {})
    await svc.load()
    return svc
  }
  const svc = await open(host)
  return { dir, first, networksOnly, host, svc, open }
}

/** The ipset entries carrying a network's tag, as `set entry`, sorted. */
const entriesOf = (host: FakeHost, id: string) => [...host.sets.values()].filter((e) => e.comment === networkTag(id)).map(entryKey).sort()
const addEntry = (host: FakeHost, e: SetEntry) => host.sets.set(entryKey(e), e)
/** What each network of setup() puts in the ipsets. */
const WANT_ENTRIES: Record<string, string[]> = {
  [NET]: [`tsnet-masq4 172.18.0.0/16`, `tsnet-src4 172.18.0.0/16,${bridgeNameFor(NET)}`],
  [NET2]: ['tsnet-masq4 10.1.0.0/24', 'tsnet-masq6 fd00:1::/64', 'tsnet-src4 10.1.0.0/24,mybr0', 'tsnet-src6 fd00:1::/64,mybr0'],
  [NET3]: ['tsnet-masq4 10.2.0.0/24', `tsnet-src4 10.2.0.0/24,${bridgeNameFor(NET3)}`],
}
/** A DNAT rule of an endpoint no record knows. */
const GHOST_DNAT = `4 ${dnatRule(GHOST_EP, { family: 4, proto: 'tcp', hostIp: '', hostPort: 8080, containerIp: '10.99.0.2', containerPort: 80 })}`

const link = (name: string, alias: string | undefined, more: Partial<FakeLink> = {}): FakeLink =>
  ({ name, kind: 'veth', ...(alias !== undefined ? { alias } : {}), mtu: 1500, up: true, addresses: [], ...more })

t.test('after a reboot, every stored network gets its bridge, group, entries and chains back', async (t) => {
  const { svc, host, networksOnly } = await setup(t)
  t.equal(host.links.size, 0, 'precondition: an empty host')
  await svc.restoreHost(log)
  t.same(host.links.get(bridgeNameFor(NET)), {
    name: bridgeNameFor(NET), kind: 'bridge', alias: networkAlias(NET), mtu: 1400, mac: macFromSeed(NET), up: true, addresses: ['172.18.0.1/16'],
  }, 'NET: its MTU, MAC and gateway address')
  t.same(host.links.get('mybr0'), {
    name: 'mybr0', kind: 'bridge', alias: networkAlias(NET2), mtu: 1500, mac: macFromSeed(NET2), up: true, addresses: ['10.1.0.1/24', 'fd00:1::1/64'],
  }, 'NET2: the user\'s bridge name, both gateways')
  t.match(host.links.get(bridgeNameFor(NET3)), { alias: networkAlias(NET3), mtu: 1500, addresses: ['10.2.0.1/24'] })
  for (const id of [NET, NET2, NET3]) t.same(entriesOf(host, id), WANT_ENTRIES[id], `${id.slice(0, 2)}: its ipset entries`)
  t.equal(host.sets.size, 8, 'no other entry')
  t.same([...host.groups.entries()].sort(), [['mybr0', GROUP.base], [bridgeNameFor(NET), GROUP.base], [bridgeNameFor(NET3), GROUP.base]], 'each bridge carries the device group')
  t.equal(host.edge, true, "tsnet's chains are in place")
  t.equal(host.sysctls.get('net/ipv4/ip_forward'), '1', 'forwarding is on again')
  t.equal(host.sysctls.get('net/ipv6/conf/all/forwarding'), '1', 'IPv6 forwarding too (NET2 is dual stack)')
  t.equal(host.state(), networksOnly, 'the same as the networks were made (endpoint veths are not part of the restore)')
})

t.test('a bridge, entries or chains that vanished from a running host are put back; the rest is left', async (t) => {
  const { first, open } = await setup(t)
  const full = first.state()
  first.links.delete('mybr0')
  first.groups.delete('mybr0')
  for (const [k, e] of [...first.sets]) if (e.comment === networkTag(NET3)) first.sets.delete(k)
  first.edge = false
  const bridge = first.links.get(bridgeNameFor(NET))
  if (bridge) bridge.addresses = []
  const svc = await open(first)
  t.not(first.state(), full, 'precondition: the host lost things')
  await svc.restoreHost(log)
  t.equal(first.state(), full, 'bridge, group, entries, chains and gateway address are back; the endpoint veth is kept')
})

t.test('links tagged for unknown records are deleted; others are untouched', async (t) => {
  const { first: host, open } = await setup(t)
  const svc = await open(host) // a restart on the same host
  const known = host.state()
  const foreign = [
    link('eth0', undefined, { kind: 'device' }),
    link('docker0', 'docker bridge', { kind: 'bridge' }),
    link('tsnetish0', 'tsnet-not-ours', { kind: 'bridge' }),
    link('vethabc', `x${endpointAlias(GHOST_EP)}`),
  ]
  for (const l of foreign) host.links.set(l.name, l)
  const withForeign = host.state()
  host.links.set('tsbr-ghost', link('tsbr-ghost', networkAlias(GHOST_NET), { kind: 'bridge', addresses: ['10.99.0.1/24'] }))
  host.links.set('tsvghost', link('tsvghost', endpointAlias(GHOST_EP), { master: 'tsbr-ghost', peer: 'tscghost' }))
  host.links.set('tscghost', link('tscghost', undefined, { up: false, peer: 'tsvghost' }))
  // an orphan veth on a kept bridge, and one whose alias names a known network's ID as an endpoint
  host.links.set('tsvorphan', link('tsvorphan', endpointAlias(EP2), { master: bridgeNameFor(NET), peer: 'tscorphan' }))
  host.links.set('tscorphan', link('tscorphan', undefined, { up: false, peer: 'tsvorphan' }))
  host.links.set('tsvmixed', link('tsvmixed', endpointAlias(NET)))

  await svc.restoreHost(log)
  for (const name of ['tsbr-ghost', 'tsvghost', 'tscghost', 'tsvorphan', 'tscorphan', 'tsvmixed']) t.notOk(host.links.has(name), `${name} deleted`)
  for (const l of foreign) t.same(host.links.get(l.name), l, `${l.name} untouched`)
  t.ok(host.links.has(hostVethFor(EP)), 'the known endpoint\'s veth is kept')
  t.ok(host.links.has(containerVethFor(EP)), 'with its peer')
  t.ok(host.links.has(bridgeNameFor(NET)), 'the bridge the orphan sat on is kept')
  t.equal(host.state(), withForeign, 'exactly the unknown tsnet links went')
  for (const l of foreign) host.links.delete(l.name)
  t.equal(host.state(), known)
})

t.test('orphan endpoints are deleted before orphan networks', async (t) => {
  const order: string[] = []
  class RecordingHost extends FakeHost {
    override async deleteOwnedLink(name: string, alias: string, l: Logger): Promise<void> {
      order.push(name)
      return super.deleteOwnedLink(name, alias, l)
    }
  }
  const host = new RecordingHost()
  host.links.set('tsbr-ghost', link('tsbr-ghost', networkAlias(GHOST_NET), { kind: 'bridge' }))
  host.links.set('tsvghost', link('tsvghost', endpointAlias(GHOST_EP), { master: 'tsbr-ghost' }))
  host.links.set('tsbr-ghost2', link('tsbr-ghost2', networkAlias(dockerId('d2')), { kind: 'bridge' }))
  host.links.set('tsvghost2', link('tsvghost2', endpointAlias(dockerId('d3'))))
  const { svc } = await setup(t, host)
  await svc.restoreHost(log)
  t.same(order.slice(0, 2).sort(), ['tsvghost', 'tsvghost2'])
  t.same(order.slice(2).sort(), ['tsbr-ghost', 'tsbr-ghost2'])
})

t.test('entries and DNAT rules no record explains are pruned, known ones kept', async (t) => {
  const { first: host, open } = await setup(t)
  const svc = await open(host) // a restart on the same host
  const known = host.state()
  addEntry(host, { set: 'tsnet-src4', entry: '10.99.0.0/24,tsbr-ghost', comment: networkTag(GHOST_NET) })
  addEntry(host, { set: 'tsnet-masq4', entry: '10.99.0.0/24', comment: networkTag(GHOST_NET) })
  addEntry(host, { set: 'tsnet-allow4', entry: '10.2.0.9,tcp:80,10.99.0.0/24', comment: networkTag(GHOST_NET) })
  addEntry(host, { set: 'tsnet-src4', entry: '172.18.0.0/16,tsbr-renamed', comment: networkTag(NET) }) // a known tag on a bridge the network no longer has
  addEntry(host, { set: 'tsnet-allow4', entry: '172.18.0.2,tcp:22,10.0.0.0/8', comment: networkTag(NET) }) // NET has no policy
  host.portRules.add(GHOST_DNAT)
  host.portRules.add(`4 ${dnatRule(EP, { family: 4, proto: 'tcp', hostIp: '', hostPort: 8081, containerIp: '172.18.0.2', containerPort: 80 })}`) // EP published nothing
  t.equal(host.sets.size, 13, 'precondition: five extra entries')
  await svc.restoreHost(log)
  t.equal(host.state(), known, 'exactly the unexplained entries and rules went')
})

t.test('a stored network whose bridge name is held by an orphan tsnet link gets it back', async (t) => {
  const host = new FakeHost()
  host.links.set('mybr0', link('mybr0', networkAlias(GHOST_NET), { kind: 'bridge', mtu: 9000, addresses: ['10.99.0.1/24'] }))
  const { svc } = await setup(t, host)
  await svc.restoreHost(log)
  t.same(host.links.get('mybr0'), {
    name: 'mybr0', kind: 'bridge', alias: networkAlias(NET2), mtu: 1500, mac: macFromSeed(NET2), up: true, addresses: ['10.1.0.1/24', 'fd00:1::1/64'],
  }, 'the orphan went first; the bridge is NET2\'s, without the orphan\'s address')
})

t.test('a bridge that cannot be restored is logged, and the other networks are still restored', async (t) => {
  const host = new FakeHost()
  const { svc, networksOnly } = await setup(t, host)
  const { logger, entries } = captureLog()
  host.failNext.add('ensureBridge') // the first bridge of the batch
  await svc.restoreHost(logger)
  const errors = entries.filter((e) => e.level === ERROR_LEVEL)
  t.equal(errors.length, 1, 'one error logged')
  const bridges = new Map([[bridgeNameFor(NET), NET], ['mybr0', NET2], [bridgeNameFor(NET3), NET3]])
  const failed = errors[0]?.bridge as string
  t.ok(bridges.has(failed), `naming the bridge (${failed})`)
  t.match(errors[0], { err: { message: /injected failure in ensureBridge/ } }, 'and the cause')
  t.match(entries.find((e) => e.msg === 'boot reconcile done'), { networks: 3, failed: 1 }, 'the summary counts the failure')
  for (const [bridge, id] of bridges) {
    if (bridge === failed) continue
    t.ok(host.links.has(bridge), `${bridge} restored`)
    t.equal(host.groups.get(bridge), GROUP.base, `${bridge} carries the device group`)
    t.same(entriesOf(host, id), WANT_ENTRIES[id], `${bridge}'s entries restored`)
  }
  t.notOk(host.links.has(failed), 'the failed bridge is not there')
  t.same(entriesOf(host, bridges.get(failed) as string), [], 'and its network has no entries yet (no source may claim a bridge that is not there)')
  t.equal(host.edge, true, "tsnet's chains are in place")
  await svc.restoreHost(log)
  t.equal(host.state(), networksOnly, 'the next restore completes it')
})

t.test('failing to list links, set up the chains or prune entries and rules does not stop the networks\' restore', async (t) => {
  // Each of these is one step for every network at once: its failure is one error, and the rest goes on.
  for (const op of ['listOwnedLinks', 'deleteOwnedLink', 'ensureEdge', 'setSysctl', 'syncSetEntries', 'removePortRules', 'addPortRules'] as const) {
    await t.test(op, async (t) => {
      const host = new FakeHost()
      host.links.set('tsvghost', link('tsvghost', endpointAlias(GHOST_EP)))
      addEntry(host, { set: 'tsnet-src4', entry: '10.99.0.0/24,tsbr-ghost', comment: networkTag(GHOST_NET) })
      host.portRules.add(GHOST_DNAT)
      const { svc, networksOnly } = await setup(t, host)
      const { logger, entries } = captureLog()
      host.failNext.add(op)
      await svc.restoreHost(logger)
      const errors = entries.filter((e) => e.level === ERROR_LEVEL)
      t.equal(errors.length, 1, 'one error logged')
      t.match(errors[0], { err: { message: new RegExp(`injected failure in ${op}`) } }, 'with its cause')
      t.match(entries.find((e) => e.msg === 'boot reconcile done'), { failed: 1 })
      for (const bridge of [bridgeNameFor(NET), 'mybr0', bridgeNameFor(NET3)]) t.ok(host.links.has(bridge), `${bridge} restored`)
      for (const id of [NET, NET2, NET3]) t.same(entriesOf(host, id), op === 'syncSetEntries' ? [] : WANT_ENTRIES[id], `${id.slice(0, 2)}: entries ${op === 'syncSetEntries' ? 'not restored yet' : 'restored'}`)
      t.equal(host.edge, op !== 'ensureEdge', `tsnet's chains are ${op === 'ensureEdge' ? 'not there yet' : 'in place'}`)
      await svc.restoreHost(log)
      t.equal(host.state(), networksOnly, 'the next restore removes the orphans too')
    })
  }
})

t.test('restoreHost twice is idempotent', async (t) => {
  const host = new FakeHost()
  host.links.set('tsbr-ghost', link('tsbr-ghost', networkAlias(GHOST_NET), { kind: 'bridge' }))
  host.links.set('eth0', link('eth0', undefined, { kind: 'device' }))
  addEntry(host, { set: 'tsnet-src4', entry: '10.99.0.0/24,tsbr-ghost', comment: networkTag(GHOST_NET) })
  host.portRules.add(GHOST_DNAT)
  const { svc } = await setup(t, host)
  await svc.restoreHost(log)
  const once = host.state()
  const calls = host.calls.length
  await svc.restoreHost(log)
  t.equal(host.state(), once, 'FakeHost.state() equal')
  t.notOk(host.calls.slice(calls).includes('deleteOwnedLink'), 'nothing to delete the second time')
  t.notOk([...host.sets.values()].some((e) => e.comment === networkTag(GHOST_NET)), 'the ghost entry went the first time')
  t.notOk(host.portRules.has(GHOST_DNAT), 'the ghost DNAT rule too')

  await t.test('also on the host the networks were made on (with endpoints)', async (t) => {
    const { svc, first } = await setup(t)
    const made = first.state()
    await svc.restoreHost(log)
    t.equal(first.state(), made)
    await svc.restoreHost(log)
    t.equal(first.state(), made)
  })
})

t.test('restoreHost with an empty store removes every tsnet-tagged link, entry, rule and chain, nothing else', async (t) => {
  const dir = await tempDir(t)
  const host = new FakeHost()
  host.links.set('tsbr-ghost', link('tsbr-ghost', networkAlias(GHOST_NET), { kind: 'bridge' }))
  host.groups.set('tsbr-ghost', GROUP.base)
  host.links.set('eth0', link('eth0', undefined, { kind: 'device' }))
  addEntry(host, { set: 'tsnet-src4', entry: '10.99.0.0/24,tsbr-ghost', comment: networkTag(GHOST_NET) })
  addEntry(host, { set: 'tsnet-foreign4', entry: '172.17.0.0/16', comment: 'tsnet:docker' })
  host.portRules.add(GHOST_DNAT)
  host.edge = true
  const svc = new NetworkService(await FileStore.open(dir), host, {})
  await svc.load()
  await svc.restoreHost(log)
  t.same([...host.links.keys()], ['eth0'])
  t.same([...host.groups.keys()], [], 'no device group of a deleted bridge')
  t.same([...host.sets.keys()], [], 'no ipset entry')
  t.same([...host.portRules], [], 'no DNAT rule')
  t.equal(host.edge, false, "tsnet's chains are gone")
})
