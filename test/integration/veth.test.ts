// ensureVeth and deleteOwnedLink against a real kernel, and a data-path check: two "containers"
// (namespaces of their own holding the container ends) talk across a tsnet bridge through a
// FORWARD chain whose policy is DROP once the bridge carries tsnet's device group and ensureEdge
// installed tsnet's chains (bridged frames are accepted there), and not while the bridge's group
// says ICC is off (dropped by the rule commented "tsnet: icc disabled").
import t from 'tap'
import { TsnetError } from '../../src/errors.js'
import { CHAIN, DROP, GROUP } from '../../src/core/edge-plan.js'
import { endpointAlias, macFromIpv4, macFromSeed, networkAlias } from '../../src/core/names.js'
import { parseIp } from '../../src/core/addr.js'
import type { BridgeSpec, VethSpec } from '../../src/host/host.js'
import { addPlainDevice, createNetns, deviceGroup, hostIn, link, log, nsState, rejection, type Netns } from './lib/netns.js'

const NET_ID = 'c3'.repeat(32)
const bridge = (name: string, mtu = 1450): BridgeSpec => ({
  name,
  alias: networkAlias(NET_ID),
  mtu,
  mac: macFromSeed(NET_ID),
  addresses: ['10.50.0.1/24', 'fd50::1/64'],
  group: GROUP.base,
})
const veth = (n: number, br: string, mtu = 1450): VethSpec => ({
  hostName: `tsv-it${n}`,
  peerName: `tsc-it${n}`,
  alias: endpointAlias(`e${n}`.padEnd(64, '0')),
  mtu,
  mac: macFromIpv4(parseIp(`10.50.0.${n + 1}`)!),
  bridge: br,
})

t.test('ensureVeth creates the pair on the bridge and is idempotent', async (t) => {
  const ns = await createNetns(t)
  const { host } = hostIn(ns)
  const br = bridge('tsbr-v1')
  await host.ensureBridge(br, log)
  const v = veth(1, br.name)

  await host.ensureVeth(v, log)
  const h = await link(ns, v.hostName)
  const p = await link(ns, v.peerName)
  t.equal(h?.linkinfo?.info_kind, 'veth', 'host end is a veth')
  t.equal(h?.master, br.name, 'host end is a port of the bridge')
  t.ok(h?.flags.includes('UP'), 'host end is up')
  t.equal(h?.ifalias, v.alias, 'host end carries the endpoint alias')
  t.equal(h?.mtu, 1450, 'host end MTU')
  t.equal(p?.linkinfo?.info_kind, 'veth', 'container end is a veth')
  t.equal(p?.link, v.hostName, 'container end is the peer of the host end')
  t.equal(p?.mtu, 1450, 'container end MTU')
  t.equal(p?.address, v.mac, 'container end MAC')
  t.equal(p?.master, undefined, 'container end is not on the bridge')
  t.equal((await link(ns, br.name))?.mtu, 1450, 'bridge MTU unchanged by the new port')

  const before = await nsState(ns)
  await host.ensureVeth(v, log)
  t.same(await nsState(ns), before, 'repeating ensureVeth changes nothing')

  // an existing veth of ours that lost its bridge or went down is put back
  await ns.ok('ip', ['link', 'set', 'dev', v.hostName, 'nomaster', 'down'])
  await host.ensureVeth(v, log)
  t.same(await nsState(ns), before, 'a detached, downed veth of ours is re-attached and brought up')
})

t.test('ensureVeth refuses a link it does not own', async (t) => {
  const ns = await createNetns(t)
  const { host } = hostIn(ns)
  const br = bridge('tsbr-v2')
  await host.ensureBridge(br, log)
  const v = veth(2, br.name)

  await ns.ok('ip', ['link', 'add', 'name', v.hostName, 'type', 'veth', 'peer', 'name', 'other0'])
  let before = await nsState(ns)
  let err = await rejection(host.ensureVeth(v, log))
  t.equal((err as TsnetError | undefined)?.kind, 'conflict', 'veth without alias: conflict')
  t.same(await nsState(ns), before, 'veth without alias: left untouched (not enslaved, not up)')
  await ns.ok('ip', ['link', 'del', 'dev', v.hostName])

  await addPlainDevice(ns, v.hostName)
  await ns.ok('ip', ['link', 'set', 'dev', v.hostName, 'alias', v.alias])
  before = await nsState(ns)
  err = await rejection(host.ensureVeth(v, log))
  t.equal((err as TsnetError | undefined)?.kind, 'conflict', 'non-veth with our alias: conflict')
  t.same(await nsState(ns), before, 'non-veth with our alias: left untouched')
})

t.test('a failing ensureVeth rolls back the pair it created', async (t) => {
  const ns = await createNetns(t)
  const { host } = hostIn(ns)
  const before = await nsState(ns)
  // the bridge does not exist: the pair is created, attaching it fails
  const err = await rejection(host.ensureVeth(veth(3, 'tsbr-missing'), log))
  t.ok(err instanceof TsnetError, 'rejected with a TsnetError')
  t.equal((err as TsnetError | undefined)?.kind, 'host', 'kind host')
  t.match((err as Error | undefined)?.message ?? '', /rolled back/, 'message says it rolled back')
  t.same(await nsState(ns), before, 'neither end is left behind')
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

t.test('two containers on one bridge: FORWARD DROP blocks them until the edge accepts bridged traffic; ICC off drops it', async (t) => {
  const ns = await createNetns(t)
  const ctr1 = await createNetns(t)
  const ctr2 = await createNetns(t)
  const { host } = hostIn(ns)
  const br = bridge('tsbr-v4')
  await host.ensureBridge(br, log)
  const v1 = veth(1, br.name)
  const v2 = veth(2, br.name)
  await host.ensureVeth(v1, log)
  await host.ensureVeth(v2, log)

  await plugContainer(ns, ctr1, v1.peerName, '10.50.0.2/24', 'fd50::2/64')
  await plugContainer(ns, ctr2, v2.peerName, '10.50.0.3/24', 'fd50::3/64')
  t.equal(await link(ns, v1.peerName), undefined, 'container end left the bridge namespace')
  t.equal((await link(ctr1, v1.peerName))?.address, v1.mac, 'container end keeps its MAC in the container')
  t.equal((await link(ctr1, v1.peerName))?.mtu, 1450, 'container end keeps its MTU in the container')
  const before = await nsState(ns)
  await host.ensureVeth(v1, log)
  t.same(await nsState(ns), before, 'ensureVeth is still a no-op once the peer has moved')

  // br_netfilter is what makes bridged frames traverse iptables' FORWARD chain. Its sysctls exist
  // per namespace only when the module is loaded (we never load it: that would change the host).
  // tsnet turns them on itself (NetworkService.applySysctls); here the host layer is driven directly.
  const nf4 = await host.setSysctl('net/bridge/bridge-nf-call-iptables', '1', log)
  const nf6 = await host.setSysctl('net/bridge/bridge-nf-call-ip6tables', '1', log)
  if (!nf4) t.comment('bridge-nf-call-iptables absent in this kernel: the IPv4 firewall checks are skipped')
  if (!nf6) t.comment('bridge-nf-call-ip6tables absent in this kernel: the IPv6 firewall checks are skipped')

  // baseline: with FORWARD accepting, the data path works (this also settles ARP/ND)
  t.ok(await ping(ctr1, '10.50.0.3', 3), 'IPv4: baseline ping works while FORWARD accepts')
  t.ok(await ping(ctr1, 'fd50::3', 3), 'IPv6: baseline ping works while FORWARD accepts')

  await ns.ok('iptables', ['-w', '10', '-P', 'FORWARD', 'DROP'])
  await ns.ok('ip6tables', ['-w', '10', '-P', 'FORWARD', 'DROP'])
  if (nf4) t.notOk(await ping(ctr1, '10.50.0.3', 1), 'IPv4: bridged ping is dropped before ensureEdge')
  if (nf6) t.notOk(await ping(ctr1, 'fd50::3', 1), 'IPv6: bridged ping is dropped before ensureEdge')

  await host.ensureEdge(log)
  t.ok(await ping(ctr1, '10.50.0.3', 3), 'IPv4: ctr1 reaches ctr2 once tsnet\'s chains are in place')
  t.ok(await ping(ctr2, '10.50.0.2', 3), 'IPv4: ctr2 reaches ctr1')
  t.ok(await ping(ctr1, 'fd50::3', 3), 'IPv6: ctr1 reaches ctr2')
  if (nf4) t.ok(await counted(ns, 'iptables', bridgedAccept) > 0, 'IPv4: the packets went through the bridged-traffic ACCEPT rule')
  if (nf6) t.ok(await counted(ns, 'ip6tables', bridgedAccept) > 0, 'IPv6: the packets went through the bridged-traffic ACCEPT rule')
  if (nf4) t.equal(await counted(ns, 'iptables', iccDrop), 0, 'IPv4: nothing counted as ICC drop yet')

  // enable_icc=false: the bridge's group carries the ICC flag.
  await host.ensureBridge({ ...br, group: GROUP.base | GROUP.iccOff }, log)
  t.equal(deviceGroup(await link(ns, br.name)), GROUP.base | GROUP.iccOff, 'the bridge carries the ICC-off group')
  const drops4 = nf4 ? await counted(ns, 'iptables', iccDrop) : 0
  const drops6 = nf6 ? await counted(ns, 'ip6tables', iccDrop) : 0
  if (nf4) t.notOk(await ping(ctr1, '10.50.0.3', 1), 'IPv4: ICC off: dropped')
  if (nf6) t.notOk(await ping(ctr1, 'fd50::3', 1), 'IPv6: ICC off: dropped')
  if (nf4) t.ok(await counted(ns, 'iptables', iccDrop) > drops4, `IPv4: the "${DROP.icc}" counter rose`)
  if (nf6) t.ok(await counted(ns, 'ip6tables', iccDrop) > drops6, `IPv6: the "${DROP.icc}" counter rose`)

  await host.ensureBridge(br, log)
  t.ok(await ping(ctr1, '10.50.0.3', 3), 'IPv4: ICC back on: works again')
  t.ok(await ping(ctr1, 'fd50::3', 3), 'IPv6: ICC back on: works again')

  await host.removeEdge(log)
  if (nf4) t.notOk(await ping(ctr1, '10.50.0.3', 1), 'IPv4: dropped again after removeEdge')
  if (nf6) t.notOk(await ping(ctr1, 'fd50::3', 1), 'IPv6: dropped again after removeEdge')
})

t.test('deleteOwnedLink deletes what is ours, ignores what is missing, leaves what is not ours', async (t) => {
  const ns = await createNetns(t)
  const { host } = hostIn(ns)
  const br = bridge('tsbr-d1')
  await host.ensureBridge(br, log)
  const v = veth(5, br.name)
  await host.ensureVeth(v, log)

  await host.deleteOwnedLink(v.hostName, v.alias, log)
  t.equal(await link(ns, v.hostName), undefined, 'owned veth deleted')
  t.equal(await link(ns, v.peerName), undefined, 'its peer went with it')
  t.ok(await link(ns, br.name), 'the bridge is still there')

  await host.deleteOwnedLink(br.name, br.alias, log)
  t.equal(await link(ns, br.name), undefined, 'owned bridge deleted')

  const empty = await nsState(ns)
  await host.deleteOwnedLink(br.name, br.alias, log)
  await host.deleteOwnedLink('tsbr-never', br.alias, log)
  t.same(await nsState(ns), empty, 'missing links are ignored')

  await ns.ok('ip', ['link', 'add', 'name', 'tsbr-d2', 'type', 'bridge'])
  await ns.ok('ip', ['link', 'set', 'dev', 'tsbr-d2', 'alias', networkAlias('d4'.repeat(32))])
  await ns.ok('ip', ['link', 'add', 'name', 'tsbr-d3', 'type', 'bridge'])
  const foreign = await nsState(ns)
  await host.deleteOwnedLink('tsbr-d2', br.alias, log)
  await host.deleteOwnedLink('tsbr-d3', br.alias, log)
  t.same(await nsState(ns), foreign, 'a link with another alias or none is left in place')
  t.equal((await link(ns, 'tsbr-d2'))?.ifalias, networkAlias('d4'.repeat(32)), 'foreign alias kept')
})
