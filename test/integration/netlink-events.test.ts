// Link events from the kernel's RTNLGRP_LINK group, heard by the netlink client in a namespace of
// the test's own while `ip` (standing for anyone else on the host) adds, renames, re-parents and
// deletes links there. Each event must arrive within BOUND_MS.
import t from 'tap'
import { createNetns } from './lib/netns.js'
import { startProbe, type ProbeEvent } from './lib/netlink-probe.js'
import { ipLink } from './lib/ip-json.js'

const BOUND_MS = 1000
const settle = () => new Promise((r) => setTimeout(r, 300))

t.test('add, rename and delete of links are heard at once, with name, index, alias and kind', async (t) => {
  const ns = await createNetns(t)
  const nl = await startProbe(t, ns)
  await ns.ok('ip', ['link', 'add', 'name', 'old0', 'type', 'bridge'])
  await ns.ok('ip', ['link', 'set', 'dev', 'old0', 'alias', 'tsnet:net:e1'])
  await nl.call('watch')

  await ns.ok('ip', ['link', 'add', 'name', 'ev0', 'type', 'veth', 'peer', 'name', 'ev0p'])
  const added = await nl.waitForEvent((e) => e.type === 'add' && e.name === 'ev0', BOUND_MS)
  await nl.waitForEvent((e) => e.type === 'add' && e.name === 'ev0p', BOUND_MS)
  t.equal(added.index, (await ipLink(ns, 'ev0'))?.ifindex, 'add: the index')
  t.equal(added.kind, 'veth', 'add: the kind')

  // A rename: one RTM_NEWLINK with the new name and the same index; the old name comes from the watch's memory.
  await settle()
  let mark = nl.events.length
  await ns.ok('ip', ['link', 'set', 'dev', 'ev0', 'name', 'ev1'])
  const renamed = await nl.waitForEvent((e) => e.name === 'ev1', BOUND_MS)
  t.same(renamed, { type: 'change', index: added.index, name: 'ev1', previousName: 'ev0', kind: 'veth' }, 'rename: a change with the new and the old name')
  await settle()
  t.same(nl.events.slice(mark), [renamed], 'rename: that one event and nothing else')

  // A link that existed before the watch: its old name comes from the listing the watch was seeded with.
  mark = nl.events.length
  await ns.ok('ip', ['link', 'set', 'dev', 'old0', 'name', 'new0'])
  t.match(await nl.waitForEvent((e) => e.name === 'new0', BOUND_MS), { type: 'change', previousName: 'old0', alias: 'tsnet:net:e1', kind: 'bridge' },
    'rename of an older link: previous name and alias')

  mark = nl.events.length
  await ns.ok('ip', ['link', 'del', 'dev', 'ev1'])
  const gone = await nl.waitForEvent((e) => e.type === 'delete' && e.name === 'ev1', BOUND_MS)
  await nl.waitForEvent((e) => e.type === 'delete' && e.name === 'ev0p', BOUND_MS)
  t.equal(gone.index, added.index, 'delete: the index')
  t.equal(gone.kind, 'veth', 'delete: the kind')

  await ns.ok('ip', ['link', 'del', 'dev', 'new0'])
  t.match(await nl.waitForEvent((e) => e.type === 'delete' && e.name === 'new0', BOUND_MS), { alias: 'tsnet:net:e1', kind: 'bridge' }, 'delete carries the alias')
  t.notOk(nl.events.some((e) => e.type === 'overflow'), 'no events lost')
})

t.test('leaving a bridge is a change, not a delete; events stop when the watch stops', async (t) => {
  const ns = await createNetns(t)
  const nl = await startProbe(t, ns)
  await ns.ok('ip', ['link', 'add', 'name', 'brx', 'type', 'bridge'])
  await ns.ok('ip', ['link', 'add', 'name', 'px0', 'master', 'brx', 'type', 'veth', 'peer', 'name', 'px0p'])
  await nl.call('watch')
  const px0 = (await ipLink(ns, 'px0'))?.ifindex

  const mark = nl.events.length
  await ns.ok('ip', ['link', 'set', 'dev', 'px0', 'nomaster'])
  await nl.waitForEvent((e) => e.index === px0 && e.type === 'change', BOUND_MS)
  await settle()
  const about = (e: ProbeEvent) => e.index === px0
  t.notOk(nl.events.slice(mark).some((e) => about(e) && e.type === 'delete'), 'the bridge\'s own port notice (AF_BRIDGE RTM_DELLINK) is not taken for a delete')

  await ns.ok('ip', ['link', 'del', 'dev', 'px0'])
  await nl.waitForEvent((e) => about(e) && e.type === 'delete', BOUND_MS) // positive control: a real delete is one

  await nl.call('unwatch')
  const stopped = nl.events.length
  await ns.ok('ip', ['link', 'add', 'name', 'late0', 'type', 'bridge'])
  await settle()
  t.equal(nl.events.length, stopped, 'no events after the watch stopped')
  t.same((await nl.call<Array<{ name: string }>>('listLinks')).map((l) => l.name).sort(), ['brx', 'late0', 'lo'], 'the client works on after the watch')
})
