// modes/cluster: chosen by tsnet.overlay, its refusals, the MTU rule, and what a network renders
// from the other hosts' endpoints (static FDB and neighbour entries, no flood entry, the VTEP guard).
import t from 'tap'
import { FULL_HOST } from '../../src/core/host-facts.js'
import { VTEP_TAG, vtepPassRule, vtepSpoofRule, vxlanGuardRule } from '../../src/core/edge-rules.js'
import { checkOptionKeys, planNetwork, type NetworkInput } from '../../src/core/network-plan.js'
import { DAEMON_KEYS } from '../../src/core/docker-keys.js'
import type { HostObject, LinkObject } from '../../src/core/objects.js'
import type { ClusterNetwork } from '../../src/core/records.js'
import { clusterMode } from '../../src/modes/cluster.js'
import { modeFor } from '../../src/modes/index.js'
import type { ClusterPlan, PlanContext, RemoteEndpoint } from '../../src/modes/mode.js'

const NET = 'ab'.repeat(32)
const NOW = '2026-01-01T00:00:00.000Z'
const PLAN: ClusterPlan = { name: 'web', subnet: '10.220.0.0/24', gateway: '10.220.0.1', vni: 7, port: 4789, vtep: '10.250.0.1', underlayMtu: 1500, smallestUnderlayMtu: 1500 }
const CTX: PlanContext = { defaultMtu: 1500, facts: FULL_HOST, scope: 'local', cluster: PLAN }
const GENERIC = { 'tsnet.overlay': 'web' }

function req(over: Partial<NetworkInput> = {}): NetworkInput {
  return { NetworkID: NET, Options: { 'com.docker.network.generic': GENERIC }, IPv4Data: [{ Pool: '10.220.0.0/24', Gateway: '10.220.0.1/24' }], IPv6Data: [], ...over }
}
// As the driver does: the option keys first, then the plan.
const plan = (generic: Record<string, string> = GENERIC, ctx: PlanContext = CTX, over: Partial<NetworkInput> = {}) =>
  (checkOptionKeys(generic, clusterMode, DAEMON_KEYS), planNetwork({ ...req(over), Options: { 'com.docker.network.generic': generic } }, clusterMode, generic, ctx, NOW) as ClusterNetwork)
const render = (n: ClusterNetwork, remotes: RemoteEndpoint[]): HostObject[] =>
  clusterMode.renderNetwork(n, [], { facts: FULL_HOST, resolve: () => [], cluster: (name) => (name === 'web' ? remotes : []) })

t.test('tsnet.overlay chooses cluster mode; another explicit mode beside it is refused', async (t) => {
  t.equal(modeFor(GENERIC).name, 'cluster')
  t.equal(modeFor({ ...GENERIC, 'tsnet.mode': 'cluster' }).name, 'cluster')
  t.throws(() => modeFor({ ...GENERIC, 'tsnet.mode': 'bridge' }), /leave out tsnet.mode=bridge/)
  t.equal(modeFor({}).name, 'bridge', 'positive control: without it, bridge')
})

t.test('a network as the cluster agreed it: a bridge network with a VXLAN port', async (t) => {
  const n = plan()
  t.equal(n.mode, 'cluster')
  t.match(n.spec, { cluster: 'web', vni: 7, port: 4789, local: '10.250.0.1', vxlan: `tsvx-${NET.slice(0, 10)}`, bridge: `tsbr-${NET.slice(0, 10)}` })
  t.equal(n.mtu, 1450, 'the underlay MTU minus 50')
  t.equal(plan(GENERIC, { ...CTX, cluster: { ...PLAN, smallestUnderlayMtu: 1400 } }).mtu, 1350, 'the smallest underlay of the cluster decides')
  t.equal(plan({ ...GENERIC, 'com.docker.network.driver.mtu': '1300' }).mtu, 1300, 'an explicit MTU is the network\'s')
  t.equal(plan(GENERIC, { ...CTX, cluster: { ...PLAN, mtu: 1380, smallestUnderlayMtu: 1400 } }).mtu, 1380, 'the MTU the cluster agreed wins over this host\'s underlay')
  t.equal(n.enableIpMasquerade, true, 'egress through this host, as a bridge network')
  t.same(clusterMode.join(n, { id: 'cd'.repeat(32), networkId: NET, containerIf: 'tsc0', mac: '02:00:00:00:00:05', address: '10.220.0.5/24' } as never).Gateway, '10.220.0.1',
    'the cluster gateway, which every host\'s bridge carries')
})

t.test('refusals, each with a sentence saying why', async (t) => {
  t.throws(() => plan(GENERIC, { ...CTX, cluster: undefined }), /needs the cluster store: start tsnet with --etcd-endpoints/, 'no etcd')
  t.throws(() => plan(GENERIC, { ...CTX, scope: 'global' }), /without Swarm/, 'a swarm driver')
  t.throws(() => plan(GENERIC, CTX, { IPv4Data: [{ Pool: '10.221.0.0/24', Gateway: '10.221.0.1/24' }] }), /not cluster network "web"'s subnet 10.220.0.0\/24.*--ipam-opt tsnet.overlay=web/, 'another pool')
  t.throws(() => plan(GENERIC, CTX, { IPv4Data: [{ Pool: '10.220.0.0/24', Gateway: '10.220.0.9/24' }] }), /gateway 10.220.0.9\/24 is not.*10.220.0.1/, 'another gateway')
  t.throws(() => plan({ 'tsnet.overlay': 'bad name' }), /not a cluster network name/, 'a bad name')
  t.throws(() => plan({ ...GENERIC, 'tsnet.allow': 'x' }), /policies are not available on cluster networks/, 'a policy')
  t.throws(() => plan({ ...GENERIC, 'tsnet.vni': '9' }), /tsnet.vni/, 'an option of another mode')
  t.ok(plan(), 'positive control: the same request with the cluster\'s pool is planned')
})

t.test('remote endpoints become static FDB and neighbour entries; nothing floods or learns', async (t) => {
  const n = plan()
  const vx = n.spec.vxlan
  const remotes: RemoteEndpoint[] = [
    { ip: '10.220.0.9', mac: '02:42:0a:dc:00:09', vtep: '10.250.0.2' },
    { ip: '10.220.0.7', mac: '02:42:0a:dc:00:07', vtep: '10.250.0.3' },
    { ip: '10.220.0.8', mac: '02:42:0a:dc:00:08', vtep: '10.250.0.1' }, // this host: never programmed
    { ip: 'junk', mac: '02:42:0a:dc:00:10', vtep: '10.250.0.2' }, // malformed values from the store are left out
    { ip: '10.220.0.11', mac: 'not-a-mac', vtep: '10.250.0.2' },
  ]
  const objs = render(n, remotes)
  const link = objs.find((o): o is LinkObject => o.kind === 'link' && o.name === vx)
  t.match(link, { type: 'vxlan', master: n.spec.bridge, vxlan: { vni: 7, port: 4789, local: '10.250.0.1', learning: false, proxy: true } })
  t.same(objs.filter((o) => o.kind === 'fdb'), [
    { kind: 'fdb', link: vx, mac: '02:42:0a:dc:00:07', dst: '10.250.0.3' },
    { kind: 'fdb', link: vx, mac: '02:42:0a:dc:00:07' },
    { kind: 'fdb', link: vx, mac: '02:42:0a:dc:00:09', dst: '10.250.0.2' },
    { kind: 'fdb', link: vx, mac: '02:42:0a:dc:00:09' },
  ], 'per remote MAC: its VTEP on the VXLAN device and a static bridge entry on that port; no all-zeros flood entry')
  t.same(objs.filter((o) => o.kind === 'neigh'), [
    { kind: 'neigh', link: vx, ip: '10.220.0.7', mac: '02:42:0a:dc:00:07' },
    { kind: 'neigh', link: vx, ip: '10.220.0.9', mac: '02:42:0a:dc:00:09' },
  ], 'ARP is answered on this host from these')
  t.same(objs.filter((o) => o.kind === 'setEntry' && o.comment === VTEP_TAG).map((o) => (o as { entry: string }).entry), ['10.250.0.2', '10.250.0.3'], 'only hosts with endpoints may send')
  t.ok(objs.some((o) => o.kind === 'guard' && o.rule === vxlanGuardRule(4, 4789, 7, `tsnet:net:${NET.slice(0, 12)}`)), 'VXLAN of this VNI from anyone else is dropped')
  t.ok(objs.some((o) => o.kind === 'guard' && o.rule === vtepPassRule(4, 4789)), "a known host's VXLAN on the port passes before the per-network drops")
  t.ok(objs.some((o) => o.kind === 'guard' && o.table === 'mangle' && o.rule === vtepSpoofRule(4, 4789)), "a known host's address from the wrong side is dropped in mangle PREROUTING")
  t.ok(objs.some((o) => o.kind === 'addr' && o.cidr === '10.220.0.1/24'), 'the gateway on the bridge, as in bridge mode')
  t.same(render(n, []).filter((o) => o.kind === 'fdb' || o.kind === 'neigh'), [], 'no remote endpoint: no entry')
  const e = { id: 'cd'.repeat(32), networkId: NET, hostIf: 'tsh0', containerIf: 'tsc0', mac: '02:42:0a:dc:00:05', mtu: 1450, address: '10.220.0.5/24' }
  t.same(clusterMode.renderEndpoint(e as never, n, { facts: FULL_HOST, resolve: () => [] }).filter((o) => o.kind === 'fdb'), [{ kind: 'fdb', link: 'tsh0', mac: '02:42:0a:dc:00:05' }],
    'a local endpoint\'s MAC is pinned to its port: frames from other hosts cannot move it')
})

t.test('IPv6: the cluster\'s IPv6 subnet, and a neighbour entry per family', async (t) => {
  const v6 = { IPv6Data: [{ Pool: 'fd00:dc::/64', Gateway: 'fd00:dc::1/64' }], Options: {} } as Partial<NetworkInput>
  const ctx6 = { ...CTX, cluster: { ...PLAN, ipv6Subnet: 'fd00:dc::/64', ipv6Gateway: 'fd00:dc::1' } }
  const generic = { ...GENERIC }
  const n = (checkOptionKeys(generic, clusterMode, DAEMON_KEYS), planNetwork({ ...req(v6), EnableIPv6: true, Options: { 'com.docker.network.generic': generic, 'com.docker.network.enable_ipv6': true } } as NetworkInput, clusterMode, generic, ctx6, NOW)) as ClusterNetwork
  t.equal(n.ipv6, true)
  const small = { ...ctx6, cluster: { ...ctx6.cluster, mtu: 1200 } }
  t.throws(() => planNetwork({ ...req(v6), EnableIPv6: true, Options: { 'com.docker.network.generic': generic, 'com.docker.network.enable_ipv6': true } } as NetworkInput, clusterMode, generic, small, NOW),
    /has MTU 1200, below the 1280 bytes IPv6 needs/, 'an agreed MTU too small for IPv6 is refused with a sentence')
  t.throws(() => planNetwork({ ...req(v6), EnableIPv6: true, Options: { 'com.docker.network.generic': generic, 'com.docker.network.enable_ipv6': true } } as NetworkInput, clusterMode, generic, CTX, NOW),
    /IPv6 subnet fd00:dc::\/64 is not cluster network "web"'s \(none yet\)/, 'a cluster without IPv6 refuses an IPv6 pool')
  const objs = render(n, [{ ip: '10.220.0.9', ipv6: 'fd00:dc:0::9', mac: '02:42:0a:dc:00:09', vtep: '10.250.0.2' }])
  t.same(objs.filter((o) => o.kind === 'neigh').map((o) => (o as { ip: string }).ip), ['10.220.0.9', 'fd00:dc::9'], 'both families answered here, in canonical form')
  t.ok(objs.some((o) => o.kind === 'addr' && o.cidr === 'fd00:dc::1/64'), 'the IPv6 gateway on the bridge')
})

t.test('aux addresses are refused: they would have to be kept on every host', async (t) => {
  t.throws(() => plan(GENERIC, CTX, { IPv4Data: [{ Pool: '10.220.0.0/24', Gateway: '10.220.0.1/24', AuxAddresses: { printer: '10.220.0.200/24' } }] }), /takes no --aux-address/)
})
