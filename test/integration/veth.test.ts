// Veth pairs as host objects against a real kernel, through the engine over the real host layer
// (lib/remote-host.ts), as CreateEndpoint and DeleteEndpoint drive them: both ends in one request
// with the peer's name, MAC and MTU, the host end on its bridge with the endpoint's alias, observed
// as `ip -d link show` shows them; repaired by the reconcile when detached or downed; an untagged
// pair under a tsnet name taken over, a pair of another owner refused; a failing change rolled
// back with nothing left. Then a data-path check: two "containers" (namespaces of their own
// holding the container ends) talk across a tsnet bridge through a FORWARD chain whose policy is
// DROP once tsnet's chains are in place (bridged frames are accepted there), and not while the
// bridge's group says ICC is off (dropped by the rule commented "tsnet: icc disabled"). Last, what
// a removed owner and the reconcile delete, and what they leave.
import t, { type Test } from 'tap'
import { TsnetError } from '../../src/errors.js'
import { CHAIN, DROP, GROUP } from '../../src/core/edge-plan.js'
import { endpointAlias, macFromIpv4, macFromSeed, networkAlias } from '../../src/core/names.js'
import { parseIp } from '../../src/core/addr.js'
import type { HostObject, SysctlObject } from '../../src/core/objects.js'
import { addrObject, bridgeObject, keysOf, matchesIp, Owners, vethObject } from './lib/link-objects.js'
import { ipLink } from './lib/ip-json.js'
import { addPlainDevice, createNetns, deviceGroup, link, nsState, rejection, type Netns } from './lib/netns.js'
import { hostIn, type RemoteHost } from './lib/remote-host.js'

const NET_ID = 'c3'.repeat(32)
const NET = `net:${NET_ID}`
const bridge = (name: string, group: number = GROUP.base): HostObject[] => [
  bridgeObject(name, { alias: networkAlias(NET_ID), mtu: 1450, mac: macFromSeed(NET_ID), group }),
  addrObject(name, '10.50.0.1/24'),
  addrObject(name, 'fd50::1/64'),
]
const epId = (n: number) => `e${n}`.padEnd(64, '0')
const mac = (n: number) => macFromIpv4(parseIp(`10.50.0.${n + 1}`)!)
const veth = (n: number, master: string | undefined, mtu = 1450) =>
  vethObject(`tsv-it${n}`, `tsc-it${n}`, mac(n), { alias: endpointAlias(epId(n)), mtu, ...(master !== undefined ? { master } : {}) })
const creating = (n: number) => `creating endpoint ${epId(n).slice(0, 12)}`

async function setup(t: Test, br?: string) {
  const ns = await createNetns(t)
  const host = hostIn(t, ns)
  const owners = new Owners(host)
  if (br) await owners.set(NET, bridge(br), 'creating the network')
  return { ns, host, owners }
}

t.test('a veth pair is created with both ends to spec, observed as ip shows it, and a repeated change changes nothing', async (t) => {
  const { ns, host, owners } = await setup(t, 'tsbr-v1')
  const v = veth(1, 'tsbr-v1')
  await owners.set(`ep:${epId(1)}`, [v], creating(1))

  const h = await ipLink(ns, 'tsv-it1')
  const p = await ipLink(ns, 'tsc-it1')
  t.equal(h?.linkinfo?.info_kind, 'veth', 'host end is a veth')
  t.equal(h?.master, 'tsbr-v1', 'host end is a port of the bridge')
  t.equal(h?.linkinfo?.info_slave_kind, 'bridge', 'as a bridge port')
  t.ok(h?.flags.includes('UP'), 'host end is up')
  t.equal(h?.ifalias, endpointAlias(epId(1)), 'host end carries the endpoint alias')
  t.equal(h?.mtu, 1450, 'host end MTU')
  t.equal(p?.linkinfo?.info_kind, 'veth', 'container end is a veth')
  t.equal(p?.link, 'tsv-it1', 'container end is the peer of the host end')
  t.equal(h?.link, 'tsc-it1', 'and the other way round')
  t.equal(p?.mtu, 1450, 'container end MTU')
  t.equal(p?.address, mac(1), 'container end MAC')
  t.equal(p?.master, undefined, 'container end is not on the bridge')
  t.equal(p?.ifalias, undefined, 'container end carries no tag (Docker moves it)')
  t.equal((await link(ns, 'tsbr-v1'))?.mtu, 1450, 'bridge MTU unchanged by the new port')

  const seen = await host.observe({ keys: [...keysOf(bridge('tsbr-v1')), 'link tsv-it1', 'link tsc-it1'] })
  t.match(seen.get('link tsv-it1'), { kind: 'link', name: 'tsv-it1', type: 'veth', alias: endpointAlias(epId(1)), mtu: 1450, master: 'tsbr-v1', up: true }, 'the link driver reads the host end back')
  t.match(seen.get('link tsc-it1'), { kind: 'link', name: 'tsc-it1', type: 'veth', alias: '', mtu: 1450, mac: mac(1), up: false }, 'and the container end')
  await matchesIp(t, ns, seen, 'bridge and pair')
  const all = await host.observe({ keys: [], allOwned: true })
  t.same([...all.keys()].sort(), [...keysOf(bridge('tsbr-v1')), 'link tsv-it1'].sort(), 'a full look finds the bridge, its addresses and the tagged host end, not the untagged container end')

  const before = await nsState(ns)
  await host.resetCounters()
  await owners.set(`ep:${epId(1)}`, [v], creating(1), true)
  t.equal((await host.counters()).netlinkChanges, 0, 'repeating the change sends no change to the kernel')
  t.same(await nsState(ns), before, 'the namespace is as it was')

  // an existing veth of ours that lost its bridge or went down is put back
  await ns.ok('ip', ['link', 'set', 'dev', 'tsv-it1', 'nomaster', 'down'])
  const repair = await owners.reconcile()
  t.same(repair.changes, ['update link tsv-it1'], 'the reconcile finds the detached, downed veth')
  t.same(await nsState(ns), before, 'and re-attaches it and brings it up')
  t.same((await owners.dryRun()).changes, [], 'a reconcile right after plans nothing')
})

t.test('an untagged pair under a tsnet name is taken over; a link of another owner is refused and left untouched', async (t) => {
  const { ns, owners } = await setup(t, 'tsbr-v2')
  // A crash between creating the pair and tagging it (two requests) leaves exactly this.
  await ns.ok('ip', ['link', 'add', 'name', 'tsv-it2', 'mtu', '1450', 'type', 'veth', 'peer', 'name', 'tsc-it2', 'address', mac(2), 'mtu', '1450'])
  const index = (await ipLink(ns, 'tsv-it2'))?.ifindex
  await owners.set(`ep:${epId(2)}`, [veth(2, 'tsbr-v2')], creating(2))
  const h = await ipLink(ns, 'tsv-it2')
  t.equal(h?.ifindex, index, 'the untagged host end is taken over in place')
  t.match({ alias: h?.ifalias, master: h?.master, up: h?.flags.includes('UP') }, { alias: endpointAlias(epId(2)), master: 'tsbr-v2', up: true }, 'and brought to spec')
  t.equal((await ipLink(ns, 'tsc-it2'))?.link, 'tsv-it2', 'the container end is still its peer')
  await owners.set(`ep:${epId(2)}`, undefined, 'deleting the endpoint')
  t.equal(await link(ns, 'tsc-it2'), undefined, 'deleting the endpoint takes both ends')

  // A plain device carrying the endpoint's tag is tsnet's: replaced by the pair.
  await addPlainDevice(ns, 'tsv-it2')
  await ns.ok('ip', ['link', 'set', 'dev', 'tsv-it2', 'alias', endpointAlias(epId(2))])
  await owners.set(`ep:${epId(2)}`, [veth(2, 'tsbr-v2')], creating(2))
  t.equal((await ipLink(ns, 'tsv-it2'))?.linkinfo?.info_kind, 'veth', 'a non-veth carrying the endpoint\'s alias is replaced by the veth')
  await owners.set(`ep:${epId(2)}`, undefined, 'deleting the endpoint')

  const refusals: Array<[string, string[][], string]> = [
    ['a veth with a foreign alias', [['link', 'add', 'name', 'tsv-it2', 'type', 'veth', 'peer', 'name', 'other0'], ['link', 'set', 'dev', 'tsv-it2', 'alias', 'someone-else']],
      `${creating(2)}: a link named tsv-it2 already exists and is not tsnet's (it belongs to someone-else)`],
    ['a veth of another endpoint', [['link', 'add', 'name', 'tsv-it2', 'type', 'veth', 'peer', 'name', 'other0'], ['link', 'set', 'dev', 'tsv-it2', 'alias', endpointAlias(epId(9))]],
      `${creating(2)}: a link named tsv-it2 already exists and belongs to another tsnet object (${endpointAlias(epId(9))})`],
  ]
  for (const [what, steps, sentence] of refusals) {
    for (const step of steps) await ns.ok('ip', step)
    const before = await nsState(ns)
    const err = await rejection(owners.set(`ep:${epId(2)}`, [veth(2, 'tsbr-v2')], creating(2)))
    t.equal((err as TsnetError | undefined)?.kind, 'conflict', `${what}: conflict`)
    t.equal((err as Error | undefined)?.message, sentence, `${what}: the sentence names the link and its owner`)
    t.same(await nsState(ns), before, `${what}: left untouched (not enslaved, not up, alias kept)`)
    await ns.ok('ip', ['link', 'del', 'dev', 'tsv-it2'])
  }
})

t.test('a failing change leaves no end of the pair behind', async (t) => {
  const { ns, owners } = await setup(t, 'tsbr-v3')
  const empty = await nsState(ns)

  // The bridge does not exist: the pair's master cannot be found.
  let err = await rejection(owners.set(`ep:${epId(3)}`, [veth(3, 'tsbr-missing')], creating(3)))
  t.ok(err instanceof TsnetError, `a missing bridge: refused (${String((err as Error | undefined)?.message)})`)
  t.match((err as Error | undefined)?.message ?? '', /tsbr-missing/, 'the message names the missing bridge')
  t.same(await nsState(ns), empty, 'neither end is left behind')

  // The pair is made, then something after it fails: the rollback takes the pair away again.
  err = await rejection(owners.set(`ep:${epId(3)}`, [veth(3, 'tsbr-v3'), addrObject('tsv-it3', 'ff02::7/64')], creating(3)))
  t.match((err as Error | undefined)?.message ?? '', new RegExp(`^${creating(3)} \\(rolled back: the host is as it was\\): `), `a later failure: rolled back (${String((err as Error | undefined)?.message)})`)
  t.same(await nsState(ns), empty, 'the pair it made is gone again')

  // The container end's name is taken by a link tsnet does not own: the kernel refuses the pair.
  await addPlainDevice(ns, 'tsc-it3')
  const withForeign = await nsState(ns)
  err = await rejection(owners.set(`ep:${epId(3)}`, [veth(3, 'tsbr-v3')], creating(3)))
  t.equal((err as TsnetError | undefined)?.kind, 'conflict', 'a taken peer name: conflict')
  t.match((err as Error | undefined)?.message ?? '', /a link named tsc-it3 already exists/, 'naming the end whose name is taken')
  t.same(await nsState(ns), withForeign, 'nothing made, the other link untouched')
  t.same((await owners.dryRun()).changes, [], 'nothing of the failed changes was committed')
})

/** Moves the container end into a "container" namespace, gives it addresses and brings it up. */
async function plugContainer(ns: Netns, ctr: Netns, peer: string, v4: string, v6: string): Promise<void> {
  await ns.ok('ip', ['link', 'set', 'dev', peer, 'netns', ctr.name])
  await ctr.ok('ip', ['addr', 'add', v4, 'dev', peer])
  await ctr.ok('ip', ['addr', 'add', v6, 'dev', peer, 'nodad'])
  await ctr.ok('ip', ['link', 'set', 'dev', peer, 'up'])
}

async function ping(from: Netns, to: string, seconds: number): Promise<boolean> {
  const r = await from.run('busybox', [to.includes(':') ? 'ping6' : 'ping', '-c', '1', '-W', String(seconds), to])
  return r.code === 0
}

/** Packets counted by the rules of TSNET-FROM whose listing line `pick` selects. */
async function counted(ns: Netns, tool: 'iptables' | 'ip6tables', pick: (line: string) => boolean): Promise<number> {
  const out = await ns.ok(tool, ['-w', '10', '-L', CHAIN.from, '-v', '-n', '-x'])
  return out
    .split('\n')
    .slice(2)
    .filter((l) => l.trim() !== '' && pick(l))
    .reduce((sum, l) => sum + Number(l.trim().split(/\s+/)[0]), 0)
}
/** The generic rule accepting bridged frames (not the ICC one, which also matches physdev). */
const bridgedAccept = (l: string) => / ACCEPT /.test(l) && /PHYSDEV match --physdev-is-bridged/.test(l) && !/devgroup/.test(l)
const iccDrop = (l: string) => / DROP /.test(l) && l.includes(`/* ${DROP.icc} */`)

/** The bridge-nf-call sysctl of a family, as an object, when this kernel has it in the namespace. */
async function brNetfilter(host: RemoteHost, family: 4 | 6): Promise<SysctlObject | undefined> {
  const path = `net/bridge/bridge-nf-call-ip${family === 4 ? '' : '6'}tables`
  return (await host.observe({ keys: [`sysctl ${path}`] })).has(`sysctl ${path}`) ? { kind: 'sysctl', path, value: '1' } : undefined
}

t.test('two containers on one bridge: FORWARD DROP blocks them until tsnet\'s chains accept bridged traffic; ICC off drops it', async (t) => {
  const { ns, host, owners } = await setup(t, 'tsbr-v4')
  const ctr1 = await createNetns(t)
  const ctr2 = await createNetns(t)
  await owners.set(`ep:${epId(1)}`, [veth(1, 'tsbr-v4')], creating(1))
  await owners.set(`ep:${epId(2)}`, [veth(2, 'tsbr-v4')], creating(2))

  await plugContainer(ns, ctr1, 'tsc-it1', '10.50.0.2/24', 'fd50::2/64')
  await plugContainer(ns, ctr2, 'tsc-it2', '10.50.0.3/24', 'fd50::3/64')
  t.equal(await link(ns, 'tsc-it1'), undefined, 'container end left the bridge namespace')
  t.equal((await link(ctr1, 'tsc-it1'))?.address, mac(1), 'container end keeps its MAC in the container')
  t.equal((await link(ctr1, 'tsc-it1'))?.mtu, 1450, 'container end keeps its MTU in the container')
  const before = await nsState(ns)
  await owners.set(`ep:${epId(1)}`, [veth(1, 'tsbr-v4')], creating(1), true)
  t.same(await nsState(ns), before, 'the endpoint\'s objects still need no change once the peer has moved')
  t.same((await owners.dryRun()).changes, [], 'nor does a reconcile find anything to do')

  // br_netfilter is what makes bridged frames traverse iptables' FORWARD chain. Its sysctls exist
  // per namespace only when the module is loaded (tests never load it: that would change the host).
  const nf4 = await brNetfilter(host, 4)
  const nf6 = await brNetfilter(host, 6)
  if (!nf4) t.comment('bridge-nf-call-iptables absent in this kernel: the IPv4 firewall checks are skipped')
  if (!nf6) t.comment('bridge-nf-call-ip6tables absent in this kernel: the IPv6 firewall checks are skipped')
  await owners.set('sysctls', [nf4, nf6].filter((x): x is SysctlObject => x !== undefined), 'turning br_netfilter on')

  // baseline: with FORWARD accepting, the data path works (this also settles ARP/ND)
  t.ok(await ping(ctr1, '10.50.0.3', 3), 'IPv4: baseline ping works while FORWARD accepts')
  t.ok(await ping(ctr1, 'fd50::3', 3), 'IPv6: baseline ping works while FORWARD accepts')

  await ns.ok('iptables', ['-w', '10', '-P', 'FORWARD', 'DROP'])
  await ns.ok('ip6tables', ['-w', '10', '-P', 'FORWARD', 'DROP'])
  if (nf4) t.notOk(await ping(ctr1, '10.50.0.3', 1), 'IPv4: bridged ping is dropped before tsnet\'s chains exist')
  if (nf6) t.notOk(await ping(ctr1, 'fd50::3', 1), 'IPv6: bridged ping is dropped before tsnet\'s chains exist')

  await owners.set('edge', [{ kind: 'chains', intact: true }], 'setting up the edge')
  t.ok(await ping(ctr1, '10.50.0.3', 3), 'IPv4: ctr1 reaches ctr2 once tsnet\'s chains are in place')
  t.ok(await ping(ctr2, '10.50.0.2', 3), 'IPv4: ctr2 reaches ctr1')
  t.ok(await ping(ctr1, 'fd50::3', 3), 'IPv6: ctr1 reaches ctr2')
  if (nf4) t.ok(await counted(ns, 'iptables', bridgedAccept) > 0, 'IPv4: the packets went through the bridged-traffic ACCEPT rule')
  if (nf6) t.ok(await counted(ns, 'ip6tables', bridgedAccept) > 0, 'IPv6: the packets went through the bridged-traffic ACCEPT rule')
  if (nf4) t.equal(await counted(ns, 'iptables', iccDrop), 0, 'IPv4: nothing counted as ICC drop yet')

  // enable_icc=false: the bridge's group carries the ICC flag.
  await owners.set(NET, bridge('tsbr-v4', GROUP.base | GROUP.iccOff), 'turning ICC off')
  t.equal(deviceGroup(await link(ns, 'tsbr-v4')), GROUP.base | GROUP.iccOff, 'the bridge carries the ICC-off group')
  const drops4 = nf4 ? await counted(ns, 'iptables', iccDrop) : 0
  const drops6 = nf6 ? await counted(ns, 'ip6tables', iccDrop) : 0
  if (nf4) t.notOk(await ping(ctr1, '10.50.0.3', 1), 'IPv4: ICC off: dropped')
  if (nf6) t.notOk(await ping(ctr1, 'fd50::3', 1), 'IPv6: ICC off: dropped')
  if (nf4) t.ok(await counted(ns, 'iptables', iccDrop) > drops4, `IPv4: the "${DROP.icc}" counter rose`)
  if (nf6) t.ok(await counted(ns, 'ip6tables', iccDrop) > drops6, `IPv6: the "${DROP.icc}" counter rose`)

  await owners.set(NET, bridge('tsbr-v4'), 'turning ICC on')
  t.ok(await ping(ctr1, '10.50.0.3', 3), 'IPv4: ICC back on: works again')
  t.ok(await ping(ctr1, 'fd50::3', 3), 'IPv6: ICC back on: works again')

  await owners.set('edge', undefined, 'removing the edge')
  if (nf4) t.notOk(await ping(ctr1, '10.50.0.3', 1), 'IPv4: dropped again once tsnet\'s chains are gone')
  if (nf6) t.notOk(await ping(ctr1, 'fd50::3', 1), 'IPv6: dropped again once tsnet\'s chains are gone')
  t.notMatch(await ns.ok('iptables-save', []), /TSNET/, 'no TSNET chain is left')
})

t.test('a removed owner takes its links along; the reconcile removes what tsnet owns and nobody wants, and leaves the rest', async (t) => {
  const { ns, owners } = await setup(t, 'tsbr-d1')
  await owners.set(`ep:${epId(5)}`, [veth(5, 'tsbr-d1')], creating(5))

  await owners.set(`ep:${epId(5)}`, undefined, 'deleting the endpoint')
  t.equal(await link(ns, 'tsv-it5'), undefined, 'the owned veth is deleted')
  t.equal(await link(ns, 'tsc-it5'), undefined, 'its peer went with it')
  t.ok(await link(ns, 'tsbr-d1'), 'the bridge is still there')

  await owners.set(NET, undefined, 'deleting the network')
  t.equal(await link(ns, 'tsbr-d1'), undefined, 'the owned bridge is deleted')

  const empty = await nsState(ns)
  await owners.set(NET, undefined, 'deleting the network')
  await owners.set(`ep:${epId(5)}`, undefined, 'deleting the endpoint')
  t.same(await nsState(ns), empty, 'owners that are gone already change nothing')

  // What a crash can leave: tsnet's tag on a link no record wants. Beside it, links of others.
  await ns.ok('ip', ['link', 'add', 'name', 'tsbr-d4', 'type', 'bridge'])
  await ns.ok('ip', ['link', 'set', 'dev', 'tsbr-d4', 'alias', networkAlias('d4'.repeat(32))])
  await ns.ok('ip', ['link', 'add', 'name', 'br-d2', 'type', 'bridge'])
  await ns.ok('ip', ['link', 'set', 'dev', 'br-d2', 'alias', 'someone-else'])
  await ns.ok('ip', ['link', 'add', 'name', 'br-d3', 'type', 'bridge'])
  await ns.ok('ip', ['link', 'add', 'name', 'veth-d5', 'type', 'veth', 'peer', 'name', 'veth-d6'])
  const foreign = await nsState(ns)
  const r = await owners.reconcile()
  t.same(r.changes, ['delete link tsbr-d4'], 'the reconcile removes the link that carries tsnet\'s tag and is wanted by no record')
  t.equal(await link(ns, 'tsbr-d4'), undefined, 'it is gone')
  const after = (await nsState(ns)) as { links: Array<{ ifname: string }> }
  t.same(after.links, (foreign as typeof after).links.filter((l) => l.ifname !== 'tsbr-d4'), 'links with another alias or none are left exactly as they were')
})
