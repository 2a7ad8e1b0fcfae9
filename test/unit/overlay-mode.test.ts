// modes/overlay: options, every refusal, the MTU rule, what a network and an endpoint render.
import t from 'tap'
import { FULL_HOST } from '../../src/core/host-facts.js'
import { OVERLAY_GROUP, OVERLAY_TO_HOST_RULE, vtepPassRule, vtepSpoofRule, vxlanGuardRule } from '../../src/core/edge-plan.js'
import { planEndpoint, planNetwork, type NetworkInput } from '../../src/core/network-plan.js'
import { keyOf, type HostObject, type LinkObject } from '../../src/core/objects.js'
import type { OverlayNetwork } from '../../src/core/records.js'
import { modeFor } from '../../src/modes/index.js'
import type { OverlayView, PlanContext, RenderContext } from '../../src/modes/mode.js'
import { FLOOD_MAC, overlayMode } from '../../src/modes/overlay.js'
import { encryptionRefusal, overlayMtu, parsePort, parseVni, parseVniRange } from '../../src/modes/overlay-options.js'

const NET = 'q1w2e3r4t5y6u7i8o9p0asdfg' // Swarm's network IDs: 25 letters and digits
const EP = 'ab'.repeat(32)
const NOW = '2026-01-01T00:00:00.000Z'
const CTX: PlanContext = { defaultMtu: 1500, facts: FULL_HOST, scope: 'global', underlay: { address: '10.250.0.1', mtu: 1500 } }

function req(generic: Record<string, string>, over: Partial<NetworkInput> = {}): NetworkInput {
  return {
    NetworkID: NET,
    Options: { 'com.docker.network.generic': generic },
    IPv4Data: [{ Pool: '10.210.0.0/24', Gateway: '10.210.0.1/24' }],
    IPv6Data: [],
    ...over,
  }
}
const ALLOCATED = { 'tsnet.mode': 'overlay', 'tsnet.vni': '300', 'tsnet.vxlan-port': '4789' }
const plan = (generic: Record<string, string> = ALLOCATED, ctx: PlanContext = CTX, over: Partial<NetworkInput> = {}) =>
  planNetwork(req(generic, over), overlayMode, generic, ctx, NOW) as OverlayNetwork
const render = (n: OverlayNetwork, overlay: OverlayView): HostObject[] =>
  overlayMode.renderNetwork(n, [], { facts: FULL_HOST, resolve: () => [], overlay } satisfies RenderContext)

t.test('the mode: explicit, or the fallback a global-scope plugin gives', async (t) => {
  t.equal(modeFor({ 'tsnet.mode': 'overlay' }).name, 'overlay')
  t.equal(modeFor({}, 'overlay').name, 'overlay', 'a global-scope plugin makes overlay networks by default')
  t.equal(modeFor({}).name, 'bridge', 'a local one bridges')
  t.equal(modeFor({ 'tsnet.mode': 'bridge' }, 'overlay').name, 'bridge', 'an explicit mode wins')
})

t.test('a network as the leader allocated it', async (t) => {
  const n = plan()
  t.equal(n.mode, 'overlay')
  t.same(n.spec, { vxlan: 'tsvx-q1w2e3r4t5', vni: 300, port: 4789, underlayMtu: 1500 }, 'no bridge: endpoints are macvlan children of the VXLAN device')
  t.equal(n.mtu, 1450, 'the MTU is the underlay interface MTU minus 50')
  t.equal(n.enableIpMasquerade, false, 'nothing is routed out through the bridge, so nothing is masqueraded')
  t.equal(plan(ALLOCATED, { ...CTX, underlay: { address: '10.250.0.1', mtu: 9000 } }).mtu, 8950, 'a jumbo underlay gives a jumbo overlay')
  t.equal(plan({ ...ALLOCATED, 'com.docker.network.driver.mtu': '1400' }).mtu, 1350, 'the mtu option is the underlay MTU, as for Docker overlay')
  t.equal(plan(ALLOCATED, { ...CTX, underlay: { address: 'fd00::1', mtu: 1500 } }).mtu, 1430, 'over an IPv6 underlay the headers take 70 bytes')
  t.equal(plan({ 'tsnet.vni': '7' }).spec.port, 4789, 'without a port option: 4789')
})

t.test('refusals, each with a sentence saying why', async (t) => {
  const refuse = (generic: Record<string, string>, ctx: PlanContext, re: RegExp, what: string, over: Partial<NetworkInput> = {}) =>
    t.throws(() => plan(generic, ctx, over), re, what)
  refuse(ALLOCATED, { ...CTX, scope: 'local' }, /needs the plugin in global scope.*TSNET_SCOPE=global/, 'local scope')
  refuse({ ...ALLOCATED, encrypted: '' }, CTX, /no WireGuard.*IPsec keys.*without --opt encrypted/, '-o encrypted without WireGuard')
  refuse({ ...ALLOCATED, encrypted: 'true' }, { ...CTX, facts: { ...FULL_HOST, linkKinds: new Set(['wireguard']) } }, /has WireGuard, but this version of tsnet does not encrypt/, '-o encrypted with WireGuard')
  refuse({ 'tsnet.mode': 'overlay' }, CTX, /no tsnet.vni: overlay networks are created on a swarm manager/, 'no VNI')
  refuse({ 'tsnet.vni': '0' }, CTX, /not a VNI/, 'VNI 0')
  refuse({ 'tsnet.vni': '16777216' }, CTX, /not a VNI/, 'VNI beyond 24 bits')
  refuse({ 'tsnet.vni': '9', 'tsnet.vxlan-port': '70000' }, CTX, /not a UDP port/, 'port')
  refuse(ALLOCATED, { ...CTX, underlay: {} }, /data-path address is not known yet/, 'no data-path address')
  refuse({ ...ALLOCATED, 'com.docker.network.driver.mtu': '100' }, CTX, /leaves 50 bytes inside VXLAN/, 'an underlay MTU too small')
  refuse({ ...ALLOCATED, 'tsnet.allow': 'other tcp/80' }, CTX, /nothing is routed into or out of an overlay network/, 'a policy')
  refuse(ALLOCATED, CTX, /one IPv4 subnet, not 2/, 'two IPv4 subnets', {
    IPv4Data: [{ Pool: '10.210.0.0/24', Gateway: '10.210.0.1/24' }, { Pool: '10.211.0.0/24', Gateway: '10.211.0.1/24' }],
  })
})

t.test('option parsers', async (t) => {
  t.same(parseVniRange('256-4095'), { first: 256, last: 4095 })
  t.throws(() => parseVniRange('4095-256'), /not a VNI range/)
  t.throws(() => parseVniRange('0-10'), /not a VNI range/)
  t.throws(() => parseVniRange('1-16777216'), /not a VNI range/)
  t.equal(parseVni('16777215'), 16777215)
  t.equal(parsePort('4789'), 4789)
  t.equal(overlayMtu(1500, 4, false), 1450)
  t.throws(() => overlayMtu(1300, 4, true), /below the 1280 bytes IPv6 needs/)
  t.match(encryptionRefusal(false), /docs\/overlay.md/)
})

t.test('render: a VXLAN device without address carrying the edge marker, local set, one flood entry and VTEP member per other host, guard rules', async (t) => {
  const n = plan()
  const objects = render(n, { local: '10.250.0.1', peers: ['10.250.0.3', '10.250.0.2', '10.250.0.1', 'fd00::9'] })
  const keys = objects.map(keyOf)
  t.notOk(objects.some((o) => o.kind === 'link' && o.type === 'bridge'), 'no bridge')
  t.notOk(objects.some((o) => o.kind === 'addr'), 'no address anywhere: the host takes no part in the overlay')
  const vx = objects.find((o) => keyOf(o) === 'link tsvx-q1w2e3r4t5') as LinkObject
  t.same(vx.vxlan, { vni: 300, port: 4789, local: '10.250.0.1', learning: true, proxy: false, ageing: 30 }, 'learning, no proxy, local always set')
  t.equal(vx.master, undefined, 'a port of nothing')
  t.equal(vx.group, OVERLAY_GROUP, 'the VXLAN device carries the overlay device group (internal + overlay bits)')
  t.equal(vx.mtu, 1450)
  t.same(keys.filter((k) => k.startsWith('fdb ')), [
    `fdb tsvx-q1w2e3r4t5 ${FLOOD_MAC} 10.250.0.2`, `fdb tsvx-q1w2e3r4t5 ${FLOOD_MAC} 10.250.0.3`,
  ], 'head-end replication to each other host of the underlay family, never to itself')
  t.same(keys.filter((k) => k.startsWith('set tsnet-vtep')), ['set tsnet-vtep4 10.250.0.2', 'set tsnet-vtep4 10.250.0.3'])
  t.ok(keys.includes(`guard 4 ${vxlanGuardRule(4, 4789, 300, `tsnet:net:${NET.slice(0, 12)}`)}`), 'VXLAN of this VNI from unknown hosts is dropped')
  t.ok(keys.includes(`guard 4 ${vtepPassRule(4, 4789)}`), "a known host's VXLAN on the port passes before the per-network drops")
  t.ok(keys.includes(`guard 4 mangle ${vtepSpoofRule(4, 4789)}`), "a known host's address from the wrong side is dropped in mangle PREROUTING")
  t.ok(keys.includes(`guard 4 ${OVERLAY_TO_HOST_RULE}`) && keys.includes(`guard 6 ${OVERLAY_TO_HOST_RULE}`), 'the host is closed to overlay devices')
  t.ok(keys.includes('sysctl net/ipv6/conf/tsvx-q1w2e3r4t5/disable_ipv6') && keys.includes('sysctl net/ipv4/conf/tsvx-q1w2e3r4t5/arp_ignore'))
  t.ok(keys.includes('chains'), "tsnet's chains are wanted as for any network")
  t.notOk(keys.some((k) => k.startsWith('set tsnet-masq')), 'nothing to masquerade')
  t.same(render(n, { peers: ['10.250.0.2'] }).filter((o) => o.kind === 'fdb' || o.kind === 'sysctl' || (o.kind === 'link' && o.type === 'vxlan')), [],
    'without the data-path address, no vxlan port yet (the swarm service renders again when Docker says it)')
})

t.test('a network made before macvlan endpoints keeps its bridge, its veths and their pinned MACs', async (t) => {
  const made = plan()
  const n: OverlayNetwork = { ...made, spec: { ...made.spec, bridge: 'tsbr-q1w2e3r4t5' } }
  const objects = render(n, { local: '10.250.0.1', peers: ['10.250.0.2'] })
  const keys = objects.map(keyOf)
  const bridge = objects.find((o) => keyOf(o) === 'link tsbr-q1w2e3r4t5') as LinkObject
  t.equal(bridge.group, OVERLAY_GROUP, 'the bridge carries the overlay device group')
  const vx = objects.find((o) => keyOf(o) === 'link tsvx-q1w2e3r4t5') as LinkObject
  t.equal(vx.master, 'tsbr-q1w2e3r4t5', 'the VXLAN device is a port of the bridge')
  t.equal(vx.group, undefined, 'and carries no marker of its own')
  t.ok(keys.includes('sysctl net/ipv6/conf/tsbr-q1w2e3r4t5/disable_ipv6') && keys.includes('sysctl net/ipv4/conf/tsbr-q1w2e3r4t5/arp_ignore'))
  t.notOk(keys.some((k) => k.startsWith('sysctl net/ipv4/conf/tsvx')), 'the settings are on the bridge')
  const e = planEndpoint({ EndpointID: EP, Interface: { Address: '10.210.0.7/24' } }, n, overlayMode, NOW).record
  t.ok(e.hostIf, 'its endpoints get a veth')
  const eps = overlayMode.renderEndpoint(e, n, { facts: FULL_HOST, resolve: () => [] })
  t.same(eps.map(keyOf), [`link ${e.hostIf}`, `fdb ${e.hostIf} 02:42:0a:d2:00:07 static`], 'a veth on the bridge and its MAC pinned to its port')
  t.equal((eps[0] as LinkObject).master, 'tsbr-q1w2e3r4t5')
  t.equal((eps[0] as LinkObject).mtu, 1450, 'both veth ends get the overlay MTU')
  t.same(overlayMode.claimedNames(n), ['tsbr-q1w2e3r4t5', 'tsvx-q1w2e3r4t5'])
  t.same(overlayMode.edge(n)?.iface, 'tsbr-q1w2e3r4t5', 'the edge sees the bridge')
})

t.test('endpoint: a macvlan child of the VXLAN device, which Docker moves into the container; Join gives no gateway', async (t) => {
  const n = plan()
  const e = planEndpoint({ EndpointID: EP, Interface: { Address: '10.210.0.7/24' } }, n, overlayMode, NOW).record
  t.equal(e.mac, '02:42:0a:d2:00:07', "Docker's MAC rule: 02:42 and the IPv4 address")
  t.equal(e.hostIf, undefined, 'no host end: the child is the only link')
  const objects = overlayMode.renderEndpoint(e, n, { facts: FULL_HOST, resolve: () => [] })
  t.same(objects.map(keyOf), [`link ${e.containerIf}`])
  const child = objects[0] as LinkObject
  t.same(child.macvlan, { parent: 'tsvx-q1w2e3r4t5', mode: 'bridge' }, 'bridge mode: two containers of this host reach each other through the device')
  t.equal(child.mac, '02:42:0a:d2:00:07')
  t.equal(child.mtu, 1450, 'the overlay MTU')
  t.equal(child.up, false, 'down until Docker brings it up in the container')
  t.equal(child.recreate, true, 'made again while not joined')
  const joined = overlayMode.renderEndpoint({ ...e, joined: true, sandboxKey: '/var/run/docker/netns/x' }, n, { facts: FULL_HOST, resolve: () => [] })[0] as LinkObject
  t.ok(joined.inSandbox && !joined.recreate, 'joined: it lives in the container, and only Docker can make it again')
  t.same(overlayMode.join(n, e), { InterfaceName: { SrcName: e.containerIf, DstPrefix: 'eth' } }, 'no Gateway: Docker adds docker_gwbridge')
  t.same(overlayMode.claimedNames(n), ['tsvx-q1w2e3r4t5'])
  t.same(overlayMode.edge(n)?.iface, 'tsvx-q1w2e3r4t5', 'the edge sees the VXLAN device')
})
