// Overlay mode through the services, over a FakeHost and a real FileStore: what Swarm sends
// (AllocateNetwork on the leader, DiscoverNew/Delete, CreateNetwork with the leader's options,
// endpoints, Join) and what lands on the host; persistence across a restart; refusals.
import t, { type Test } from 'tap'
import type { Logger } from 'pino'
import { parseDefaultPools, DOCKER_DEFAULT_POOLS_TEXT } from '../../src/core/ipam.js'
import { keyOf } from '../../src/core/objects.js'
import type { Config } from '../../src/config.js'
import { FakeHost } from '../../src/host/fake-host.js'
import { openServices, type Services } from '../../src/main.js'
import { FLOOD_MAC } from '../../src/modes/overlay.js'
import type { Announcer } from '../../src/host/vxlan-announcer.js'
import { log, tempDir } from './fixtures/util.js'

const NET = 'q1w2e3r4t5y6u7i8o9p0asdfg'
const EP = 'ab'.repeat(32)
const L: Logger = log

class Recorder implements Announcer {
  readonly sent: Array<{ local: string; peers: readonly string[]; port: number; payload: Buffer }> = []
  async send(local: string, peers: readonly string[], port: number, payload: Buffer) {
    this.sent.push({ local, peers, port, payload })
  }
}

function config(dir: string, scope: 'local' | 'global' = 'global'): Config {
  return {
    socket: `${dir}/tsnet.sock`, stateDir: dir, logLevel: 'silent', defaultPools: parseDefaultPools(DOCKER_DEFAULT_POOLS_TEXT),
    gcIntervalSec: 0, procSys: '/proc/sys', reconcileIntervalSec: 0, scope, vniRange: { first: 256, last: 4095 }, vxlanPort: 4789,
  }
}

async function open(dir: string, host: FakeHost, scope: 'local' | 'global' = 'global', announcer = new Recorder()) {
  const s = await openServices(config(dir, scope), host, L, undefined, { announcer })
  await s.reconciler.boot()
  return { s, announcer }
}

const discover = (s: Services, address: string, self = false, added = true) =>
  (added ? s.swarm.discoverNew : s.swarm.discoverDelete).call(s.swarm, { DiscoveryType: 1, DiscoveryData: { Address: address, BindAddress: self ? address : '', Self: self } }, L)

const createNet = (s: Services, options: Record<string, string>, ipv4 = [{ Pool: '10.210.0.0/24', Gateway: '10.210.0.1/24' }]) =>
  s.driver.createNetwork({ NetworkID: NET, Options: { 'com.docker.network.generic': options }, IPv4Data: ipv4, IPv6Data: [] }, L)

async function dry(t: Test, s: Services, when: string) {
  const r = await s.reconciler.pass('event', true)
  t.same(r.changes, [], `a reconcile after ${when} plans nothing`)
}

function fresh(): FakeHost {
  const host = new FakeHost()
  host.underlays.set('10.250.0.1', { link: 'eth0', mtu: 1500 })
  return host
}

t.test('AllocateNetwork on the leader: a VNI from the range, idempotent, replay-aware, freed', async (t) => {
  const { s } = await open(await tempDir(t), fresh())
  const a = await s.vnis.allocate({ NetworkID: NET, Options: {}, IPv4Data: [{ Pool: '10.210.0.0/24', Gateway: '10.210.0.1/24' }] }, L)
  t.same(a, { Options: { 'tsnet.mode': 'overlay', 'tsnet.vni': '256', 'tsnet.vxlan-port': '4789' } })
  t.same(await s.vnis.allocate({ NetworkID: NET, Options: {} }, L), a, 'a retry gets the same answer')
  const other = await s.vnis.allocate({ NetworkID: 'x'.repeat(25), Options: { 'tsnet.vni': '300' } }, L)
  t.equal(other.Options['tsnet.vni'], '300', 'a VNI already in the options (Swarm replaying after a leader change) is kept')
  t.equal((await s.vnis.allocate({ NetworkID: 'y'.repeat(25), Options: {} }, L)).Options['tsnet.vni'], '257')
  await s.vnis.free({ NetworkID: NET }, L)
  t.equal((await s.vnis.allocate({ NetworkID: 'z'.repeat(25), Options: {} }, L)).Options['tsnet.vni'], '256', 'freed, it is given again')
  await t.rejects(s.vnis.allocate({ NetworkID: 'w'.repeat(25), Options: { 'tsnet.mode': 'bridge' } }, L), /makes a network of one host/)
  await t.rejects(s.vnis.allocate({ NetworkID: 'w'.repeat(25), Options: { encrypted: '' } }, L), /no WireGuard/)
  await t.rejects(s.vnis.allocate({ NetworkID: 'w'.repeat(25), Options: {}, IPv4Data: [{ Pool: '10.1.0.0/24' }, { Pool: '10.2.0.0/24' }] }, L), /one IPv4 subnet, not 2/)
  await t.rejects(s.vnis.allocate({ NetworkID: 'w'.repeat(25), Options: { 'tsnet.vni': '0' } }, L), /not a VNI/)
  t.equal((await s.vnis.allocate({ NetworkID: 'w'.repeat(25), Options: {} }, L)).Options['tsnet.vni'], '258', 'refusals claimed nothing')
})

t.test('a local-scope plugin: AllocateNetwork echoes, discovery changes nothing, overlay refused', async (t) => {
  const dir = await tempDir(t)
  const { s } = await open(dir, fresh(), 'local')
  t.same(s.driver.capabilities(), { Scope: 'local', ConnectivityScope: 'local' })
  t.same(await s.vnis.allocate({ NetworkID: NET, Options: { a: 'b' } }, L), { Options: { a: 'b' } })
  await discover(s, '10.250.0.1', true)
  t.same(s.swarm.view(), { peers: [] })
  await t.rejects(createNet(s, { 'tsnet.mode': 'overlay', 'tsnet.vni': '300' }), /needs the plugin in global scope/)
})

t.test('a worker: discovery, CreateNetwork with the leader options, endpoints, Join announces, peers come and go', async (t) => {
  const dir = await tempDir(t)
  const host = fresh()
  const { s, announcer } = await open(dir, host)
  t.same(s.driver.capabilities(), { Scope: 'global', ConnectivityScope: 'global' })
  await t.rejects(createNet(s, { 'tsnet.mode': 'overlay', 'tsnet.vni': '300' }), /data-path address is not known yet/, 'before Docker says where this node is')
  await discover(s, '10.250.0.1', true)
  await discover(s, '10.250.0.2')
  await createNet(s, { 'tsnet.mode': 'overlay', 'tsnet.vni': '300', 'tsnet.vxlan-port': '4789' })
  const vx = host.links.get('tsvx-q1w2e3r4t5')
  t.same(vx?.vxlan, { vni: 300, port: 4789, local: '10.250.0.1', learning: true, proxy: false, ageing: 30 })
  t.equal(vx?.mtu, 1450, 'MTU from the interface that has the data-path address')
  t.same(vx?.addresses, [], 'no address on the VXLAN device')
  t.notOk(host.links.has('tsbr-q1w2e3r4t5'), 'and no bridge')
  t.same(host.ofKind('fdb').map(keyOf), [`fdb tsvx-q1w2e3r4t5 ${FLOOD_MAC} 10.250.0.2`])
  await dry(t, s, 'CreateNetwork')

  await discover(s, '10.250.0.3')
  t.same(host.ofKind('fdb').map((f) => f.dst).sort(), ['10.250.0.2', '10.250.0.3'], 'a new host is flooded to at once')
  t.ok(host.sets.has('tsnet-vtep4 10.250.0.3'), 'and may send VXLAN here')

  await s.driver.createEndpoint({ NetworkID: NET, EndpointID: EP, Interface: { Address: '10.210.0.7/24' } }, L)
  const answer = await s.driver.join({ NetworkID: NET, EndpointID: EP, SandboxKey: '/var/run/docker/netns/abc' }, L)
  s.swarm.joined({ NetworkID: NET, EndpointID: EP }, L)
  t.same(answer, { InterfaceName: { SrcName: `tsm${EP.slice(0, 12)}`, DstPrefix: 'eth' } }, 'no Gateway in the Join answer; the interface is the macvlan child')
  t.equal(host.links.get(`tsm${EP.slice(0, 12)}`)?.macvlan?.parent, 'tsvx-q1w2e3r4t5', 'a child of the VXLAN device')
  t.equal(announcer.sent.length, 1)
  t.same(announcer.sent[0]?.peers, ['10.250.0.2', '10.250.0.3'])
  t.equal(announcer.sent[0]?.local, '10.250.0.1')
  t.equal(announcer.sent[0]?.payload.subarray(14, 20).toString('hex'), '02420ad20007', "the container's MAC in the announcement")
  await dry(t, s, 'Join')

  // Docker moves the child into the container after Join, and back out only after Leave answers.
  const childKey = `link tsm${EP.slice(0, 12)}`
  const moved = host.objects.get(childKey)
  host.objects.delete(childKey)
  await dry(t, s, 'the move into the container')
  const beforeLeave = host.calls.length
  await s.driver.leave({ NetworkID: NET, EndpointID: EP }, L)
  t.same(host.calls.slice(beforeLeave).filter((c) => c.startsWith('link')), [], 'Leave makes no link under the name of the one still in the container')
  t.notOk(host.objects.has(childKey), 'so Docker can move it back under its name')
  if (moved) host.objects.set(childKey, moved)
  await dry(t, s, 'Leave and the move back')
  await s.driver.join({ NetworkID: NET, EndpointID: EP, SandboxKey: '/var/run/docker/netns/abc' }, L)

  await discover(s, '10.250.0.2', false, false)
  t.same(host.ofKind('fdb').filter((f) => f.dst).map((f) => f.dst), ['10.250.0.3'], 'a departed host is no longer flooded to')
  t.notOk(host.sets.has('tsnet-vtep4 10.250.0.2'), 'nor let in')
  await dry(t, s, 'DiscoverDelete')

  // A restart: Docker tells only about this node again; the book is remembered.
  s.swarm.stop()
  const again = await open(dir, host)
  await discover(again.s, '10.250.0.1', true)
  t.same(again.s.swarm.view(), { local: '10.250.0.1', peers: ['10.250.0.3'] })
  await dry(t, again.s, 'a restart')
  // Docker's lists: 10.250.0.3 is in none (it left while tsnet was down), 10.250.0.4 joined.
  await again.s.swarm.dockerPeers([['10.250.0.1', '10.250.0.4']], L)
  t.same(host.ofKind('fdb').filter((f) => f.dst).map((f) => f.dst), ['10.250.0.4'])
  await dry(t, again.s, "Docker's peer lists")

  await again.s.driver.deleteEndpoint({ NetworkID: NET, EndpointID: EP }, L)
  await again.s.driver.deleteNetwork({ NetworkID: NET }, L)
  t.same([...host.objects.keys()].filter((k) => !k.startsWith('sysctl')), [], 'nothing of the network is left')
  again.s.swarm.stop()
})

t.test('refusals at CreateNetwork change nothing', async (t) => {
  const host = fresh()
  const { s } = await open(await tempDir(t), host)
  await discover(s, '10.250.0.1', true)
  const before = host.state()
  await t.rejects(createNet(s, { 'tsnet.vni': '300', encrypted: '' }), /no WireGuard/)
  await t.rejects(createNet(s, { 'tsnet.mode': 'overlay' }), /no tsnet.vni/)
  await t.rejects(createNet(s, { 'tsnet.vni': '300' }, [{ Pool: '10.1.0.0/24', Gateway: '10.1.0.1/24' }, { Pool: '10.2.0.0/24', Gateway: '10.2.0.1/24' }]), /one IPv4 subnet/)
  await t.rejects(createNet(s, { 'tsnet.vni': '300', 'com.docker.network.driver.overlay.vxlanid_list': '300' }), /unknown network option/)
  t.equal(host.state(), before)
  t.same(s.state.networks.size, 0)
  s.swarm.stop()
})

t.test("the follower: Docker's peer lists reach the book, a VIP-mode service is named once", async (t) => {
  const { OverlayFollower } = await import('../../src/services/overlay-follower.js')
  const { pino } = await import('pino')
  const host = fresh()
  const { s } = await open(await tempDir(t), host)
  await discover(s, '10.250.0.1', true)
  await createNet(s, { 'tsnet.vni': '300' })
  const lines: Array<Record<string, unknown>> = []
  const logger = pino({ level: 'warn' }, { write: (l: string) => lines.push(JSON.parse(l) as Record<string, unknown>) })
  let calls = 0
  const view = {
    async network(id: string) {
      calls++
      return id === NET ? { peers: ['10.250.0.1', '10.250.0.5'], vipServices: ['web'] } : undefined
    },
  }
  const f = new OverlayFollower(view, s.state, s.swarm, logger)
  await f.pass()
  await f.pass()
  t.equal(calls, 2, 'one read per overlay network and pass')
  t.same(s.swarm.view().peers, ['10.250.0.5'], 'a host from the list is added')
  t.ok(host.objects.has(`fdb tsvx-q1w2e3r4t5 ${FLOOD_MAC} 10.250.0.5`), 'and flooded to')
  const vip = lines.filter((l) => typeof l.msg === 'string' && /uses a VIP.*--endpoint-mode dnsrr/.test(l.msg as string))
  t.equal(vip.length, 1, 'the VIP warning is logged once per service')
  await t.rejects(new OverlayFollower({ network: async () => { throw new Error('API down') } }, s.state, s.swarm, logger).pass(), /API down/)
  t.same(s.swarm.view().peers, ['10.250.0.5'], 'an API that fails changes nothing')
  s.swarm.stop()
})

t.test('an upgrade: a network an earlier tsnet made (its record names a bridge) keeps its bridge and veths; a new one beside it has none', async (t) => {
  const { readFile, writeFile } = await import('node:fs/promises')
  const dir = await tempDir(t)
  const first = await open(dir, fresh())
  await discover(first.s, '10.250.0.1', true)
  await discover(first.s, '10.250.0.2')
  await createNet(first.s, { 'tsnet.vni': '300' })
  first.s.swarm.stop()
  // The record as the earlier version wrote it (the same schema, with the bridge in the spec).
  const file = `${dir}/store/networks/${NET}.json`
  const old = JSON.parse(await readFile(file, 'utf8')) as { spec: Record<string, unknown> }
  t.equal(old.spec.bridge, undefined, 'control: this version writes no bridge')
  await writeFile(file, JSON.stringify({ ...old, spec: { bridge: 'tsbr-q1w2e3r4t5', ...old.spec } }))

  const host = fresh() // after a reboot: nothing on the host
  const { s } = await open(dir, host)
  await discover(s, '10.250.0.1', true)
  t.equal(host.links.get('tsbr-q1w2e3r4t5')?.type, 'bridge', 'the boot made the bridge again')
  t.equal(host.links.get('tsvx-q1w2e3r4t5')?.master, 'tsbr-q1w2e3r4t5', 'with the VXLAN device as its port')
  await s.driver.createEndpoint({ NetworkID: NET, EndpointID: EP, Interface: { Address: '10.210.0.7/24' } }, L)
  const answer = await s.driver.join({ NetworkID: NET, EndpointID: EP, SandboxKey: '/var/run/docker/netns/abc' }, L)
  t.equal(answer.InterfaceName.SrcName, `tsc${EP.slice(0, 12)}`, 'its endpoints still get a veth')
  t.equal(host.links.get(`tsv${EP.slice(0, 12)}`)?.master, 'tsbr-q1w2e3r4t5', 'whose host end is on the bridge')
  t.ok(host.objects.has(`fdb tsv${EP.slice(0, 12)} 02:42:0a:d2:00:07 static`), 'with its MAC pinned')
  await dry(t, s, 'the upgrade')

  const NEW = 'n'.repeat(25)
  await s.driver.createNetwork({ NetworkID: NEW, Options: { 'com.docker.network.generic': { 'tsnet.vni': '301' } }, IPv4Data: [{ Pool: '10.211.0.0/24', Gateway: '10.211.0.1/24' }], IPv6Data: [] }, L)
  t.notOk(host.links.has('tsbr-nnnnnnnnnn'), 'a network made now has no bridge')
  t.equal(host.links.get('tsvx-nnnnnnnnnn')?.master, undefined, 'and its VXLAN device is a port of nothing')
  await dry(t, s, 'a new network beside the old one')
  s.swarm.stop()
})
