// tsnet doctor's kernel findings are the engine's own dry-run reconcile said in words: drift is
// made on a FakeHost under a driver built as serve builds it, the dry run's real change strings
// become sentences naming the network and the container, and the same reconcile (not dry) leaves
// nothing to find. Record and host checks are judged on hand-made readings.
import t, { type Test } from 'tap'
import { loadScenario } from '../fixtures/wire/loader.js'
import { Driver } from '../contract/fixtures/driver.js'
import { buildDirectory } from '../../src/observe/directory.js'
import { FIX_RECONCILE, changeProblem, reconcileFindings } from '../../src/observe/findings.js'
import { HOST_CHECKS, hostFindings, type HostReadings } from '../../src/observe/host-checks.js'
import { SETTLED_MS, dockerFindings, leasesWithoutEndpoints } from '../../src/observe/record-checks.js'
import type { EndpointRecord, LeaseRecord, NetworkRecord, PoolRecord } from '../../src/core/records.js'
import { bridgeOf } from '../../src/modes/bridge.js'

const NET = '2c78a1a9b4e08472fe66fb7e6f3ea3fc48456b4b104de5686b6de32bf0400a2b'
const EP = '9c954d84adce0e1500f4721911a7cf3d855d215f0ad979815f1d4fbfc15d5ba1'

/** network 10.77.0.0/24 with one joined container publishing 8080->80/tcp (recorded from Docker). */
async function published(t: Test) {
  const d = await Driver.start(t)
  for (const c of loadScenario('legacy/10-run-publish-p8080').slice(0, 4)) t.equal((await d.send(c.method, c.body)).status, 200, `${c.method} answered`)
  const dir = () => buildDirectory([...d.services.state.networks.values()], [...d.services.state.endpoints.values()], new Map([[NET, 'web']]), new Map([[EP, 'c1']]))
  const findings = async () => reconcileFindings(await d.services.reconciler.pass('request', true), dir())
  return { d, findings, bridge: bridgeOf(d.services.state.networks.get(NET) as NetworkRecord), hostIf: d.services.state.endpoints.get(EP)?.hostIf as string }
}

t.test('clean after the requests; each kind of drift is one sentence naming its owner, and the reconcile repairs it', async (t) => {
  const { d, findings, bridge, hostIf } = await published(t)
  t.same(await findings(), [], 'nothing to find right after the requests')

  const drift: Array<[string, () => void, RegExp]> = [
    ['a deleted bridge', () => d.host.objects.delete(`link ${bridge}`), new RegExp(`the bridge ${bridge} of network web \\(2c78a1a9b4e0\\) is missing`)],
    ['flushed chains', () => d.host.objects.set('chains', { kind: 'chains', intact: false }), /tsnet's firewall chains \(TSNET-\*\), the jumps to them or its ipsets are not as tsnet made them/],
    ['a lost set member', () => d.host.objects.delete(`set tsnet-src4 10.77.0.0/24,${bridge}`), new RegExp(`the ipset tsnet-src4 lacks the member 10.77.0.0/24,${bridge} \\(network web`)],
    ['a lost DNAT rule', () => { for (const k of [...d.host.objects.keys()]) if (k.startsWith('dnat 4 ') && k.includes('--dport 8080')) d.host.objects.delete(k) },
      /the IPv4 DNAT rule of published port tcp\/8080 \(container c1 on network web \(2c78a1a9b4e0\)\) is missing/],
    ['forwarding turned off', () => d.host.objects.set('sysctl net/ipv4/ip_forward', { kind: 'sysctl', path: 'net/ipv4/ip_forward', value: '0' }), /IP forwarding is off/],
    ['a leftover tsnet link', () => d.host.objects.set('link tsbr-deadbeef00', { kind: 'link', name: 'tsbr-deadbeef00', type: 'bridge', alias: 'tsnet:net:deadbeef00', mtu: 1500, up: true, recreate: true }),
      /link tsbr-deadbeef00 carries tsnet's tag, but no network or endpoint of tsnet's wants it/],
  ]
  for (const [what, make, sentence] of drift) {
    make()
    const found = await findings()
    t.ok(found.length >= 1, `${what}: found (${found.map((f) => f.problem).join(' | ')})`)
    t.ok(found.some((f) => sentence.test(f.problem) && f.fix === FIX_RECONCILE && f.remedy === 'reconcile'), `${what}: said as ${sentence}, fixed by tsnet doctor --fix`)
    const repair = await d.services.reconciler.pass('request', false)
    t.same(repair.failed, [], `${what}: the reconcile --fix runs repairs it without failures`)
    t.same(await findings(), [], `${what}: nothing left to find after it`)
  }
  t.ok(d.host.links.has(hostIf), 'the veth is still there')
})

t.test('a joined veth gone with its container, and a name held by someone else, are for the operator', async (t) => {
  const { d, findings, bridge, hostIf } = await published(t)
  d.host.objects.delete(`link ${hostIf}`)
  let found = await findings()
  t.equal(found.length, 1, found.map((f) => f.problem).join(' | '))
  t.match(found[0], { remedy: 'manual', fix: 'docker restart c1', problem: new RegExp(`${hostIf} \\(container c1 on network web .*\\) is gone with its container's end`) })
  await d.services.reconciler.pass('request', false)
  t.equal((await findings()).length, 1, 'the reconcile does not make it again (only Docker can)')

  const other = await published(t)
  const theirs = { kind: 'link' as const, name: other.bridge, type: 'bridge' as const, alias: 'somebody-else', mtu: 1500, up: true, recreate: true }
  other.d.host.objects.set(`link ${other.bridge}`, theirs)
  found = await other.findings()
  t.ok(found.some((f) => f.remedy === 'manual' && f.problem.includes(`a link named ${other.bridge} already exists and is not tsnet's`) && f.fix.includes(`ip link delete ${other.bridge}`)),
    `a foreign link under tsnet's bridge name: ${found.map((f) => f.problem).join(' | ')}`)
  await other.d.services.reconciler.pass('request', false)
  t.same(other.d.host.objects.get(`link ${other.bridge}`), theirs, 'and the reconcile never touches it')
  t.ok(bridge, 'the first driver is still there')
})

t.test('every change kind has a sentence; an unknown one is still said', async (t) => {
  const dir = buildDirectory([], [], new Map(), new Map())
  const cases: Array<[string, RegExp]> = [
    ['update link tsbr-x', /link tsbr-x is not as tsnet set it/],
    ['create addr tsbr-x 10.0.0.1/24', /the address 10.0.0.1\/24 is missing from tsbr-x/],
    ['delete addr tsbr-x 10.0.0.9/24', /tsbr-x carries the address 10.0.0.9\/24, which no tsnet record wants/],
    ['update sysctl net/bridge/bridge-nf-call-iptables', /bridged IPv4 traffic bypasses iptables/],
    ['update sysctl net/ipv4/conf/tsbr-x/route_localnet', /kernel setting net.ipv4.conf.tsbr-x.route_localnet is not what tsnet sets/],
    ['create chains', /are missing/],
    ['delete chains', /no tsnet network needs them/],
    ['delete set tsnet-src4 10.9.0.0/24,tsbr-gone', /holds 10.9.0.0\/24,tsbr-gone, which no tsnet network wants/],
    ['delete dnat 4 -p tcp -m tcp --dport 81 -j DNAT --to-destination 10.0.0.2:80', /TSNET-DNAT holds an IPv4 rule for published port tcp\/81 that no endpoint wants/],
    ['delete port tcp/81 4:0.0.0.0', /tsnet holds host port tcp\/81, which nothing publishes any more/],
    ['create neigh vx0 10.0.0.3', /neighbour entry 10.0.0.3 on vx0 is missing/],
    ['create fdb vx0 02:42:0a:00:00:03 192.0.2.7', /FDB entry 02:42:0a:00:00:03 192.0.2.7 on vx0 is missing/],
    ['rename link x', /the host differs from what tsnet wants: rename link x/],
  ]
  for (const [change, sentence] of cases) t.match(changeProblem(change, dir).problem, sentence, change)
})

const now = Date.parse('2026-03-01T12:00:00Z')
const old = new Date(now - SETTLED_MS - 1000).toISOString()
const young = new Date(now - 5000).toISOString()
const net = (id: string, pool: string): NetworkRecord => ({
  id, mode: 'bridge', spec: { bridge: `tsbr-${id.slice(0, 10)}`, bridgeNamedByUser: false }, mtu: 1500, internal: false, ipv6: false,
  ipv4Subnets: [{ pool, gateway: pool.replace(/0\/24$/, '1/24') }], ipv6Subnets: [], enableIpMasquerade: true, enableIcc: true, genericOptions: {}, createdAt: old,
})
const ep = (id: string, networkId: string, address: string): EndpointRecord => ({
  id, networkId, hostIf: `tsv${id.slice(0, 12)}`, containerIf: `tsc${id.slice(0, 12)}`, mac: '02:42:0a:00:00:02', macFromDocker: false, mtu: 1500, address,
  portMappings: [], exposedPorts: [], joined: true, createdAt: old,
})
const pool = (cidr: string, space = 'LocalDefault'): PoolRecord => ({ id: `${space}/${cidr}`, addressSpace: space, pool: cidr, v6: false, options: {}, createdAt: old })
const lease = (p: PoolRecord, address: string, createdAt = old, kind: LeaseRecord['kind'] = 'endpoint'): LeaseRecord => ({ poolId: p.id, address, kind, owner: 'c9', createdAt })

t.test('leases without endpoints: only settled endpoint leases of tsnet networks\' pools', async (t) => {
  const a = '0a'.repeat(32)
  const p = pool('10.5.0.0/24')
  const other = pool('10.6.0.0/24') // serves a network of another driver
  const global = pool('10.7.0.0/24', 'GlobalDefault')
  const records = {
    networks: [net(a, '10.5.0.0/24'), net('0b'.repeat(32), '10.7.0.0/24')],
    endpoints: [ep('e1'.repeat(32), a, '10.5.0.2/24')],
    pools: [p, other, global],
    leases: [lease(p, '10.5.0.1', old, 'gateway'), lease(p, '10.5.0.2'), lease(p, '10.5.0.3'), lease(p, '10.5.0.4', young), lease(other, '10.6.0.2'), lease(global, '10.7.0.2')],
  }
  const dir = buildDirectory(records.networks, records.endpoints, new Map([[a, 'web']]), new Map())
  const found = leasesWithoutEndpoints(records, dir, now)
  t.equal(found.length, 1, found.map((f) => f.problem).join(' | '))
  t.match(found[0], { area: 'store', remedy: 'collect', problem: /address 10.5.0.3 of network web \(0a0a0a0a0a0a\) is leased to c9, but no endpoint of tsnet's has it/ })
})

t.test("Docker's view: what it does not explain, once settled", async (t) => {
  const a = '0a'.repeat(32)
  const gone = '0c'.repeat(32)
  const p = pool('10.5.0.0/24')
  const records = {
    networks: [net(a, '10.5.0.0/24'), { ...net(gone, '10.8.0.0/24') }, { ...net('0d'.repeat(32), '10.9.0.0/24'), createdAt: young }],
    endpoints: [ep('e1'.repeat(32), a, '10.5.0.2/24'), ep('e2'.repeat(32), a, '10.5.0.3/24')],
    pools: [p],
    leases: [lease(p, '10.5.0.2'), lease(p, '10.5.0.3'), lease(p, '10.5.0.4')],
  }
  const docker = {
    engineId: 'ENG',
    networks: [{ id: a, scope: 'local', ipam: [{ subnet: '10.5.0.0/24', gateway: '10.5.0.1', auxAddresses: [] }], endpoints: [{ endpointId: 'e1'.repeat(32), ipv4: '10.5.0.2/24', container: 'c1' }] }],
  }
  const dir = buildDirectory(records.networks, records.endpoints, new Map([[a, 'web']]), new Map([['e1'.repeat(32), 'c1']]))
  const found = dockerFindings(records, docker, dir, now).map((f) => f.problem)
  t.same(found.sort(), [
    `address 10.5.0.3 of pool LocalDefault/10.5.0.0/24 is leased, but no container, gateway or aux address of Docker's has it`,
    `address 10.5.0.4 of pool LocalDefault/10.5.0.0/24 is leased, but no container, gateway or aux address of Docker's has it`,
    `endpoint e2e2e2e2e2e2 on network web (0a0a0a0a0a0a) is in tsnet's store, but Docker has no such endpoint`,
    `network 0c0c0c0c0c0c is in tsnet's store, but Docker no longer knows it`,
  ], 'the young network (created 5 s ago) is left out')
})

t.test('host checks', async (t) => {
  const a = '0a'.repeat(32)
  const networks = [net(a, '10.5.0.0/24'), { ...net('0b'.repeat(32), '10.6.0.0/24'), internal: true, mtu: 9000 }]
  const dir = buildDirectory(networks, [], new Map([[a, 'web']]), new Map())
  const clean: HostReadings = {
    routes: [{ dst: '10.5.0.0/24', dev: 'tsbr-0a0a0a0a0a' }, { dst: '192.168.1.0/24', dev: 'eth0' }],
    uplink: { dev: 'eth0', mtu: 1500 }, brNetfilter: true, forwarding: { 4: '1', 6: '0' }, forwardPolicy: { 4: 'DROP', 6: 'ACCEPT' },
  }
  t.same(hostFindings(networks, clean, dir), [], "clean: the network's own route, an internal network's MTU, IPv6 forwarding off with ACCEPT")
  t.equal(HOST_CHECKS.length, 8, "eight checks: these four and overlay mode's four (test/unit/overlay-doctor.test.ts)")
  const bad: HostReadings = { ...clean, routes: [...clean.routes, { dst: '10.0.0.0/8', dev: 'wg0' }], uplink: { dev: 'eth0', mtu: 1450 }, brNetfilter: false, forwardPolicy: { 4: 'ACCEPT' } }
  const found = hostFindings(networks, bad, dir)
  t.same(found.map((f) => f.problem), [
    "subnet 10.5.0.0/24 of network web (0a0a0a0a0a0a) overlaps the host's route 10.0.0.0/8 dev wg0: traffic to those addresses may leave the wrong way",
    "subnet 10.6.0.0/24 of network 0b0b0b0b0b0b overlaps the host's route 10.0.0.0/8 dev wg0: traffic to those addresses may leave the wrong way",
    "the br_netfilter module is not loaded: traffic inside a bridge bypasses iptables, so enable_icc=false and tsnet's anti-spoofing rules do not hold",
    "forwarding is on but iptables' FORWARD policy is ACCEPT: this host routes traffic between any of its interfaces (tsnet's own networks stay closed by its chains; Docker and tsnet set DROP when they turn forwarding on)",
    'network web (0a0a0a0a0a0a) has MTU 1500, but the uplink eth0 carries 1450: its containers\' large packets to the outside are dropped or fragmented',
  ])
  t.ok(found.every((f) => f.remedy === 'manual' && f.fix.length > 10), 'each for the operator, with a command')
  t.match(found[2]?.fix, /modprobe br_netfilter/)
  t.match(found[3]?.fix, /iptables -P FORWARD DROP/)
  t.match(found[4]?.fix, /com.docker.network.driver.mtu=1450/)
})

t.test("an overlay network's VXLAN device and a macvlan endpoint are named as what they are", async (t) => {
  const OV = 'q1w2e3r4t5y6u7i8o9p0asdfg'
  const net = {
    id: OV, mode: 'overlay', mtu: 1450, internal: false, ipv6: false, ipv4Subnets: [{ pool: '10.210.0.0/24' }], ipv6Subnets: [],
    enableIpMasquerade: false, enableIcc: true, genericOptions: {}, createdAt: '', spec: { vxlan: 'tsvx-q1w2e3r4t5', vni: 300, port: 4789, underlayMtu: 1500 },
  } as NetworkRecord
  const ep = { id: EP, networkId: OV, containerIf: `tsm${EP.slice(0, 12)}`, mac: '02:42:0a:d2:00:07', macFromDocker: false, mtu: 1450, joined: false, createdAt: '' } as EndpointRecord
  const named = buildDirectory([net], [ep], new Map([[OV, 'ov']]), new Map([[EP, 'c1']]))
  t.match(changeProblem('create link tsvx-q1w2e3r4t5', named).problem, /^the VXLAN device tsvx-q1w2e3r4t5 of network ov \(q1w2e3r4t5y6\) is missing/)
  t.match(changeProblem(`create link tsm${EP.slice(0, 12)}`, named).problem, new RegExp(`^tsm${EP.slice(0, 12)}, the macvlan link of container c1 on network ov .* is missing`))
  t.match(changeProblem(`create link tsm${EP.slice(0, 12)}`, buildDirectory([], [], new Map(), new Map())).problem, /^link tsm\w+ is missing/, 'control: unknown to the directory, it is just a link')
})
