// modes/macvlan: planning (every refusal), the sub-interface plan, render, join, and the mode's
// place in the shared planning (option keys, endpoint MACs, ipvlan, stored records).
import t from 'tap'
import { diff } from '../../src/core/diff.js'
import { OPT } from '../../src/core/docker-keys.js'
import { FULL_HOST, type HostFacts } from '../../src/core/host-facts.js'
import { checkOptionKeys, planEndpoint, planNetwork, type NetworkInput } from '../../src/core/network-plan.js'
import { keyOf, type HostObject, type LinkObject } from '../../src/core/objects.js'
import { checkStoredRecord } from '../../src/core/record-check.js'
import type { EndpointRecord, MacvlanNetwork, NetworkRecord } from '../../src/core/records.js'
import { DAEMON_KEYS } from '../../src/core/docker-keys.js'
import { macvlanMode } from '../../src/modes/macvlan.js'
import { VLAN_ALIAS, vlanForm } from '../../src/modes/macvlan-parent.js'
import { bridgeMode } from '../../src/modes/bridge.js'
import { modeFor } from '../../src/modes/index.js'
import type { PlanContext, RenderContext } from '../../src/modes/mode.js'
import { TsnetError } from '../../src/errors.js'
import { dockerId } from './fixtures/util.js'

const NET = dockerId('a10')
const NET2 = dockerId('a20')
const EP = dockerId('e10')
const NOW = '2026-01-01T00:00:00.000Z'
const NO_VLAN: HostFacts = { ...FULL_HOST, linkKinds: new Set(['bridge', 'veth', 'macvlan']) }
const RENDER: RenderContext = { facts: FULL_HOST, resolve: () => [] }

/** A host link as the link driver reports it (a physical interface's type is 'device'). */
function hostLink(name: string, over: Partial<LinkObject> = {}): LinkObject {
  return { kind: 'link', name, type: 'device' as LinkObject['type'], alias: '', mtu: 1500, mac: '52:54:00:12:34:56', up: true, recreate: false, ...over }
}

function ctx(links: LinkObject[] = [hostLink('eth0')], facts: HostFacts = FULL_HOST): PlanContext {
  return { defaultMtu: 1450, facts, links: new Map(links.map((l) => [l.name, l])) }
}

function req(generic: Record<string, string>, over: Partial<NetworkInput> = {}, id = NET): NetworkInput {
  return {
    NetworkID: id,
    Options: { [OPT.generic]: generic },
    IPv4Data: [{ Pool: '192.168.10.0/24', Gateway: '192.168.10.1/24' }],
    IPv6Data: [],
    ...over,
  }
}

const GEN = { 'tsnet.mode': 'macvlan', parent: 'eth0' }

function plan(generic: Record<string, string> = GEN, c: PlanContext = ctx(), over: Partial<NetworkInput> = {}, id = NET): MacvlanNetwork {
  checkOptionKeys(generic, macvlanMode, DAEMON_KEYS)
  const n = planNetwork(req(generic, over, id), macvlanMode, generic, c, NOW)
  if (n.mode !== 'macvlan') throw new Error('test bug: not a macvlan record')
  return n
}

/** The sentence of the TsnetError `fn` throws (the test fails when it throws nothing). */
function refusal(fn: () => unknown): string {
  try {
    fn()
  } catch (err) {
    if (err instanceof TsnetError) return err.message
    throw err
  }
  return '(nothing was refused)'
}

function endpoint(n: NetworkRecord, over: Partial<EndpointRecord> = {}): EndpointRecord {
  return { ...planEndpoint({ EndpointID: EP, Interface: { Address: '192.168.10.2/24' } }, n, macvlanMode, NOW).record, ...over }
}

t.test('a network on an existing parent: the record, nothing on the host', async (t) => {
  const n = plan()
  t.same(n.spec, { parent: 'eth0', macvlanMode: 'bridge', parentCreated: false })
  t.equal(n.mtu, 1500, "the parent's MTU, not the default route's (1450)")
  t.equal(n.enableIpMasquerade, false, 'nothing is translated')
  t.same(macvlanMode.renderNetwork(n, [], RENDER), [], 'no bridge, no address, no setting, no firewall entry')
  t.equal(macvlanMode.edge(n), undefined, 'the edge never sees it')
  t.same(macvlanMode.supports, { policy: false, publish: false })
  t.same(macvlanMode.claimedNames(n), [], 'parents may be shared')
  t.same(checkStoredRecord('networks', NET, n), undefined, 'the stored record passes the shape check')
})

t.test('MTU: the parent\'s unless set lower; higher is refused', async (t) => {
  t.equal(plan({ ...GEN, 'com.docker.network.driver.mtu': '1400' }).mtu, 1400)
  t.equal(plan(GEN, ctx([hostLink('eth0', { mtu: 9000 })])).mtu, 9000)
  t.match(refusal(() => plan({ ...GEN, 'com.docker.network.driver.mtu': '9000' })),
    /com\.docker\.network\.driver\.mtu=9000 is larger than the MTU of the parent eth0 \(1500\)/)
})

t.test('macvlan_mode: the four kernel modes, nothing else', async (t) => {
  for (const m of ['bridge', 'private', 'vepa', 'passthru']) t.equal(plan({ ...GEN, macvlan_mode: m }).spec.macvlanMode, m)
  for (const bad of ['source', 'toString', 'BRIDGE', '']) {
    t.match(refusal(() => plan({ ...GEN, macvlan_mode: bad })), /is not a macvlan mode: it is one of bridge, private, vepa, passthru/, bad)
  }
})

t.test('parents refused with a sentence, before anything is planned', async (t) => {
  const cases: Array<[string, Record<string, string>, PlanContext, RegExp]> = [
    ['no parent', { 'tsnet.mode': 'macvlan' }, ctx(), /needs -o parent=<interface>/],
    ['loopback', { ...GEN, parent: 'lo' }, ctx([hostLink('lo')]), /loopback interface carries no LAN/],
    ['not there, not a sub-interface name', { ...GEN, parent: 'eth9' }, ctx(), /there is no interface named "eth9" on this host \(tsnet creates only 802\.1Q sub-interfaces/],
    ['down', GEN, ctx([hostLink('eth0', { up: false })]), /eth0 is down, so the containers' interfaces would have no link; bring it up first/],
    ['a bridge port', GEN, ctx([hostLink('eth0', { master: 'br0' })]), /eth0 is a port of br0.*use br0 as the parent instead/],
    ["tsnet's own bridge", { ...GEN, parent: 'tsbr-0a12' }, ctx([hostLink('tsbr-0a12', { type: 'bridge', alias: 'tsnet:net:0a12' })]), /is a link tsnet made for itself/],
    ['a name the kernel refuses', { ...GEN, parent: 'eth0/x' }, ctx(), /parent interface \(-o parent\) "eth0\/x" is not usable/],
  ]
  for (const [what, generic, c, re] of cases) t.match(refusal(() => plan(generic, c)), re, what)
})

t.test('--internal, no IPv4 subnet, the null pool: refused with the reason', async (t) => {
  t.match(refusal(() => plan(GEN, ctx(), { Options: { [OPT.generic]: GEN, [OPT.internal]: true } })),
    /--internal cannot be given to a macvlan network: its containers sit on the LAN itself/)
  t.match(refusal(() => plan(GEN, ctx(), { IPv4Data: [] })), /needs the IPv4 subnet of the LAN it joins/)
  t.match(refusal(() => plan(GEN, ctx(), { IPv4Data: [{ Pool: '0.0.0.0/0' }] })), /not 0\.0\.0\.0\/0 \(the null IPAM driver/)
})

t.test('options that need the host firewall or a bridge are refused with why', async (t) => {
  t.match(refusal(() => plan({ ...GEN, 'tsnet.allow': 'other tcp/80' })), /option tsnet\.allow needs the host firewall, which never sees the traffic of a macvlan network/)
  t.match(refusal(() => plan({ ...GEN, 'com.docker.network.bridge.enable_icc': 'false' })),
    /option com\.docker\.network\.bridge\.enable_icc does not apply to a macvlan network: host netfilter never sees the traffic of macvlan containers.*macvlan_mode=private/)
  for (const v of ['true', 'false']) {
    t.match(refusal(() => plan({ ...GEN, 'com.docker.network.bridge.enable_ip_masquerade': v })),
      /enable_ip_masquerade does not apply to a macvlan network: host netfilter never sees/, v)
  }
  const unknown = refusal(() => plan({ ...GEN, 'com.docker.network.bridge.name': 'br9' }))
  t.match(unknown, /unknown network option com\.docker\.network\.bridge\.name; tsnet's macvlan mode understands .*parent, macvlan_mode/)
  t.notMatch(unknown, /enable_icc/, 'refused keys are not listed as understood')
})

t.test('the 802.1Q sub-interface: planned on the link it sits on, rendered tagged as tsnet\'s', async (t) => {
  t.same(vlanForm('eth0.10'), { link: 'eth0', id: 10 })
  t.equal(vlanForm('eth0'), undefined)
  t.equal(vlanForm('eth0.10.20'), undefined, 'no stacked tags, as Docker')
  t.same(macvlanMode.hostLinks?.({ parent: 'eth0.10' }), ['eth0.10', 'eth0'], 'planning looks at the parent and the link under it')
  const n = plan({ ...GEN, parent: 'eth0.10' })
  t.same(n.spec, { parent: 'eth0.10', macvlanMode: 'bridge', parentCreated: true, vlan: { link: 'eth0', id: 10, mtu: 1500 } })
  const objects = macvlanMode.renderNetwork(n, [], RENDER)
  t.same(objects, [{ kind: 'link', name: 'eth0.10', type: 'vlan', alias: VLAN_ALIAS, mtu: 1500, up: true, recreate: true, vlan: { parent: 'eth0', id: 10 } }])
  // Applied to a host without it, the diff creates the sub-interface before anything on it.
  const ep = endpoint(n)
  const want = new Map([...objects, ...macvlanMode.renderEndpoint(ep, n, RENDER)].map((o): [string, HostObject] => [keyOf(o), o]))
  const ops = diff(want.keys(), want, new Map()).ops
  t.same(ops.map((o) => `${o.op} ${keyOf(o.obj)}`), ['create link eth0.10', `create link ${ep.containerIf}`])
  t.same(checkStoredRecord('networks', NET, n), undefined, 'the stored record passes the shape check')
})

t.test('the sub-interface: shared by the networks that use it, a user\'s never taken', async (t) => {
  const first = plan({ ...GEN, parent: 'eth0.10' })
  const made = macvlanMode.renderNetwork(first, [], RENDER)[0] as LinkObject
  // A second network finds it on the host, tagged as tsnet's: it wants the very same object.
  const second = plan({ ...GEN, parent: 'eth0.10' }, ctx([hostLink('eth0'), { ...made, recreate: false }]), { IPv4Data: [{ Pool: '192.168.11.0/24', Gateway: '192.168.11.1/24' }] }, NET2)
  t.equal(second.spec.parentCreated, true)
  t.same(macvlanMode.renderNetwork(second, [], RENDER), [made], 'both networks want the same object, so it stays while either does')
  // A sub-interface the user made is used, never wanted, so never deleted.
  const users = plan({ ...GEN, parent: 'eth0.10' }, ctx([hostLink('eth0'), hostLink('eth0.10', { type: 'vlan', vlan: { parent: 'eth0', id: 10 } })]))
  t.same(users.spec, { parent: 'eth0.10', macvlanMode: 'bridge', parentCreated: false })
  t.same(macvlanMode.renderNetwork(users, [], RENDER), [])
})

t.test('the sub-interface: refusals', async (t) => {
  t.match(refusal(() => plan({ ...GEN, parent: 'eth0.10' }, ctx([hostLink('eth0')], NO_VLAN))),
    /-o parent=eth0\.10: there is no interface named eth0\.10, and tsnet cannot create it as an 802\.1Q sub-interface of eth0 with VLAN 10: this kernel has no vlan support/)
  t.match(refusal(() => plan({ ...GEN, parent: 'eth9.10' })), /no interface named eth9\.10 on this host, nor eth9 to make it on/)
  t.match(refusal(() => plan({ ...GEN, parent: 'eth0.4095' })), /4095 is not a VLAN ID tsnet can make it with \(1 to 4094\)/)
  t.match(refusal(() => plan({ ...GEN, parent: 'eth0.0' })), /0 is not a VLAN ID/)
  t.match(refusal(() => plan({ ...GEN, parent: 'eth0.10' }, ctx([hostLink('eth0', { up: false })]))), /eth0 \(which eth0\.10 would be made on\) is down/)
})

t.test('endpoints: one macvlan link, moved into the container at Join', async (t) => {
  const n = plan(GEN, ctx(), {
    Options: { [OPT.generic]: GEN, [OPT.enableIpv6]: true },
    IPv6Data: [{ Pool: 'fd00:10::/64', Gateway: 'fd00:10::1/64' }],
  })
  const p = planEndpoint({ EndpointID: EP, Interface: { Address: '192.168.10.2/24', AddressIPv6: 'fd00:10::2/64' } }, n, macvlanMode, NOW)
  t.equal(p.record.hostIf, undefined, 'no host-side link')
  t.equal(p.record.containerIf, 'tsme10012345678')
  t.equal(p.record.mac, '02:42:c0:a8:0a:02', 'the MAC derives from the IPv4 address')
  t.same(p.response, { Interface: { MacAddress: '02:42:c0:a8:0a:02' } })
  const [child] = macvlanMode.renderEndpoint(p.record, n, RENDER)
  t.same(child, {
    kind: 'link', name: 'tsme10012345678', type: 'macvlan', alias: `tsnet:ep:${EP}`, mtu: 1500, mac: '02:42:c0:a8:0a:02',
    up: false, recreate: true, macvlan: { parent: 'eth0', mode: 'bridge' },
  })
  t.same(macvlanMode.join(n, p.record), {
    InterfaceName: { SrcName: 'tsme10012345678', DstPrefix: 'eth' }, Gateway: '192.168.10.1', GatewayIPv6: 'fd00:10::1',
  }, "the LAN's router for both families")
  // Joined, the link is in the container: absent from the host is neither missing nor to be made.
  const joined = macvlanMode.renderEndpoint({ ...p.record, joined: true }, n, RENDER)[0] as LinkObject
  t.same({ recreate: joined.recreate, inSandbox: joined.inSandbox }, { recreate: false, inSandbox: true })
  const d = diff([keyOf(joined)], new Map([[keyOf(joined), joined]]), new Map())
  t.same({ ops: d.ops, missing: d.missing }, { ops: [], missing: [] })
  const before = diff([keyOf(child as HostObject)], new Map([[keyOf(child as HostObject), child as HostObject]]), new Map())
  t.same(before.ops.map((o) => o.op), ['create'], 'before Join a missing link is made')
  // The user's MAC and prefix are honoured.
  const own = planEndpoint({ EndpointID: EP, Interface: { Address: '192.168.10.3/24', MacAddress: '02:00:00:00:00:33' } }, n, macvlanMode, NOW)
  t.equal(own.record.mac, '02:00:00:00:00:33')
  t.same(own.response, {})
})

t.test('passthru: the container takes the parent\'s MAC, which tsnet never sets', async (t) => {
  const n = plan({ ...GEN, macvlan_mode: 'passthru' })
  t.equal(n.spec.parentMac, '52:54:00:12:34:56')
  const e = planEndpoint({ EndpointID: EP, Interface: { Address: '192.168.10.2/24' } }, n, macvlanMode, NOW)
  t.equal(e.record.mac, '52:54:00:12:34:56', "Docker gets the parent's MAC, so setting it in the container changes nothing")
  const [child] = macvlanMode.renderEndpoint(e.record, n, RENDER) as LinkObject[]
  t.equal(child?.mac, undefined, 'no MAC in the object: a MAC set on a passthru link is set on its parent')
  t.match(refusal(() => planEndpoint({ EndpointID: EP, Interface: { Address: '192.168.10.2/24', MacAddress: '02:00:00:00:00:33' } }, n, macvlanMode, NOW)),
    /takes 52:54:00:12:34:56, the MAC of the parent interface \(macvlan passthru mode\)/)
})

t.test('beside other networks: same parent and overlapping subnets, or a passthru parent, refused', async (t) => {
  const label = (x: NetworkRecord) => (x.id === NET ? 'lan10' : 'other')
  const a = plan()
  const sameSubnet = plan(GEN, ctx(), {}, NET2)
  t.match(macvlanMode.conflictWith?.(sameSubnet, a, label), /subnet 192\.168\.10\.0\/24 overlaps subnet 192\.168\.10\.0\/24 of macvlan network lan10, which is on the same parent eth0/)
  const inside = plan(GEN, ctx(), { IPv4Data: [{ Pool: '192.168.10.128/25', Gateway: '192.168.10.129/25' }] }, NET2)
  t.ok(macvlanMode.conflictWith?.(inside, a, label), 'a subnet inside the other overlaps too')
  const apart = plan(GEN, ctx(), { IPv4Data: [{ Pool: '192.168.11.0/24', Gateway: '192.168.11.1/24' }] }, NET2)
  t.equal(macvlanMode.conflictWith?.(apart, a, label), undefined, 'one parent, two subnets: allowed')
  const elsewhere = plan({ ...GEN, parent: 'eth1' }, ctx([hostLink('eth1')]), {}, NET2)
  t.equal(macvlanMode.conflictWith?.(elsewhere, a, label), undefined, 'another parent: the shared check for overlaps decides')
  const pass = plan({ ...GEN, macvlan_mode: 'passthru' }, ctx(), { IPv4Data: [{ Pool: '192.168.11.0/24', Gateway: '192.168.11.1/24' }] }, NET2)
  t.match(macvlanMode.conflictWith?.(pass, a, label), /already the parent of macvlan network lan10, and a passthru macvlan network needs its parent for itself alone/)
  t.match(macvlanMode.conflictWith?.(apart, pass, label), /passthru/)
  const bridgeNet = planNetwork(req({}), bridgeMode, {}, ctx(), NOW)
  t.equal(macvlanMode.conflictWith?.(sameSubnet, bridgeNet, label), undefined, 'a bridge network is left to the shared overlap check')
})

t.test('ipvlan: refused with what the kernel says', async (t) => {
  t.match(refusal(() => modeFor({ 'tsnet.mode': 'ipvlan' }, 'bridge', NO_VLAN)), /tsnet\.mode=ipvlan: this kernel has no ipvlan support \(it refuses to create an ipvlan link: operation not supported\)/)
  t.match(refusal(() => modeFor({ 'tsnet.mode': 'ipvlan' }, 'bridge', FULL_HOST)), /ipvlan mode is not available in this version of tsnet/)
  t.equal(modeFor({ 'tsnet.mode': 'macvlan' }), macvlanMode)
  t.match(refusal(() => modeFor({ 'tsnet.mode': 'toString' })), /is not a mode tsnet knows; it knows bridge, macvlan, overlay/)
})

t.test('stored macvlan records: the spec is checked', async (t) => {
  const n = plan({ ...GEN, parent: 'eth0.10' })
  const bad = (spec: unknown) => checkStoredRecord('networks', NET, { ...n, spec })
  t.match(bad({ ...n.spec, macvlanMode: 'source' }), /field spec\.macvlanMode/)
  t.match(bad({ ...n.spec, vlan: { link: 'eth0', id: 0, mtu: 1500 } }), /field spec\.vlan\.id/)
  t.match(bad({ ...n.spec, parent: 'a b' }), /field spec\.parent/)
  t.match(bad({ parent: 'eth0', macvlanMode: 'bridge' }), /field spec\.parentCreated/)
})
