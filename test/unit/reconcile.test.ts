// The reconcile (engine/reconciler over engine.reconcile) as serve runs it: at boot, after a reboot
// or a restart, and periodically to repair drift; over FakeHost and a FileStore.
import t, { type Test } from 'tap'
import { GROUP, dnatRule } from '../../src/core/edge-plan.js'
import { COMMON_OPTION } from '../../src/core/docker-keys.js'
import { bridgeNameFor, endpointAlias, hostVethFor, macFromSeed, networkAlias, networkTag } from '../../src/core/names.js'
import type { LinkObject } from '../../src/core/objects.js'
import { FakeHost } from '../../src/host/fake-host.js'
import { BRIDGE_OPTION } from '../../src/modes/bridge.js'
import { TestHost, entriesOf, epReq, netReq, openUnit, plant, remove } from './fixtures/services.js'
import { captureLog, ERROR_LEVEL } from './fixtures/gc-fakes.js'
import { dockerId, log } from './fixtures/util.js'

const NET = dockerId('0a')
const NET2 = dockerId('0b')
const NET3 = dockerId('0c')
const EP = dockerId('e1')
const EP2 = dockerId('e2')
const GHOST_NET = dockerId('dd')
const GHOST_EP = dockerId('de')
const SANDBOX = '/var/run/docker/netns/0123456789ab'

/**
 * Three networks made on a first host: NET (MTU 1400, one joined endpoint), NET2 (dual stack,
 * user bridge name), NET3 (plain). Returns a boot on the same store over `host` (a fresh one by
 * default: a reboot), and the first host's state with the networks only.
 */
async function setup(t: Test, host = new TestHost(), logger = log) {
  const first = await openUnit(t)
  const { driver } = first.services
  await driver.createNetwork(netReq(NET, '172.18.0.0/16', '172.18.0.1/16', { [COMMON_OPTION.mtu]: '1400' }), log)
  await driver.createNetwork(netReq(NET2, '10.1.0.0/24', '10.1.0.1/24', { [BRIDGE_OPTION.bridgeName]: 'mybr0' }, {}, { pool: 'fd00:1::/64', gw: 'fd00:1::1/64' }), log)
  await driver.createNetwork(netReq(NET3, '10.2.0.0/24', '10.2.0.1/24'), log)
  const networksOnly = first.host.state()
  await driver.createEndpoint(epReq(NET, EP), log)
  await driver.join({ NetworkID: NET, EndpointID: EP, SandboxKey: SANDBOX }, log)
  first.services.reconciler.stop()
  /** tsnet starts on the first unit's state over `h` (booting, as serve does). */
  const open = (h: TestHost, l = logger) => openUnit(t, { dir: first.dir, host: h, logger: l })
  return { first, networksOnly, open, again: host === first.host ? undefined : await open(host) }
}

/** What each network of setup() puts in the ipsets. */
const WANT_ENTRIES: Record<string, string[]> = {
  [NET]: ['tsnet-masq4 172.18.0.0/16', `tsnet-src4 172.18.0.0/16,${bridgeNameFor(NET)}`],
  [NET2]: ['tsnet-masq4 10.1.0.0/24', 'tsnet-masq6 fd00:1::/64', 'tsnet-src4 10.1.0.0/24,mybr0', 'tsnet-src6 fd00:1::/64,mybr0'],
  [NET3]: ['tsnet-masq4 10.2.0.0/24', `tsnet-src4 10.2.0.0/24,${bridgeNameFor(NET3)}`],
}
const BRIDGES: Record<string, string> = { [NET]: bridgeNameFor(NET), [NET2]: 'mybr0', [NET3]: bridgeNameFor(NET3) }
/** A DNAT rule of an endpoint no record knows. */
const GHOST_DNAT = { kind: 'dnat' as const, family: 4 as const, rule: dnatRule(GHOST_EP, { family: 4, proto: 'tcp', hostIp: '', hostPort: 8080, containerIp: '10.99.0.2', containerPort: 80 }) }
const link = (name: string, alias: string, more: Partial<LinkObject> = {}): LinkObject =>
  ({ kind: 'link', name, type: 'veth', alias, mtu: 1500, up: true, recreate: true, ...more })

t.test('after a reboot, every stored network gets its bridge, group, entries and chains back; joined veths are Docker\'s to make', async (t) => {
  const host = new TestHost()
  const { again, networksOnly } = await setup(t, host)
  const bridge = host.links.get(bridgeNameFor(NET))
  t.match(bridge, { name: bridgeNameFor(NET), type: 'bridge', alias: networkAlias(NET), mtu: 1400, mac: macFromSeed(NET), up: true, addresses: ['172.18.0.1/16'] }, 'NET: its MTU, MAC and gateway address')
  t.match(host.links.get('mybr0'), { name: 'mybr0', type: 'bridge', alias: networkAlias(NET2), mtu: 1500, mac: macFromSeed(NET2), up: true }, 'NET2: the user\'s bridge name')
  t.same(host.links.get('mybr0')?.addresses.sort(), ['10.1.0.1/24', 'fd00:1::1/64'], 'both gateways')
  t.match(host.links.get(bridgeNameFor(NET3)), { alias: networkAlias(NET3), mtu: 1500, addresses: ['10.2.0.1/24'] })
  for (const id of [NET, NET2, NET3]) t.same(entriesOf(host, id), WANT_ENTRIES[id], `${id.slice(0, 2)}: its ipset entries`)
  t.equal(host.sets.size, 8, 'no other entry')
  t.same([...host.groups.entries()].sort(), [['mybr0', GROUP.base], [bridgeNameFor(NET), GROUP.base], [bridgeNameFor(NET3), GROUP.base]], 'each bridge carries the device group')
  t.equal(host.edge, true, "tsnet's chains are in place")
  t.equal(host.sysctls.get('net/ipv4/ip_forward'), '1', 'forwarding is on again')
  t.equal(host.sysctls.get('net/ipv6/conf/all/forwarding'), '1', 'IPv6 forwarding too (NET2 is dual stack)')
  t.equal(host.state(), networksOnly, 'the same as the networks were made: the joined endpoint\'s veth went with its container')
  const report = await again?.dryRun()
  t.same(report?.changes, [], 'a reconcile right after the boot plans nothing')
  t.same(report?.missing, [`link ${hostVethFor(EP)}`], 'and reports the veth only Docker can make again')
  t.match(again?.services.reconciler.last, { kind: 'boot', report: { failed: [] } }, 'the boot pass is recorded for status')
})

t.test('the periodic reconcile repairs drift: a deleted bridge, a lost address, set member or DNAT rule, tsnet\'s chains gone', async (t) => {
  const u = await openUnit(t)
  const { driver } = u.services
  await driver.createNetwork(netReq(NET), log)
  await driver.createNetwork(netReq(NET2, '10.1.0.0/24', '10.1.0.1/24', { [BRIDGE_OPTION.bridgeName]: 'mybr0' }), log)
  await driver.createEndpoint(epReq(NET, EP, '172.18.0.2/16', '', '', [{ Proto: 6, Port: 80, HostPort: 8080, HostPortEnd: 8080 }]), log)
  await driver.join({ NetworkID: NET, EndpointID: EP, SandboxKey: SANDBOX }, log)
  await u.services.ports.program({ NetworkID: NET, EndpointID: EP, Options: { 'com.docker.network.portmap': [{ Proto: 6, Port: 80, HostPort: 8080, HostPortEnd: 8080 }] } }, log)
  const full = u.host.state()
  const dnat = u.host.ofKind('dnat')[0]
  const { logger, entries } = captureLog()
  const again = await u.restart({ logger })
  const cases: Array<[string, () => void]> = [
    ['a deleted bridge', () => remove(u.host, 'link mybr0')],
    ['a lost gateway address', () => remove(u.host, `addr ${bridgeNameFor(NET)} 172.18.0.1/16`)],
    ['a lost set member', () => remove(u.host, 'set tsnet-masq4 172.18.0.0/16')],
    ['a lost DNAT rule', () => remove(u.host, `dnat 4 ${dnat?.rule}`)],
    ['tsnet\'s chains flushed by a firewall reload', () => plant(u.host, { kind: 'chains', intact: false })],
    ['tsnet\'s chains gone', () => remove(u.host, 'chains')],
  ]
  for (const [what, drift] of cases) {
    drift()
    t.not(u.host.state(), full, `precondition: ${what}`)
    const dry = await again.dryRun()
    t.ok(dry.changes.length > 0, `the dry run sees it (${dry.changes.join('; ')})`)
    t.not(u.host.state(), full, 'and changes nothing')
    entries.length = 0
    await again.services.reconciler.pass('periodic')
    t.equal(u.host.state(), full, `${what}: repaired`)
    t.match(entries.find((e) => e.msg === 'reconcile repaired drift on the host'), { reconcile: 'periodic', repaired: dry.changes }, 'and each repair is logged')
    t.same((await again.dryRun()).changes, [], 'nothing is left to do')
  }
  const before = u.host.applied.length
  await again.services.reconciler.pass('periodic')
  t.equal(u.host.applied.length, before, 'a pass over a host in line applies nothing')
})

t.test('a reconcile never touches a link, set member or setting that is not tsnet\'s', async (t) => {
  const { first, networksOnly: _n, open } = await setup(t)
  const host = first.host
  const known = host.state()
  const foreign = [
    link('eth0', ''),
    link('docker0', 'docker bridge', { type: 'bridge' }),
    link('tsnetish0', 'tsnet-not-ours', { type: 'bridge' }),
    link('vethabc', `x${endpointAlias(GHOST_EP)}`),
    link('mybr1', '', { type: 'bridge' }),
  ]
  for (const l of foreign) plant(host, l)
  plant(host, { kind: 'addr', link: 'eth0', cidr: '192.0.2.5/24' })
  plant(host, { kind: 'setEntry', set: 'tsnet-src4', entry: '10.250.0.0/24,eth0', comment: 'someone else' })
  plant(host, { kind: 'sysctl', path: 'net/ipv4/conf/eth0/route_localnet', value: '1' })
  const withForeign = host.state()
  const again = await open(host)
  await again.services.reconciler.pass('periodic')
  t.equal(host.state(), withForeign, 'untouched by the boot pass and a periodic one')
  t.equal(host.sysctls.get('net/ipv4/conf/eth0/route_localnet'), '1', 'a setting tsnet never set stays as it is')
  t.same((await again.dryRun()).changes, [], 'nothing is planned for them either')
  for (const l of foreign) remove(host, `link ${l.name}`)
  remove(host, 'set tsnet-src4 10.250.0.0/24,eth0')
  t.equal(host.state(), known)
})

t.test('links tagged for unknown records are deleted, endpoints before networks; the rest is kept', async (t) => {
  const { first, open } = await setup(t)
  const host = first.host
  const known = host.state()
  plant(host, link('tsbr-ghost', networkAlias(GHOST_NET), { type: 'bridge' }))
  plant(host, { kind: 'addr', link: 'tsbr-ghost', cidr: '10.99.0.1/24' })
  plant(host, link('tsvghost', endpointAlias(GHOST_EP), { master: 'tsbr-ghost', veth: { peer: 'tscghost', peerMac: '02:42:0a:63:00:02' } }))
  // an orphan veth on a kept bridge, one whose alias names a known network's ID as an endpoint, one tagged on another bridge
  plant(host, link('tsvorphan', endpointAlias(EP2), { master: bridgeNameFor(NET), veth: { peer: 'tscorphan', peerMac: '02:42:0a:63:00:03' } }))
  plant(host, link('tsvmixed', endpointAlias(NET)))
  plant(host, link('tsbr-ghost2', networkAlias(dockerId('d2')), { type: 'bridge' }))
  plant(host, link('tsvghost2', endpointAlias(dockerId('d3'))))
  plant(host, link('tsbr-untagged', '', { type: 'bridge' })) // a crash between making a link and tagging it
  const again = await open(host)
  for (const name of ['tsbr-ghost', 'tsvghost', 'tscghost', 'tsvorphan', 'tscorphan', 'tsvmixed', 'tsbr-ghost2', 'tsvghost2', 'tsbr-untagged']) t.notOk(host.links.has(name), `${name} deleted`)
  t.ok(host.links.has(hostVethFor(EP)), 'the known endpoint\'s veth is kept')
  t.ok(host.links.has(bridgeNameFor(NET)), 'the bridge the orphan sat on is kept')
  t.equal(host.state(), known, 'exactly the unknown tsnet links went (and the ghost\'s address with its bridge)')
  const deletes = host.applied.filter((c) => c.startsWith('delete link '))
  const firstBridge = deletes.findIndex((c) => c.startsWith('delete link tsbr-'))
  t.ok(firstBridge > 0 && deletes.slice(firstBridge).every((c) => c.startsWith('delete link tsbr-')), `orphan endpoints go before orphan networks (${deletes.join(', ')})`)
  t.same((await again.dryRun()).changes, [])
})

t.test('entries and DNAT rules no record explains are pruned, known ones kept', async (t) => {
  const { first, open } = await setup(t)
  const host = first.host
  const known = host.state()
  const entry = (set: string, e: string, comment: string) => plant(host, { kind: 'setEntry', set, entry: e, comment })
  entry('tsnet-src4', '10.99.0.0/24,tsbr-ghost', networkTag(GHOST_NET))
  entry('tsnet-masq4', '10.99.0.0/24', networkTag(GHOST_NET))
  entry('tsnet-allow4', '10.2.0.9,tcp:80,10.99.0.0/24', networkTag(GHOST_NET))
  entry('tsnet-src4', '172.18.0.0/16,tsbr-renamed', networkTag(NET)) // a known tag on a bridge the network no longer has
  entry('tsnet-allow4', '172.18.0.2,tcp:22,10.0.0.0/8', networkTag(NET)) // NET has no policy
  entry('tsnet-foreign4', '172.17.0.0/16', 'tsnet:docker') // Docker's names are unknown: no network of Docker's to keep apart
  plant(host, GHOST_DNAT)
  plant(host, { kind: 'dnat', family: 4, rule: dnatRule(EP, { family: 4, proto: 'tcp', hostIp: '', hostPort: 8081, containerIp: '172.18.0.2', containerPort: 80 }) }) // EP published nothing
  plant(host, { kind: 'portHold', proto: 'tcp', port: 8081, bindings: [{ family: 4, address: '0.0.0.0' }] })
  t.equal(host.sets.size, 14, 'precondition: six extra entries')
  await open(host)
  t.equal(host.state(), known, 'exactly the unexplained entries, rules and holds went')
})

t.test('a stored network whose bridge name is held by an orphan tsnet link gets it back', async (t) => {
  const host = new TestHost()
  plant(host, link('mybr0', networkAlias(GHOST_NET), { type: 'bridge', mtu: 9000 }))
  plant(host, { kind: 'addr', link: 'mybr0', cidr: '10.99.0.1/24' })
  const { again } = await setup(t, host)
  t.match(host.links.get('mybr0'), { name: 'mybr0', type: 'bridge', alias: networkAlias(NET2), mtu: 1500, mac: macFromSeed(NET2), up: true, group: GROUP.base }, 'the bridge is NET2\'s now')
  t.same(host.links.get('mybr0')?.addresses.sort(), ['10.1.0.1/24', 'fd00:1::1/64'], 'without the orphan\'s address')
  t.same((await again?.dryRun())?.foreign, [], 'nothing is reported as held by another owner')
})

t.test('a bridge that cannot be restored is logged with its cause; the other networks are still restored', async (t) => {
  const host = new TestHost()
  host.failKeys.add('link mybr0')
  const { logger, entries } = captureLog()
  const { networksOnly, again } = await setup(t, host, logger)
  const errors = entries.filter((e) => e.level === ERROR_LEVEL)
  t.equal(errors.length, 1, 'one error logged')
  t.match(errors[0], { msg: 'reconcile could not fix some objects', failedChanges: [{ change: 'create link mybr0', error: /injected failure in create link mybr0/ }] }, 'naming the bridge and the cause')
  t.ok((errors[0]?.failedChanges as Array<{ change: string; error: string }>).filter((f) => f.change.startsWith('create addr mybr0')).every((f) => /skipped/.test(f.error)), 'what sits on it is skipped, not tried')
  t.match(entries.find((e) => e.msg === 'boot reconcile done'), { reconcile: 'boot', failed: (errors[0]?.failedChanges as unknown[]).length }, 'the summary counts the failures')
  for (const id of [NET, NET3]) {
    const bridge = BRIDGES[id] as string
    t.ok(host.links.has(bridge), `${bridge} restored`)
    t.equal(host.groups.get(bridge), GROUP.base, `${bridge} carries the device group`)
    t.same(entriesOf(host, id), WANT_ENTRIES[id], `${bridge}'s entries restored`)
  }
  t.notOk(host.links.has('mybr0'), 'the failed bridge is not there')
  t.equal(host.edge, true, "tsnet's chains are in place")
  host.failKeys.clear()
  await again?.services.reconciler.pass('periodic')
  t.equal(host.state(), networksOnly, 'the next pass completes it')
})

t.test('a failure of one change does not stop the others; a batch that failed once is retried change by change', async (t) => {
  for (const op of ['link:delete', 'chains:create', 'sysctl', 'setEntry:create', 'setEntry:delete', 'dnat:delete', 'link:create', 'addr:create'] as const) {
    await t.test(op, async (t) => {
      const host = new TestHost()
      plant(host, link('tsvghost', endpointAlias(GHOST_EP)))
      plant(host, { kind: 'setEntry', set: 'tsnet-src4', entry: '10.99.0.0/24,tsbr-ghost', comment: networkTag(GHOST_NET) })
      plant(host, GHOST_DNAT)
      host.failNext.add(op)
      const { logger, entries } = captureLog()
      const { networksOnly, again } = await setup(t, host, logger)
      t.notOk(host.failNext.has(op), 'the failure was injected')
      const failed = entries.filter((e) => e.level === ERROR_LEVEL).flatMap((e) => (e.failedChanges as Array<{ change: string }> | undefined) ?? [])
      const single = op === 'link:delete' || op === 'chains:create' || op === 'setEntry:delete' || op === 'dnat:delete'
      if (single) t.equal(failed.length, 1, `the one ${op} change failed and is logged: ${failed.map((f) => f.change).join('; ')}`)
      else t.same(failed, [], 'the batch was retried change by change, and each then worked')
      for (const id of [NET, NET2, NET3]) t.ok(host.links.has(BRIDGES[id] as string), `${BRIDGES[id]} restored`)
      for (const id of [NET, NET2, NET3]) t.same(entriesOf(host, id), WANT_ENTRIES[id], `${id.slice(0, 2)}: entries restored`)
      t.equal(host.edge, op !== 'chains:create', `tsnet's chains are ${op === 'chains:create' ? 'not there yet' : 'in place'}`)
      await again?.services.reconciler.pass('periodic')
      t.equal(host.state(), networksOnly, 'the next pass leaves the host as the records want it')
    })
  }
})

t.test('a host that cannot be read fails the pass; the next one does the work', async (t) => {
  const { first, networksOnly } = await setup(t)
  const host = new TestHost()
  host.failNext.add('observe')
  const u = await openUnit(t, { dir: first.dir, host, boot: false })
  await t.rejects(u.services.reconciler.boot(), { message: /injected failure in observe/ }, 'the boot pass fails as a whole')
  t.equal(host.state(), new FakeHost().state(), 'having changed nothing')
  await u.services.reconciler.pass('periodic')
  t.equal(host.state(), networksOnly, 'the periodic pass restores everything')
})

t.test('a reconcile twice is idempotent', async (t) => {
  const host = new TestHost()
  plant(host, link('tsbr-ghost', networkAlias(GHOST_NET), { type: 'bridge' }))
  plant(host, link('eth0', ''))
  plant(host, { kind: 'setEntry', set: 'tsnet-src4', entry: '10.99.0.0/24,tsbr-ghost', comment: networkTag(GHOST_NET) })
  plant(host, GHOST_DNAT)
  const { again } = await setup(t, host)
  const once = host.state()
  const calls = host.calls.length
  await again?.services.reconciler.pass('periodic')
  t.equal(host.state(), once, 'FakeHost.state() equal')
  t.same(host.changesSince(calls), [], 'nothing applied the second time')
  t.notOk(host.links.has('tsbr-ghost'), 'the ghost went the first time')
  t.ok(host.links.has('eth0'), 'the foreign link stays')

  await t.test('also on the host the networks were made on (with endpoints)', async (t) => {
    const { first, open } = await setup(t)
    const made = first.host.state()
    const u = await open(first.host)
    t.equal(first.host.state(), made)
    await u.services.reconciler.pass('periodic')
    t.equal(first.host.state(), made)
  })
})

t.test('a boot with an empty store removes every tsnet-tagged link, entry, rule and chain, nothing else', async (t) => {
  const host = new TestHost()
  plant(host, link('tsbr-ghost', networkAlias(GHOST_NET), { type: 'bridge', group: GROUP.base }))
  plant(host, link('eth0', ''))
  plant(host, { kind: 'setEntry', set: 'tsnet-src4', entry: '10.99.0.0/24,tsbr-ghost', comment: networkTag(GHOST_NET) })
  plant(host, { kind: 'setEntry', set: 'tsnet-foreign4', entry: '172.17.0.0/16', comment: 'tsnet:docker' })
  plant(host, GHOST_DNAT)
  plant(host, { kind: 'chains', intact: true })
  await openUnit(t, { host })
  t.same([...host.links.keys()], ['eth0'])
  t.same([...host.groups.keys()], [], 'no device group of a deleted bridge')
  t.same([...host.sets.keys()], [], 'no ipset entry')
  t.same([...host.portRules], [], 'no DNAT rule')
  t.equal(host.edge, false, "tsnet's chains are gone")
})
