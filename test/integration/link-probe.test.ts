// Asking the real kernel which link kinds it can make (host/netlink/link-probe.ts): the answer
// agrees with iproute2 trying to make one (the control), and the question makes nothing. Also
// the kernel's refusal of a second macvlan link beside a passthru one, as tsnet words it.
import t from 'tap'
import { createNetns, nsState } from './lib/netns.js'
import { startProbe } from './lib/netlink-probe.js'
import { ipLink } from './lib/ip-json.js'

t.test('kernelHasLinkKind: as iproute2 finds, and nothing is made', async (t) => {
  const ns = await createNetns(t)
  const nl = await startProbe(t, ns)
  await ns.ok('ip', ['link', 'add', 'name', 'up0', 'type', 'veth', 'peer', 'name', 'up0p'])
  const controls: Record<string, string[]> = {
    vlan: ['type', 'vlan', 'id', '5'],
    macvlan: ['type', 'macvlan', 'mode', 'bridge'],
    ipvlan: ['type', 'ipvlan', 'mode', 'l2'],
  }
  for (const [kind, args] of Object.entries(controls)) {
    const before = await nsState(ns)
    const has = await nl.call<boolean>('kernelHasLinkKind', kind)
    t.same(await nsState(ns), before, `${kind}: asking made nothing`)
    t.equal(await ipLink(ns, 'tsnet-probe0'), undefined, `${kind}: no probe link`)
    const control = await ns.run('ip', ['link', 'add', 'link', 'up0', 'name', 'ctl0', ...args])
    t.equal(has, control.code === 0, `${kind}: ${has ? 'present' : 'absent'}, as iproute2 finds (${control.code === 0 ? 'made one' : control.stderr.trim()})`)
    if (control.code === 0) await ns.ok('ip', ['link', 'del', 'ctl0'])
  }
  t.equal(await nl.call<boolean>('kernelHasLinkKind', 'macvlan'), true, 'macvlan, which tsnet relies on, is there (positive control)')
})

t.test('a second macvlan link beside a passthru one: the kernel\'s EINVAL, in words', async (t) => {
  const ns = await createNetns(t)
  const nl = await startProbe(t, ns)
  await ns.ok('ip', ['link', 'add', 'name', 'up0', 'type', 'veth', 'peer', 'name', 'up0p'])
  await nl.call('createLink', { kind: 'macvlan', name: 'mvp0', parent: 'up0', mode: 'passthru' })
  t.equal((await ipLink(ns, 'mvp0'))?.address, (await ipLink(ns, 'up0'))?.address, 'a passthru link has its parent\'s MAC')
  const before = await nsState(ns)
  const err = await nl.fails('createLink', { kind: 'macvlan', name: 'mvp1', parent: 'up0', mode: 'bridge', mac: '02:00:00:00:03:02' })
  t.match(err, { kind: 'conflict', message: /cannot create macvlan link mvp1 on link up0: the kernel refused it \(EINVAL\); a passthru macvlan link must be the only macvlan link of its parent/ })
  t.same(await nsState(ns), before, 'nothing changed')
})
