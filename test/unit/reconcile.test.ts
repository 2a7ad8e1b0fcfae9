// NetworkService.restoreHost (boot reconcile) over FakeHost and a FileStore in a temporary directory.
import t, { type Test } from 'tap'
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

const link = (name: string, alias: string | undefined, more: Partial<FakeLink> = {}): FakeLink =>
  ({ name, kind: 'veth', ...(alias !== undefined ? { alias } : {}), mtu: 1500, up: true, addresses: [], ...more })

t.test('after a reboot, every stored network gets its bridge and rule back', async (t) => {
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
  t.same([...host.rules].sort(), [
    `${networkTag(NET)} ${bridgeNameFor(NET)}`, `${networkTag(NET2)} mybr0`, `${networkTag(NET3)} ${bridgeNameFor(NET3)}`,
  ].sort())
  t.equal(host.state(), networksOnly, 'the same as the networks were made (endpoint veths are not part of the restore)')
})

t.test('a bridge or a rule that vanished from a running host is put back; the rest is left', async (t) => {
  const { first, open } = await setup(t)
  const full = first.state()
  first.links.delete('mybr0')
  first.rules.delete(`${networkTag(NET3)} ${bridgeNameFor(NET3)}`)
  const bridge = first.links.get(bridgeNameFor(NET))
  if (bridge) bridge.addresses = []
  const svc = await open(first)
  await svc.restoreHost(log)
  t.equal(first.state(), full, 'bridge, rule and gateway address are back; the endpoint veth is kept')
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

t.test('rules of unknown tags are pruned, known ones kept', async (t) => {
  const { first: host, open } = await setup(t)
  const svc = await open(host) // a restart on the same host
  const known = [...host.rules].sort()
  host.rules.add(`${networkTag(GHOST_NET)} tsbr-ghost`)
  host.rules.add(`${networkTag(NET)} tsbr-renamed`) // a known tag on a bridge the network no longer has
  await svc.restoreHost(log)
  t.same([...host.rules].sort(), known)
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

t.test('a failing host call for one network is logged and the others are still restored', async (t) => {
  for (const op of ['ensureBridge', 'allowIntraBridge'] as const) {
    await t.test(op, async (t) => {
      const { svc, host, networksOnly } = await setup(t)
      const { logger, entries } = captureLog()
      host.failNext.add(op)
      await svc.restoreHost(logger)
      const errors = entries.filter((e) => e.level === ERROR_LEVEL)
      t.equal(errors.length, 1, 'one error logged')
      const failed = errors[0]?.network
      t.ok([NET, NET2, NET3].includes(failed as string), 'naming the network')
      t.match(errors[0], { err: { message: new RegExp(`injected failure in ${op}`) } }, 'and the cause')
      const done = entries.find((e) => e.msg === 'boot reconcile done')
      t.match(done, { networks: 3, failed: 1 }, 'the summary counts the failure')
      const bridges = new Map([[NET, bridgeNameFor(NET)], [NET2, 'mybr0'], [NET3, bridgeNameFor(NET3)]])
      for (const [id, bridge] of bridges) {
        if (id === failed) continue
        t.ok(host.links.has(bridge), `${bridge} restored`)
        t.ok(host.rules.has(`${networkTag(id)} ${bridge}`), `${bridge}'s rule restored`)
      }
      const failedBridge = bridges.get(failed as string) ?? ''
      t.notOk(host.rules.has(`${networkTag(failed as string)} ${failedBridge}`), 'the failed network has no rule yet')
      await svc.restoreHost(log)
      t.equal(host.state(), networksOnly, 'the next restore completes it')
    })
  }
})

t.test('failing to list links or prune rules does not stop the networks\' restore', async (t) => {
  for (const op of ['listOwnedLinks', 'pruneIntraBridge', 'deleteOwnedLink'] as const) {
    await t.test(op, async (t) => {
      const host = new FakeHost()
      host.links.set('tsvghost', link('tsvghost', endpointAlias(GHOST_EP)))
      const { svc, networksOnly } = await setup(t, host)
      const { logger, entries } = captureLog()
      host.failNext.add(op)
      await svc.restoreHost(logger)
      t.equal(entries.filter((e) => e.level === ERROR_LEVEL).length, 1, 'one error logged')
      t.match(entries.find((e) => e.msg === 'boot reconcile done'), { failed: 1 })
      for (const bridge of [bridgeNameFor(NET), 'mybr0', bridgeNameFor(NET3)]) t.ok(host.links.has(bridge), `${bridge} restored`)
      t.equal(host.rules.size, 3)
      await svc.restoreHost(log)
      t.equal(host.state(), networksOnly, 'the next restore removes the orphan too')
    })
  }
})

t.test('restoreHost twice is idempotent', async (t) => {
  const host = new FakeHost()
  host.links.set('tsbr-ghost', link('tsbr-ghost', networkAlias(GHOST_NET), { kind: 'bridge' }))
  host.links.set('eth0', link('eth0', undefined, { kind: 'device' }))
  host.rules.add(`${networkTag(GHOST_NET)} tsbr-ghost`)
  const { svc } = await setup(t, host)
  await svc.restoreHost(log)
  const once = host.state()
  const calls = host.calls.length
  await svc.restoreHost(log)
  t.equal(host.state(), once, 'FakeHost.state() equal')
  t.notOk(host.calls.slice(calls).includes('deleteOwnedLink'), 'nothing to delete the second time')

  await t.test('also on the host the networks were made on (with endpoints)', async (t) => {
    const { svc, first } = await setup(t)
    const made = first.state()
    await svc.restoreHost(log)
    t.equal(first.state(), made)
    await svc.restoreHost(log)
    t.equal(first.state(), made)
  })
})

t.test('restoreHost with an empty store removes every tsnet-tagged link and rule, nothing else', async (t) => {
  const dir = await tempDir(t)
  const host = new FakeHost()
  host.links.set('tsbr-ghost', link('tsbr-ghost', networkAlias(GHOST_NET), { kind: 'bridge' }))
  host.links.set('eth0', link('eth0', undefined, { kind: 'device' }))
  host.rules.add(`${networkTag(GHOST_NET)} tsbr-ghost`)
  const svc = new NetworkService(await FileStore.open(dir), host, {})
  await svc.load()
  await svc.restoreHost(log)
  t.same([...host.links.keys()], ['eth0'])
  t.same([...host.rules], [])
})
