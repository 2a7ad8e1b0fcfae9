// The netlink client's neighbour (ARP/NDP) and FDB entries against a real kernel, in a namespace
// of the test's own, compared with `ip -j neigh` and `bridge -j fdb show`; the FDB entries of a
// vxlan device are compared with the ones `bridge fdb append ... self permanent` makes.
import t from 'tap'
import { createNetns, nsState } from './lib/netns.js'
import { startProbe } from './lib/netlink-probe.js'
import { bridgeFdb, ipLink, ipNeighs } from './lib/ip-json.js'
import type { FdbEntry, Neighbour } from '../../src/host/netlink/index.js'

t.test('neighbours: permanent entries of both families on a link: add, replace, list, delete', async (t) => {
  const ns = await createNetns(t)
  const nl = await startProbe(t, ns)
  await nl.call('createLink', { kind: 'bridge', name: 'br-n', up: true })
  await nl.call('createLink', { kind: 'bridge', name: 'br-o', up: true })
  await nl.call('addNeighbour', { link: 'br-n', address: '10.70.0.5', mac: '02:42:0a:46:00:05' })
  await nl.call('addNeighbour', { link: 'br-n', address: 'fd70::5', mac: '02:42:0a:46:00:06' })
  await nl.call('addNeighbour', { link: 'br-o', address: '10.70.0.5', mac: '02:42:0a:46:00:07' })
  const seen = (await ipNeighs(ns, 'br-n')).filter((n) => n.state.includes('PERMANENT')).map((n) => ({ dst: n.dst, lladdr: n.lladdr, state: n.state }))
  t.same(seen.sort((a, b) => a.dst.localeCompare(b.dst)), [
    { dst: '10.70.0.5', lladdr: '02:42:0a:46:00:05', state: ['PERMANENT'] },
    { dst: 'fd70::5', lladdr: '02:42:0a:46:00:06', state: ['PERMANENT'] },
  ], 'ip neigh sees both, permanent')

  const index = (await ipLink(ns, 'br-n'))?.ifindex
  const listed = (await nl.call<Neighbour[]>('listNeighbours', 'br-n')).filter((n) => n.state.includes('permanent'))
  t.same(listed, [
    { link: index, family: 4, address: '10.70.0.5', mac: '02:42:0a:46:00:05', state: ['permanent'], router: false },
    { link: index, family: 6, address: 'fd70::5', mac: '02:42:0a:46:00:06', state: ['permanent'], router: false },
  ], 'listNeighbours: this link only, both families')
  const all = await nl.call<Neighbour[]>('listNeighbours', 'br-n')
  t.same(all.map((n) => n.address).sort(), (await ipNeighs(ns, 'br-n')).map((n) => n.dst).sort(), 'every entry ip lists (kernel-made ones too)')
  t.same((await nl.call<Neighbour[]>('listNeighbours', 'br-n', 6)).filter((n) => n.state.includes('permanent')).map((n) => n.address), ['fd70::5'], 'one family')

  await nl.call('addNeighbour', { link: 'br-n', address: '10.70.0.5', mac: '02:42:0a:46:00:55' })
  t.equal((await ipNeighs(ns, 'br-n')).find((n) => n.dst === '10.70.0.5')?.lladdr, '02:42:0a:46:00:55', 'adding again replaces the MAC')

  await nl.call('deleteNeighbour', { link: 'br-n', address: '10.70.0.5' })
  await nl.call('deleteNeighbour', { link: 'br-n', address: 'fd70::5' })
  t.same((await ipNeighs(ns, 'br-n')).filter((n) => n.state.includes('PERMANENT')), [], 'deleted')
  t.equal((await ipNeighs(ns, 'br-o')).find((n) => n.dst === '10.70.0.5')?.lladdr, '02:42:0a:46:00:07', 'the same address on another link is untouched')

  const before = await nsState(ns)
  t.same(await nl.fails('deleteNeighbour', { link: 'br-n', address: '10.70.0.5' }), {
    kind: 'notfound', message: 'no neighbour entry for 10.70.0.5 on link br-n', name: 'TsnetError',
  })
  t.same(await nl.fails('addNeighbour', { link: 'nosuch0', address: '10.70.0.5', mac: '02:00:00:00:00:01' }), {
    kind: 'notfound', message: 'no link named nosuch0', name: 'TsnetError',
  })
  t.same(await nl.fails('addNeighbour', { link: 'br-n', address: '10.70.0.5', mac: 'ff:ff:ff:ff:ff:ff' }), {
    kind: 'invalid', message: 'MAC address ff:ff:ff:ff:ff:ff is a multicast address and cannot be given to an interface', name: 'TsnetError',
  })
  t.same(await nl.fails('addNeighbour', { link: 'br-n', address: 'fd70::zz', mac: '02:00:00:00:00:01' }), {
    kind: 'invalid', message: 'neighbour address "fd70::zz" is not an IPv4 or IPv6 address', name: 'TsnetError',
  })
  t.same(await nsState(ns), before, 'refusals change nothing')
})

/** A vxlan device's FDB as `bridge -j fdb show` prints it, without the device name and sorted. */
async function fdbShown(ns: Parameters<typeof bridgeFdb>[0], dev: string): Promise<string[]> {
  return (await bridgeFdb(ns, dev)).map((e) => `${e.mac} dst=${e.dst ?? '-'} flags=${e.flags.join(',')} state=${e.state ?? '-'}`).sort()
}

t.test('FDB of a vxlan device: flood entries to each VTEP and per-MAC entries, as bridge fdb append makes them', async (t) => {
  const ns = await createNetns(t)
  const nl = await startProbe(t, ns)
  const vxlan = { vni: 100, local: '127.0.0.1', port: 4789, learning: false }
  await nl.call('createLink', { kind: 'vxlan', name: 'vx-nl', vxlan })
  await nl.call('createLink', { kind: 'vxlan', name: 'vx-ip', vxlan: { ...vxlan, vni: 101 } })

  const zero = '00:00:00:00:00:00'
  for (const dst of ['10.80.0.2', '10.80.0.3']) {
    await nl.call('addFdb', { link: 'vx-nl', mac: zero, dst }, 'append')
    await ns.ok('bridge', ['fdb', 'append', zero, 'dev', 'vx-ip', 'dst', dst, 'self', 'permanent'])
  }
  await nl.call('addFdb', { link: 'vx-nl', mac: '02:42:0a:50:00:07', dst: '10.80.0.3' }, 'replace')
  await ns.ok('bridge', ['fdb', 'append', '02:42:0a:50:00:07', 'dev', 'vx-ip', 'dst', '10.80.0.3', 'self', 'permanent'])
  const made = await fdbShown(ns, 'vx-nl')
  t.same(made, await fdbShown(ns, 'vx-ip'), 'the same entries as bridge fdb append ... self permanent')
  t.same(made, [
    '00:00:00:00:00:00 dst=10.80.0.2 flags=self state=permanent',
    '00:00:00:00:00:00 dst=10.80.0.3 flags=self state=permanent',
    '02:42:0a:50:00:07 dst=10.80.0.3 flags=self state=permanent',
  ], 'one flood entry per VTEP, one per MAC')

  const index = (await ipLink(ns, 'vx-nl'))?.ifindex
  const listed = await nl.call<FdbEntry[]>('listFdb', 'vx-nl')
  t.same(listed.map((e) => `${e.mac} ${e.dst ?? '-'}`).sort(), made.map((m) => m.replace(/ dst=(\S+).*/, ' $1')), 'listFdb: the same entries')
  t.ok(listed.every((e) => e.link === index && e.self && e.state.includes('permanent')), 'listFdb: this device, self, permanent')
  t.notOk(listed.some((e) => e.link !== index), 'listFdb: nothing of the other vxlan device')

  await nl.call('addFdb', { link: 'vx-nl', mac: '02:42:0a:50:00:07', dst: '10.80.0.2' }, 'replace')
  t.same((await bridgeFdb(ns, 'vx-nl')).filter((e) => e.mac === '02:42:0a:50:00:07').map((e) => e.dst), ['10.80.0.2'], 'replace moves a MAC to another VTEP')
  t.same(await nl.fails('addFdb', { link: 'vx-nl', mac: '02:42:0a:50:00:07', dst: '10.80.0.4' }, 'create'), {
    kind: 'conflict', message: 'FDB entry 02:42:0a:50:00:07 to 10.80.0.4 already exists on link vx-nl', name: 'TsnetError',
  }, 'create refuses a MAC that has an entry')

  await nl.call('deleteFdb', { link: 'vx-nl', mac: zero, dst: '10.80.0.2' })
  t.same((await bridgeFdb(ns, 'vx-nl')).filter((e) => e.mac === zero).map((e) => e.dst), ['10.80.0.3'], 'one VTEP of the flood entry removed, the other kept')
  await nl.call('deleteFdb', { link: 'vx-nl', mac: '02:42:0a:50:00:07' })
  t.notOk((await bridgeFdb(ns, 'vx-nl')).some((e) => e.mac === '02:42:0a:50:00:07'), 'a MAC entry removed whole')

  const before = await nsState(ns)
  const fdbBefore = await fdbShown(ns, 'vx-nl')
  t.same(await nl.fails('deleteFdb', { link: 'vx-nl', mac: '02:42:0a:50:00:99', dst: '10.80.0.3' }), {
    kind: 'notfound', message: 'no FDB entry 02:42:0a:50:00:99 to 10.80.0.3 on link vx-nl', name: 'TsnetError',
  })
  t.same(await nl.fails('addFdb', { link: 'nosuch0', mac: zero, dst: '10.80.0.9' }), { kind: 'notfound', message: 'no link named nosuch0', name: 'TsnetError' })
  t.same(await nl.fails('addFdb', { link: 'vx-nl', mac: '01:00:5e:00:00:01', dst: '10.80.0.9' }), {
    kind: 'invalid', message: 'MAC address 01:00:5e:00:00:01 is a multicast address and cannot be given to an interface', name: 'TsnetError',
  })
  t.same(await nl.fails('addFdb', { link: 'vx-nl', mac: zero, dst: '10.80.0' }), {
    kind: 'invalid', message: 'VTEP address "10.80.0" is not an IPv4 or IPv6 address', name: 'TsnetError',
  })
  t.same(await nl.fails('addFdb', { link: 'vx-nl', mac: zero, dst: '10.80.0.9' }, 'sideways'), {
    kind: 'invalid', message: 'FDB mode "sideways" is not append, replace or create', name: 'TsnetError',
  })
  t.same(await fdbShown(ns, 'vx-nl'), fdbBefore, 'refusals leave the FDB as it was')
  t.same(await nsState(ns), before, 'and the namespace')
})

t.test('FDB of a bridge port: listFdb shows the bridge-learnt entries as bridge fdb does', async (t) => {
  const ns = await createNetns(t)
  const nl = await startProbe(t, ns)
  await nl.call('createLink', { kind: 'bridge', name: 'br-f', up: true })
  await nl.call('createLink', { kind: 'veth', name: 'vf0', master: 'br-f', up: true, peer: { name: 'vf0p' } })
  await ns.ok('bridge', ['fdb', 'add', '02:42:0a:50:01:01', 'dev', 'vf0', 'master', 'static'])
  const listed = await nl.call<FdbEntry[]>('listFdb', 'vf0')
  const byBridge = await bridgeFdb(ns, 'vf0')
  t.ok(byBridge.some((e) => e.mac === '02:42:0a:50:01:01'), 'control: bridge fdb shows the static entry')
  t.same(listed.map((e) => e.mac).sort(), byBridge.map((e) => e.mac).sort(), 'the same MACs')
  const brIndex = (await ipLink(ns, 'br-f'))?.ifindex
  t.match(listed.find((e) => e.mac === '02:42:0a:50:01:01'), { master: brIndex, self: false, state: ['noarp'] }, 'a static entry of the bridge (NUD_NOARP)')
})
