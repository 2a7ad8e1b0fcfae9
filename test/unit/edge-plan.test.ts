// core/edge-plan: the fixed chains, the ipset entries of networks and policies, and DNAT rules.
import fc from 'fast-check'
import t from 'tap'
import {
  ALL_SETS, BASE_SETS, CHAIN, DOCKER_BRIDGES, DOCKER_USER, DROP, FAMILIES, FOREIGN_TAG, GROUP, LEGACY_JUMPS, LOOPBACK, MAX_ALLOW_ENTRIES, SET_KINDS, SET_TYPE,
  allowEntries, allowEntryCount, checkPolicySize, deviceGroupOf, dnatRule, endpointTag, entriesOfNetwork, entryKey, filterRules, foreignEntries, jumps,
  guardRank, inGuardOrder, needsRouteLocalnet, networkEntries, OVERLAY_GROUP, OVERLAY_TO_HOST_RULE, postroutingRules, rawRules, setName, vtepPassRule, vxlanGuardRule, type EdgeNetwork, type NameResolver, type SetEntry,
} from '../../src/core/edge-plan.js'
import { bridgeEdge, bridgeOf } from '../../src/modes/bridge.js'
import { networkTag } from '../../src/core/names.js'
import { parsePolicy } from '../../src/core/policy.js'
import type { EndpointRecord, NetworkRecord, PublishedPort } from '../../src/core/records.js'
import { dockerId } from './fixtures/util.js'

const NET = dockerId('aa11')
const TAG = networkTag(NET)
const NOW = '2026-01-01T00:00:00.000Z'

/** Record fields, with the bridge name at the top for brevity. */
type Over = Partial<Omit<NetworkRecord, 'mode' | 'spec'>> & { bridge?: string }

function record(over: Over = {}): NetworkRecord {
  const { bridge = 'tsbr-aa11012345', ...rest } = over
  return {
    id: NET,
    mode: 'bridge',
    spec: { bridge, bridgeNamedByUser: false },
    mtu: 1500,
    internal: false,
    ipv6: false,
    ipv4Subnets: [{ pool: '172.18.0.0/16', gateway: '172.18.0.1/16' }],
    ipv6Subnets: [],
    enableIpMasquerade: true,
    enableIcc: true,
    genericOptions: {},
    createdAt: NOW,
    ...rest,
  }
}
/** What the edge sees of a bridge network (as the bridge mode says). */
function network(over: Over = {}): EdgeNetwork {
  const n = record(over)
  return bridgeEdge(n, bridgeOf(n))
}
const dual = (over: Over = {}) => network({ ipv6: true, ipv6Subnets: [{ pool: 'fd00:1::/64', gateway: 'fd00:1::1/64' }], ...over })

function endpoint(lead: string, address?: string, addressV6?: string): EndpointRecord {
  const id = dockerId(lead)
  return {
    id,
    networkId: NET,
    hostIf: `tsv${id.slice(0, 12)}`,
    containerIf: `tsc${id.slice(0, 12)}`,
    mac: '02:42:ac:12:00:02',
    macFromDocker: false,
    mtu: 1500,
    ...(address ? { address } : {}),
    ...(addressV6 ? { addressV6 } : {}),
    portMappings: [],
    exposedPorts: [],
    joined: true,
    createdAt: NOW,
  }
}

const allow4 = (entry: string): SetEntry => ({ set: 'tsnet-allow4', entry, comment: TAG })
const allow6 = (entry: string): SetEntry => ({ set: 'tsnet-allow6', entry, comment: TAG })
const resolver = (names: Record<string, string[]>): NameResolver => (name) => names[name] ?? []

t.test('constants: sets, chains, jumps', async (t) => {
  t.same(FAMILIES, [4, 6])
  // vtep: the swarm's hosts, the only sources of overlay VXLAN (made with the first overlay network).
  t.same(SET_KINDS, ['src', 'masq', 'allow', 'foreign', 'vtep'])
  t.same(SET_TYPE, { src: 'hash:net,iface', masq: 'hash:net', allow: 'hash:ip,port,net', foreign: 'hash:net', vtep: 'hash:ip' })
  t.equal(setName('allow', 6), 'tsnet-allow6')
  t.same(ALL_SETS, ['tsnet-src4', 'tsnet-masq4', 'tsnet-allow4', 'tsnet-foreign4', 'tsnet-vtep4', 'tsnet-src6', 'tsnet-masq6', 'tsnet-allow6', 'tsnet-foreign6', 'tsnet-vtep6'])
  t.same(BASE_SETS, ['tsnet-src4', 'tsnet-masq4', 'tsnet-allow4', 'tsnet-foreign4', 'tsnet-src6', 'tsnet-masq6', 'tsnet-allow6', 'tsnet-foreign6'], 'hosts with bridges only get no VTEP sets')
  t.same(CHAIN, { forward: 'TSNET-FORWARD', from: 'TSNET-FROM', to: 'TSNET-TO', dnat: 'TSNET-DNAT', postrouting: 'TSNET-POSTROUTING', raw: 'TSNET-RAW', input: 'TSNET-INPUT', prerouting: 'TSNET-PREROUTING' })
  t.equal(DOCKER_USER, 'DOCKER-USER')
  t.same(LOOPBACK, { 4: '127.0.0.0/8', 6: '::1/128' })
  for (const f of FAMILIES) {
    t.same(jumps(f), [
      { table: 'filter', chain: 'FORWARD', rule: '-j TSNET-FORWARD' },
      { table: 'filter', chain: 'DOCKER-USER', rule: '-j TSNET-FORWARD' },
      { table: 'nat', chain: 'PREROUTING', rule: `! -d ${LOOPBACK[f]} -m addrtype --dst-type LOCAL -j TSNET-DNAT` },
      { table: 'nat', chain: 'OUTPUT', rule: '-m addrtype --dst-type LOCAL -j TSNET-DNAT' },
      { table: 'nat', chain: 'POSTROUTING', rule: '-j TSNET-POSTROUTING' },
      { table: 'raw', chain: 'PREROUTING', rule: '-j TSNET-RAW' },
    ], `IPv${f}: FORWARD and DOCKER-USER jump to TSNET-FORWARD; DNAT for local destinations (from outside: not loopback ones); POSTROUTING; raw PREROUTING`)
  }
  t.same(LEGACY_JUMPS, [{ table: 'nat', chain: 'PREROUTING', rule: '-m addrtype --dst-type LOCAL -j TSNET-DNAT' }], 'the PREROUTING jump of earlier versions, which DNATed 127.0.0.1 from anywhere, is known so it can go')
  t.notOk(FAMILIES.some((f) => jumps(f).some((j) => LEGACY_JUMPS.some((l) => l.table === j.table && l.chain === j.chain && l.rule === j.rule))), 'no legacy jump is a current one')
  t.equal(entryKey({ set: 'tsnet-src4', entry: '10.0.0.0/8,br0', comment: 'x' }), 'tsnet-src4 10.0.0.0/8,br0', 'the key ignores the comment')
  t.equal(FOREIGN_TAG, 'tsnet:docker')
  t.same(Object.values(DROP), ['tsnet: icc disabled', 'tsnet: spoofed source', 'tsnet: internal network', 'tsnet: to a Docker network', 'tsnet: not allowed', 'tsnet: loopback from outside'], 'the documented drop comments')
  t.same(DOCKER_BRIDGES, ['docker0', 'docker_gwbridge', 'br-+'], 'Docker\'s bridge names: default, swarm egress, user networks')
})

t.test('deviceGroupOf', async (t) => {
  t.equal(GROUP.base, 0x74730000)
  t.equal(deviceGroupOf({ enableIcc: true, internal: false }), 0x74730000, 'plain network: the marker only')
  t.equal(deviceGroupOf({ enableIcc: false, internal: false }), 0x74730001, 'ICC off sets 0x1')
  t.equal(deviceGroupOf({ enableIcc: true, internal: true }), 0x74730002, 'internal sets 0x2')
  t.equal(deviceGroupOf({ enableIcc: false, internal: true }), 0x74730003, 'both flags')
  for (const g of [true, false].flatMap((icc) => [true, false].map((internal) => deviceGroupOf({ enableIcc: icc, internal })))) {
    t.equal((g & GROUP.mask) >>> 0, GROUP.base, `0x${g.toString(16)} carries the tsnet marker under the mask`)
  }
  t.equal(deviceGroupOf(record()), 0x74730000, 'from a whole record')
})

t.test('filterRules: fixed, per family, referencing the family\'s sets', async (t) => {
  t.equal(filterRules.length, 1, 'takes only the family: no per-network input, so the rule count is flat at any number of networks')
  for (const f of FAMILIES) {
    const other = f === 4 ? 6 : 4
    const r = filterRules(f)
    t.same(filterRules(f), r, `IPv${f}: deterministic`)
    t.same(Object.keys(r), ['forward', 'from', 'to'])
    t.same(r.forward, ['-m devgroup --src-group 0x74730000/0xffff0000 -j TSNET-FROM', '-m devgroup --dst-group 0x74730000/0xffff0000 -j TSNET-TO'])
    t.same(r.from, [
      '-m physdev --physdev-is-bridged -m devgroup --src-group 0x1/0x1 -m comment --comment "tsnet: icc disabled" -j DROP',
      '-m physdev --physdev-is-bridged -j ACCEPT',
      `-m set ! --match-set tsnet-src${f} src,src -m comment --comment "tsnet: spoofed source" -j DROP`,
      '-m devgroup --src-group 0x2/0x2 -m comment --comment "tsnet: internal network" -j DROP',
      '-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT',
      '-m devgroup --dst-group 0x74730000/0xffff0000 -j TSNET-TO',
      '-o docker0 -m comment --comment "tsnet: to a Docker network" -j DROP',
      '-o docker_gwbridge -m comment --comment "tsnet: to a Docker network" -j DROP',
      '-o br-+ -m comment --comment "tsnet: to a Docker network" -j DROP',
      `-m set --match-set tsnet-foreign${f} dst -m comment --comment "tsnet: to a Docker network" -j DROP`,
      '-j ACCEPT',
    ], `IPv${f}: the FROM chain`)
    t.same(r.to, [
      '-m devgroup --dst-group 0x2/0x2 -m comment --comment "tsnet: internal network" -j DROP',
      '-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT',
      '-m conntrack --ctstate DNAT -j ACCEPT',
      `-m set --match-set tsnet-allow${f} dst,dst,src -j ACCEPT`,
      '-m comment --comment "tsnet: not allowed" -j DROP',
    ], `IPv${f}: the TO chain ends in the not-allowed drop`)
    const all = [...r.forward, ...r.from, ...r.to].join('\n')
    t.notMatch(all, new RegExp(`tsnet-\\w+${other}\\b`), `IPv${f}: no IPv${other} set is referenced`)
    const times: Partial<Record<string, number>> = { [DROP.internal]: 2, [DROP.docker]: 4, [DROP.loopback]: 0 }
    for (const why of Object.values(DROP)) t.equal(all.split(`"${why}"`).length - 1, times[why] ?? 1, `IPv${f}: "${why}" counted`)
    const from = r.from.join('\n')
    t.ok(from.indexOf('-j TSNET-TO') < from.indexOf('-o br-+'), `IPv${f}: a tsnet bridge named br-... is decided by TSNET-TO before the Docker names`)
  }
})

t.test('rawRules: nothing from outside lo is addressed to loopback', async (t) => {
  t.same(rawRules(4), ['-d 127.0.0.0/8 ! -i lo -m comment --comment "tsnet: loopback from outside" -j DROP'])
  t.same(rawRules(6), ['-d ::1/128 ! -i lo -m comment --comment "tsnet: loopback from outside" -j DROP'])
})

t.test('the overlay-to-host drop (TSNET-INPUT sees every packet for the host) matches overlay bridges and nothing else', async (t) => {
  const m = /--src-group (0x[0-9a-f]+)\/(0x[0-9a-f]+)/.exec(OVERLAY_TO_HOST_RULE)
  t.ok(m, 'a devgroup match')
  const [value, mask] = [Number(m?.[1]), Number(m?.[2])]
  const matches = (group: number) => ((group & mask) >>> 0) === value
  t.ok(matches(OVERLAY_GROUP), 'an overlay bridge')
  for (const icc of [true, false]) {
    for (const internal of [true, false]) t.notOk(matches(deviceGroupOf({ enableIcc: icc, internal })), `a bridge network (icc ${icc}, internal ${internal})`)
  }
  t.notOk(matches(0), "the default group (the host's own interfaces, Docker's bridges)")
  t.notOk(matches(GROUP.overlay), "another tool's group with the overlay bit but not tsnet's marker")
  t.notOk(matches(0x74720004), 'a marker one bit off')
})

t.test('needsRouteLocalnet: IPv4 ports the host reaches through 127.0.0.1', async (t) => {
  const p = (family: 4 | 6, hostIp: string) => ({ family, hostIp })
  t.equal(needsRouteLocalnet([]), false, 'nothing published')
  t.equal(needsRouteLocalnet([p(4, '')]), true, 'a wildcard binding (the host connects through 127.0.0.1 too)')
  t.equal(needsRouteLocalnet([p(4, '0.0.0.0')]), true, 'an explicit wildcard')
  t.equal(needsRouteLocalnet([p(4, '127.0.0.1')]), true, 'a loopback binding')
  t.equal(needsRouteLocalnet([p(4, '127.1.2.3')]), true, 'anywhere in 127.0.0.0/8')
  t.equal(needsRouteLocalnet([p(4, '192.0.2.10')]), false, 'a specific host address: the host connects from it, not from 127.0.0.1')
  t.equal(needsRouteLocalnet([p(4, '128.0.0.1'), p(4, '12.7.0.1')]), false, 'addresses that only look close')
  t.equal(needsRouteLocalnet([p(6, ''), p(6, '::'), p(6, '::1')]), false, 'IPv6: the kernel never routes ::1 off lo, route_localnet is IPv4\'s')
  t.equal(needsRouteLocalnet([p(4, '192.0.2.10'), p(4, '')]), true, 'any one port is enough')
  t.equal(needsRouteLocalnet(new Set([p(4, '127.0.0.1')])), true, 'any iterable')
})

t.test('postroutingRules', async (t) => {
  t.equal(postroutingRules.length, 1, 'takes only the family')
  t.same(postroutingRules(4), [
    '-m conntrack --ctstate DNAT -m set --match-set tsnet-src4 src,dst -j MASQUERADE',
    '-s 127.0.0.0/8 -m devgroup --dst-group 0x74730000/0xffff0000 -j MASQUERADE',
    '-m devgroup --dst-group 0x74730000/0xffff0000 -j RETURN',
    '-m set --match-set tsnet-masq4 src -j MASQUERADE',
  ], 'IPv4: hairpin, localhost, no NAT towards tsnet bridges, egress')
  t.same(postroutingRules(6), [
    '-m conntrack --ctstate DNAT -m set --match-set tsnet-src6 src,dst -j MASQUERADE',
    '-m devgroup --dst-group 0x74730000/0xffff0000 -j RETURN',
    '-m set --match-set tsnet-masq6 src -j MASQUERADE',
  ], 'IPv6: no localhost rule (::1 cannot be forwarded)')
})

t.test('networkEntries', async (t) => {
  const br = 'tsbr-aa11012345'
  t.same(networkEntries(network()), [
    { set: 'tsnet-src4', entry: `172.18.0.0/16,${br}`, comment: TAG },
    { set: 'tsnet-masq4', entry: '172.18.0.0/16', comment: TAG },
  ], 'IPv4: src (subnet, bridge) and masq')
  t.same(networkEntries(network({ ipv4Subnets: [], ipv6: true, ipv6Subnets: [{ pool: 'fd00:1::/64' }] })), [
    { set: 'tsnet-src6', entry: `fd00:1::/64,${br}`, comment: TAG },
    { set: 'tsnet-masq6', entry: 'fd00:1::/64', comment: TAG },
  ], 'IPv6 only')
  t.same(networkEntries(dual()), [
    { set: 'tsnet-src4', entry: `172.18.0.0/16,${br}`, comment: TAG },
    { set: 'tsnet-masq4', entry: '172.18.0.0/16', comment: TAG },
    { set: 'tsnet-src6', entry: `fd00:1::/64,${br}`, comment: TAG },
    { set: 'tsnet-masq6', entry: 'fd00:1::/64', comment: TAG },
  ], 'dual stack: each family in its own sets')
  t.same(networkEntries(network({ ipv4Subnets: [{ pool: '172.18.0.0/16' }, { pool: '10.5.0.0/24' }] })).map(entryKey), [
    `tsnet-src4 172.18.0.0/16,${br}`, 'tsnet-masq4 172.18.0.0/16', `tsnet-src4 10.5.0.0/24,${br}`, 'tsnet-masq4 10.5.0.0/24',
  ], 'every subnet')
  t.same(networkEntries(dual({ enableIpMasquerade: false })).map(entryKey), [`tsnet-src4 172.18.0.0/16,${br}`, `tsnet-src6 fd00:1::/64,${br}`],
    'masquerade off: no masq entries')
  t.same(networkEntries(dual({ internal: true })).map(entryKey), [`tsnet-src4 172.18.0.0/16,${br}`, `tsnet-src6 fd00:1::/64,${br}`],
    'internal: no masq entry even with masquerade on')
  t.same(networkEntries(network({ ipv4Subnets: [{ pool: '0.0.0.0/0' }] })), [
    { set: 'tsnet-src4', entry: `0.0.0.0/1,${br}`, comment: TAG },
    { set: 'tsnet-masq4', entry: '0.0.0.0/1', comment: TAG },
    { set: 'tsnet-src4', entry: `128.0.0.0/1,${br}`, comment: TAG },
    { set: 'tsnet-masq4', entry: '128.0.0.0/1', comment: TAG },
  ], '0.0.0.0/0 (null IPAM) is entered as its two halves')
  t.same(networkEntries(network({ ipv4Subnets: [], ipv6Subnets: [{ pool: '::/0' }], enableIpMasquerade: false })).map(entryKey),
    [`tsnet-src6 ::/1,${br}`, `tsnet-src6 8000::/1,${br}`], '::/0 as its two halves')
  t.same(networkEntries(network({ ipv4Subnets: [{ pool: '172.18.9.9/16' }] })).map((e) => e.entry), [`172.18.0.0/16,${br}`, '172.18.0.0/16'], 'a pool with host bits is canonicalized')
  t.same(networkEntries(network({ ipv4Subnets: [{ pool: 'nonsense' }] })), [], 'an unreadable pool contributes nothing')
  t.same(networkEntries(network({ ipv4Subnets: [] })), [], 'no subnets, no entries')
  t.equal(networkEntries(network({ bridge: 'mybr0' }))[0]?.entry, '172.18.0.0/16,mybr0', 'the bridge the network really has')
  t.equal(networkEntries(network({ id: dockerId('ff99') }))[0]?.comment, 'tsnet:net:ff9901234567', 'commented with the network tag')
})

t.test('allowEntries: endpoints × ports × resolved sources, per family', async (t) => {
  const n = dual()
  const e1 = endpoint('e1', '172.18.0.2/16', 'fd00:1::2/64')
  const e2 = endpoint('e2', '172.18.0.3/16')
  const e3 = endpoint('e3', undefined, 'fd00:1::4/64')
  const rules = parsePolicy('ui tcp/80,udp/53; 10.99.0.0/16 icmp; 2001:db8::/48 tcp/443')
  const resolve = resolver({ ui: ['10.1.0.0/16', 'fd00:9::/64'] })
  t.same(allowEntries(n, [e1, e2, e3], rules, resolve), [
    allow4('172.18.0.2,tcp:80,10.1.0.0/16'),
    allow4('172.18.0.2,udp:53,10.1.0.0/16'),
    allow4('172.18.0.2,icmp:echo-request,10.99.0.0/16'),
    allow6('fd00:1::2,tcp:80,fd00:9::/64'),
    allow6('fd00:1::2,udp:53,fd00:9::/64'),
    allow6('fd00:1::2,tcp:443,2001:db8::/48'),
    allow4('172.18.0.3,tcp:80,10.1.0.0/16'),
    allow4('172.18.0.3,udp:53,10.1.0.0/16'),
    allow4('172.18.0.3,icmp:echo-request,10.99.0.0/16'),
    allow6('fd00:1::4,tcp:80,fd00:9::/64'),
    allow6('fd00:1::4,udp:53,fd00:9::/64'),
    allow6('fd00:1::4,tcp:443,2001:db8::/48'),
  ], 'each endpoint address meets only the sources of its own family')

  t.same(allowEntries(n, [e3], parsePolicy('10.0.0.0/8 tcp/80'), resolve), [], 'an IPv4 source gives nothing for an IPv6-only endpoint')
  t.same(allowEntries(n, [e2], parsePolicy('fd00::/8 tcp/80'), resolve), [], 'an IPv6 source gives nothing for an IPv4-only endpoint')
  t.same(allowEntries(n, [e1], parsePolicy('ops icmp'), resolver({ ops: ['10.7.0.0/24', 'fd00:7::/64'] })), [
    allow4('172.18.0.2,icmp:echo-request,10.7.0.0/24'),
    allow6('fd00:1::2,icmpv6:echo-request,fd00:7::/64'),
  ], 'icmp: echo-request for IPv4, icmpv6:echo-request for IPv6')
  t.same(allowEntries(n, [e1, e2], parsePolicy('ghost tcp/80'), resolve), [], 'a name that resolves to nothing allows nothing')
  t.same(allowEntries(n, [e1], parsePolicy('ghost,ui tcp/80'), resolve).map((e) => e.entry), ['172.18.0.2,tcp:80,10.1.0.0/16', 'fd00:1::2,tcp:80,fd00:9::/64'],
    'an unknown name next to a known one: only the known one counts')
  t.same(allowEntries(dual({ internal: true }), [e1], rules, resolve), [], 'an internal network accepts nothing')
  t.same(allowEntries(n, [e1], [], resolve), [], 'no policy, no entries')
  t.same(allowEntries(n, [], rules, resolve), [], 'no endpoints, no entries')
  t.same(allowEntries(n, [endpoint('e4')], rules, resolve), [], 'an endpoint without addresses')
  t.same(allowEntries(n, [endpoint('e5', 'garbage')], rules, resolve), [], 'an unreadable endpoint address is skipped')
})

t.test('allowEntries: ranges, counts, canonical and unbounded sources, duplicates', async (t) => {
  const n = dual()
  const e1 = endpoint('e1', '172.18.0.2/16', 'FD00:1:0::2/64')
  t.same(allowEntries(n, [e1], parsePolicy('10.0.0.1 tcp/8000-8002,sctp/9'), resolver({})).map((e) => e.entry), [
    '172.18.0.2,tcp:8000,10.0.0.1/32', '172.18.0.2,tcp:8001,10.0.0.1/32', '172.18.0.2,tcp:8002,10.0.0.1/32', '172.18.0.2,sctp:9,10.0.0.1/32',
  ], 'a range gives every port in order; a single address is a /32')
  t.same(allowEntries(n, [e1], parsePolicy('2001:db8::1 udp/5'), resolver({})), [allow6('fd00:1::2,udp:5,2001:db8::1/128')], 'the endpoint address in canonical form')
  const many = [1, 2, 3].map((i) => endpoint(`e${i}`, `172.18.0.${i + 10}/16`, `fd00:1::${i + 10}/64`))
  const resolveMany = resolver({ a: ['10.1.0.0/16', '10.2.0.0/16', 'fd00:a::/64'], b: ['10.3.0.0/16'] })
  const out = allowEntries(n, many, parsePolicy('a,b tcp/1-4,icmp'), resolveMany)
  t.equal(out.filter((e) => e.set === 'tsnet-allow4').length, 3 * 3 * 5, 'IPv4: 3 endpoints × 3 sources × 5 ports')
  t.equal(out.filter((e) => e.set === 'tsnet-allow6').length, 3 * 1 * 5, 'IPv6: 3 endpoints × 1 source × 5 ports')
  t.ok(out.every((e) => e.comment === TAG), 'all commented with the network tag')

  t.same(allowEntries(n, [e1], parsePolicy('ui,ui tcp/80,tcp/80; ui tcp/80; 10.1.2.3/16 tcp/80'), resolver({ ui: ['10.1.0.0/16', '10.1.0.0/16'] })),
    [allow4('172.18.0.2,tcp:80,10.1.0.0/16')], 'duplicates from names, rules, ports and CIDRs collapse into one entry')
  t.same(allowEntries(n, [e1], parsePolicy('ui tcp/80'), resolver({ ui: ['10.1.2.3/16'] })), [allow4('172.18.0.2,tcp:80,10.1.0.0/16')],
    'a resolved subnet with host bits is canonicalized')
  t.same(allowEntries(n, [e1], parsePolicy('any tcp/80'), resolver({ any: ['0.0.0.0/0', '::/0'] })).map((e) => e.entry), [
    '172.18.0.2,tcp:80,0.0.0.0/1', '172.18.0.2,tcp:80,128.0.0.0/1', 'fd00:1::2,tcp:80,::/1', 'fd00:1::2,tcp:80,8000::/1',
  ], 'a named network with an unbounded pool is entered as two halves (hash:net refuses /0)')
  t.same(allowEntries(n, [e1], parsePolicy('odd tcp/80'), resolver({ odd: ['not-a-cidr', '10.0.0.1', ''] })), [], 'resolved junk is ignored')
})

/** Runs `fn`, returning its outcome with the time taken and how much the heap grew meanwhile. */
function measured<T>(fn: () => T): { value?: T; err?: unknown; ms: number; heapMb: number } {
  const heap = process.memoryUsage().heapUsed
  const started = performance.now()
  try {
    const value = fn()
    return { value, ms: performance.now() - started, heapMb: (process.memoryUsage().heapUsed - heap) / 2 ** 20 }
  } catch (err) {
    return { err, ms: performance.now() - started, heapMb: (process.memoryUsage().heapUsed - heap) / 2 ** 20 }
  }
}

/** `count` single addresses 10.a.b.1, and the 64 ranges that cover every port once. */
const addresses = (count: number) => Array.from({ length: count }, (_, i) => `10.${Math.floor(i / 250)}.${i % 250}.1`)
const EVERY_PORT = Array.from({ length: 64 }, (_, i) => `tcp/${i * 1024 + 1}-${Math.min(65535, i * 1024 + 1024)}`).join(',')

t.test('a policy is counted before it is expanded (finding 5)', async (t) => {
  const n = network()
  const e1 = endpoint('e1', '172.18.0.2/16')
  // The shape that froze the daemon for 81 s: a ~3,100-character policy of 200 sources x every port.
  const huge = parsePolicy(`${addresses(200).join(',')} ${EVERY_PORT}`)
  t.equal(allowEntryCount(n, [e1], huge, resolver({})), 200 * 65535, 'counted: 200 sources x 65,535 ports for one container')
  const r = measured(() => allowEntries(n, [e1], huge, resolver({})))
  t.match(r.err, { name: 'TsnetError', kind: 'invalid', message: new RegExp(`the tsnet.allow policy of network ${NET.slice(0, 12)} \\("10\\.0\\.0\\.1/32,[^)]*\\) would put 13107000 entries in the firewall for its containers \\(1 x 13107000 port/source pairs over IPv4\\); at most 65536 are allowed per network`) },
    'refused with a sentence naming the network, the policy and the count')
  t.ok(r.ms < 1000, `refused in ${r.ms.toFixed(0)} ms (bound 1 s)`)
  t.ok(r.heapMb < 32, `the heap grew ${r.heapMb.toFixed(1)} MB meanwhile (bound 32 MB; the expansion needed gigabytes)`)
  const stored = network({ policy: `${addresses(200).join(',')} ${EVERY_PORT}` })
  const e = measured(() => entriesOfNetwork(stored, [e1, endpoint('e2', '172.18.0.3/16')], resolver({})))
  t.match(e.err, { kind: 'invalid', message: /would put 26214000 entries in the firewall for its containers \(2 x 13107000 port\/source pairs over IPv4\)/ }, 'two endpoints: twice as many')
  t.ok(e.ms < 1000 && e.heapMb < 32, `entriesOfNetwork refused in ${e.ms.toFixed(0)} ms, heap +${e.heapMb.toFixed(1)} MB (two endpoints ran the heap out before)`)
})

t.test('checkPolicySize: with no endpoint yet, one container per family is counted', async (t) => {
  const huge = `${addresses(200).join(',')} ${EVERY_PORT}`
  const r = measured(() => checkPolicySize(network({ policy: huge }), [], resolver({})))
  t.match(r.err, { kind: 'invalid', message: /would put 13107000 entries in the firewall for its first container \(1 x 13107000 port\/source pairs over IPv4\)/ },
    'at CreateNetwork and `tsnet policy set` on an empty network, a policy no container could take is refused')
  t.ok(r.ms < 1000 && r.heapMb < 32, `in ${r.ms.toFixed(0)} ms, heap +${r.heapMb.toFixed(1)} MB`)
  const atCap = `${addresses(64).join(',')} tcp/1-1024`
  t.equal(allowEntryCount(network(), [endpoint('e1', '172.18.0.2/16')], parsePolicy(atCap), resolver({})), MAX_ALLOW_ENTRIES, 'precondition: 64 sources x 1,024 ports is exactly the cap')
  t.doesNotThrow(() => checkPolicySize(network({ policy: atCap }), [], resolver({})), 'a policy at the cap is accepted')
  t.throws(() => checkPolicySize(network({ policy: `${atCap},icmp` }), [], resolver({})), { kind: 'invalid', message: /would put 65600 entries/ }, 'one more pair per source is not')
  const ok = measured(() => entriesOfNetwork(network({ policy: atCap }), [endpoint('e1', '172.18.0.2/16')], resolver({})))
  t.equal(ok.err, undefined, 'positive control: a policy just under the cap is expanded')
  t.equal(ok.value?.filter((e) => e.set === 'tsnet-allow4').length, MAX_ALLOW_ENTRIES, 'into exactly the counted entries')
  t.ok(ok.ms < 2000, `in ${ok.ms.toFixed(0)} ms`)

  const v6 = '2001:db8::1 tcp/1-1024'
  const both = `${addresses(40).join(',')},${Array.from({ length: 40 }, (_, i) => `2001:db8::${i + 1}`).join(',')} tcp/1-1024`
  t.doesNotThrow(() => checkPolicySize(network({ policy: v6 }), [], resolver({})), 'an IPv6 source on an IPv4-only network counts nothing')
  t.doesNotThrow(() => checkPolicySize(network({ policy: both }), [], resolver({})), 'IPv4-only: 40 x 1,024 fits')
  t.throws(() => checkPolicySize(dual({ policy: both }), [], resolver({})), { message: /would put 81920 entries in the firewall for its first container \(1 x 40960 port\/source pairs over IPv4 \+ 1 x 40960 port\/source pairs over IPv6\)/ },
    'a dual-stack network: its first container has an address of each family')
  t.doesNotThrow(() => checkPolicySize(dual({ policy: both, internal: true }), [], resolver({})), 'an internal network takes no policy entries')
  t.doesNotThrow(() => checkPolicySize(network(), [], resolver({})), 'no policy')

  const half = `${addresses(40).join(',')} tcp/1-1024`
  t.doesNotThrow(() => checkPolicySize(network({ policy: half }), [endpoint('e1', '172.18.0.2/16')], resolver({})), 'one container: 40,960 entries fit')
  t.throws(() => checkPolicySize(network({ policy: half }), [endpoint('e1', '172.18.0.2/16'), endpoint('e2', '172.18.0.3/16')], resolver({})), { message: /would put 81920 entries in the firewall for its containers \(2 x 40960/ },
    'a second container (CreateEndpoint) does not')
  t.doesNotThrow(() => checkPolicySize(network({ policy: half }), [endpoint('e1', '172.18.0.2/16'), endpoint('e2', '172.18.0.2/16')], resolver({})), 'one address twice is one container')
})

t.test('names count with the subnets Docker resolves them to', async (t) => {
  const subnets = (count: number) => Array.from({ length: count }, (_, i) => `10.${i}.0.0/16`)
  const n = network({ policy: 'ops tcp/1-1024' })
  const e1 = endpoint('e1', '172.18.0.2/16')
  t.equal(allowEntryCount(n, [e1], parsePolicy('ops tcp/1-1024'), resolver({ ops: subnets(64) })), 65536, '64 subnets x 1,024 ports')
  t.doesNotThrow(() => entriesOfNetwork(n, [e1], resolver({ ops: subnets(64) })), 'at the cap: accepted')
  t.throws(() => entriesOfNetwork(n, [e1], resolver({ ops: subnets(65) })), { kind: 'invalid', message: /would put 66560 entries/ }, 'one subnet more: refused')
  t.doesNotThrow(() => checkPolicySize(n, [], resolver({})), 'a name Docker does not know counts nothing')
  t.equal(allowEntryCount(n, [e1], parsePolicy('ops,ops tcp/1-1024'), resolver({ ops: ['10.1.0.0/16', '10.1.9.9/16', '10.2.0.0/16'] })), 2048,
    'a name twice and a subnet written twice count once')
})

/** Small random policies with overlapping ranges, repeated sources, names and shared addresses. */
const smallPolicy = fc.array(fc.tuple(
  fc.array(fc.constantFrom('ui', 'ops', 'ghost', '10.1.0.0/16', '10.1.2.3/16', '10.9.9.9', 'fd00:9::/64', '2001:db8::1'), { minLength: 1, maxLength: 4 }),
  fc.array(fc.oneof(
    fc.constant('icmp'),
    fc.tuple(fc.constantFrom('tcp', 'udp', 'sctp'), fc.integer({ min: 1, max: 40 }), fc.integer({ min: 0, max: 15 })).map(([p, a, d]) => `${p}/${a}-${a + d}`),
    fc.tuple(fc.constantFrom('tcp', 'udp'), fc.integer({ min: 1, max: 60 })).map(([p, a]) => `${p}/${a}`),
  ), { minLength: 1, maxLength: 4 }),
), { minLength: 1, maxLength: 5 }).map((rules) => rules.map(([s, p]) => `${s.join(',')} ${p.join(',')}`).join('; '))
const someEndpoints = fc.array(fc.tuple(fc.constantFrom(undefined, '172.18.0.2/16', '172.18.0.3/16', '172.18.0.2/24'), fc.constantFrom(undefined, 'fd00:1::2/64', 'FD00:1:0::2/64', 'fd00:1::3/64')), { maxLength: 4 })

/** The entries spelled out the plain way (every rule, source, port and address; duplicates collapsed by a set): the reference. */
function naiveEntries(n: EdgeNetwork, endpoints: EndpointRecord[], text: string, resolve: NameResolver): Set<string> {
  const out = new Set<string>()
  if (n.internal) return out
  // A source's canonical members, as networkEntries writes a pool of the same CIDR (the halves of a /0 included).
  const canonical = (cidr: string) => {
    if (!/^[^/]+\/\d+$/.test(cidr)) return []
    const v6 = cidr.includes(':')
    return networkEntries(network({ ipv4Subnets: v6 ? [] : [{ pool: cidr }], ipv6Subnets: v6 ? [{ pool: cidr }] : [], enableIpMasquerade: false })).map((e) => e.entry.split(',')[0] ?? '')
  }
  for (const e of endpoints) {
    for (const addr of [e.address, e.addressV6]) {
      if (!addr) continue
      const v6 = addr.includes(':')
      const ip = networkEntries(network({ ipv4Subnets: v6 ? [] : [{ pool: addr.replace(/\/\d+$/, v6 ? '/128' : '/32') }], ipv6Subnets: v6 ? [{ pool: addr.replace(/\/\d+$/, '/128') }] : [], enableIpMasquerade: false }))[0]?.entry.split('/')[0]
      for (const rule of parsePolicy(text)) {
        const sources = rule.sources.flatMap((s) => (s.kind === 'cidr' ? [s.cidr] : resolve(s.name))).filter((c) => c.includes(':') === v6).flatMap(canonical)
        for (const src of sources) {
          for (const p of rule.ports) {
            if (p.proto === 'icmp') out.add(`tsnet-allow${v6 ? 6 : 4} ${ip},${v6 ? 'icmpv6' : 'icmp'}:echo-request,${src}`)
            else for (let port = p.from; port <= p.to; port++) out.add(`tsnet-allow${v6 ? 6 : 4} ${ip},${p.proto}:${port},${src}`)
          }
        }
      }
    }
  }
  return out
}

t.test('property: allowEntries writes what the plain expansion would, each entry once, and the count says how many', async (t) => {
  const resolve = resolver({ ui: ['10.1.0.0/16', 'fd00:9::/64', '10.1.0.0/16'], ops: ['10.2.0.0/24', '0.0.0.0/0', '10.2.0.9/24'] })
  fc.assert(fc.property(smallPolicy, someEndpoints, fc.boolean(), (text, eps, internal) => {
    const n = dual({ internal })
    const endpoints = eps.map(([a, b], i) => endpoint(`e${i}`, a, b))
    const rules = parsePolicy(text)
    const entries = allowEntries(n, endpoints, rules, resolve).map(entryKey)
    const expected = naiveEntries(n, endpoints, text, resolve)
    if (new Set(entries).size !== entries.length) throw new Error(`an entry written twice for ${text}`)
    if (entries.length !== expected.size || entries.some((k) => !expected.has(k))) throw new Error(`entries differ from the plain expansion for ${text}: ${entries.length} vs ${expected.size}`)
    const count = allowEntryCount(n, endpoints, rules, resolve)
    if (count !== expected.size) throw new Error(`counted ${count}, the plain expansion has ${expected.size} for ${text}`)
  }), { numRuns: 400 })
  t.pass('400 random policies: the same entries as the plain expansion, none twice, counted exactly')
})

t.test('foreignEntries', async (t) => {
  const f4 = (entry: string): SetEntry => ({ set: 'tsnet-foreign4', entry, comment: FOREIGN_TAG })
  const f6 = (entry: string): SetEntry => ({ set: 'tsnet-foreign6', entry, comment: FOREIGN_TAG })
  t.same(foreignEntries([]), [])
  t.same(foreignEntries(['172.17.0.0/16', 'fd00:dead::/64']), [f4('172.17.0.0/16'), f6('fd00:dead::/64')], 'each family in its own set, commented tsnet:docker')
  t.same(foreignEntries(['172.17.0.0/16', '172.17.0.0/16', '172.17.5.5/16']), [f4('172.17.0.0/16')], 'duplicates (also after canonicalizing) collapse')
  t.same(foreignEntries(['0.0.0.0/0', '::/0']), [f4('0.0.0.0/1'), f4('128.0.0.0/1'), f6('::/1'), f6('8000::/1')], '/0 as two halves')
  t.same(foreignEntries(['junk', '10.0.0.1', '', '10.0.0.0/8']), [f4('10.0.0.0/8')], 'unreadable subnets are skipped')
})

t.test('dnatRule and endpointTag', async (t) => {
  const EP = dockerId('bb22')
  t.equal(endpointTag(EP), 'tsnet:ep:bb2201234567', 'first 12 characters of the endpoint ID')
  t.equal(endpointTag('short'), 'tsnet:ep:short')
  const p4 = (over: Partial<PublishedPort> = {}): PublishedPort => ({ family: 4, proto: 'tcp', hostIp: '', hostPort: 8080, containerIp: '172.18.0.2', containerPort: 80, ...over })
  const p6 = (over: Partial<PublishedPort> = {}): PublishedPort => ({ family: 6, proto: 'tcp', hostIp: '', hostPort: 8080, containerIp: 'fd00:1::2', containerPort: 80, ...over })
  const tail4 = '-m comment --comment "tsnet:ep:bb2201234567" -j DNAT --to-destination 172.18.0.2:80'
  t.equal(dnatRule(EP, p4()), `-p tcp -m tcp --dport 8080 ${tail4}`, 'IPv4, every host address')
  t.equal(dnatRule(EP, p4({ hostIp: '0.0.0.0' })), `-p tcp -m tcp --dport 8080 ${tail4}`, '0.0.0.0 means no -d')
  t.equal(dnatRule(EP, p4({ hostIp: '127.0.0.1' })), `-d 127.0.0.1/32 -p tcp -m tcp --dport 8080 ${tail4}`, 'a HostIP gives -d addr/32')
  t.equal(dnatRule(EP, p4({ hostIp: '192.0.2.10', proto: 'udp', hostPort: 5353, containerPort: 53 })),
    '-d 192.0.2.10/32 -p udp -m udp --dport 5353 -m comment --comment "tsnet:ep:bb2201234567" -j DNAT --to-destination 172.18.0.2:53', 'udp')
  t.equal(dnatRule(EP, p4({ proto: 'sctp', hostPort: 9, containerPort: 9 })),
    '-p sctp -m sctp --dport 9 -m comment --comment "tsnet:ep:bb2201234567" -j DNAT --to-destination 172.18.0.2:9', 'sctp')
  const tail6 = '-m comment --comment "tsnet:ep:bb2201234567" -j DNAT --to-destination [fd00:1::2]:80'
  t.equal(dnatRule(EP, p6()), `-p tcp -m tcp --dport 8080 ${tail6}`, 'IPv6: the destination is bracketed')
  t.equal(dnatRule(EP, p6({ hostIp: '::' })), `-p tcp -m tcp --dport 8080 ${tail6}`, ':: means no -d')
  t.equal(dnatRule(EP, p6({ hostIp: '2001:db8::5' })), `-d 2001:db8::5/128 -p tcp -m tcp --dport 8080 ${tail6}`, 'an IPv6 HostIP gives -d addr/128')
  t.equal(dnatRule(EP, p6({ hostIp: '::1' })), `-d ::1/128 -p tcp -m tcp --dport 8080 ${tail6}`)
  t.equal(dnatRule(dockerId('cc33'), p4({ hostPort: 65535 })).includes('"tsnet:ep:cc3301234567"'), true, 'tagged with its own endpoint')
})

t.test('TSNET-INPUT order: drops that hold for any source, then the VTEP pass, then the per-network drops', async (t) => {
  const vni = (n: number) => vxlanGuardRule(4, 4789, n, `tsnet:net:${n}`)
  const pass = vtepPassRule(4, 4789)
  t.equal(pass, '-p udp -m udp --dport 4789 -m set --match-set tsnet-vtep4 src -m comment --comment tsnet:vtep-pass -j RETURN', 'as iptables -S prints it, quotes removed')
  t.equal(vtepPassRule(6, 4790), pass.replace('4789', '4790').replace('vtep4', 'vtep6'))
  const rules = [vni(300), pass, OVERLAY_TO_HOST_RULE, vni(301)]
  t.same(inGuardOrder(rules), [OVERLAY_TO_HOST_RULE, pass, vni(300), vni(301)], 'a container spoofing a peer is dropped before the pass could let it through')
  t.ok(guardRank(OVERLAY_TO_HOST_RULE) < guardRank(pass) && guardRank(pass) < guardRank(vni(300)))
})
