// A macvlan endpoint link (macvlan mode on a physical parent, overlay mode on the network's VXLAN
// device) as the engine verifies it on Join: observed with its parent's name, so a repeated or
// joined record whose link is to spec changes nothing and keeps the very link Docker is about to
// move into the container. Until 2026-12-05 a partial observe named the parent '#<index>', and
// every Join deleted the link and made it again.
import t from 'tap'
import { endpointAlias } from '../../src/core/names.js'
import type { LinkObject } from '../../src/core/objects.js'
import { Owners } from './lib/link-objects.js'
import { createNetns, link, type Netns } from './lib/netns.js'
import { hostIn } from './lib/remote-host.js'

const EP = 'e5'.repeat(32)
const OWNER = `ep:${EP}`
const child = (parent: string, over: Partial<LinkObject> = {}): LinkObject => ({
  kind: 'link', name: 'tsm-it1', type: 'macvlan', alias: endpointAlias(EP), mtu: 1400, mac: '02:42:0a:d2:00:05', up: false,
  recreate: true, macvlan: { parent, mode: 'bridge' }, ...over,
})
const joined = (parent: string, over: Partial<LinkObject> = {}) => child(parent, { recreate: false, inSandbox: true, ...over })
const ifindex = async (ns: Netns, name: string) => ((await link(ns, name)) as { ifindex?: number } | undefined)?.ifindex

const parents: Array<[string, (ns: Netns) => Promise<unknown>]> = [
  ['a plain parent (macvlan mode)', (ns) => ns.ok('ip', ['link', 'add', 'name', 'up0', 'mtu', '1500', 'type', 'veth', 'peer', 'name', 'up0p'])],
  ['a VXLAN parent (overlay mode)', (ns) => ns.ok('ip', ['link', 'add', 'up0', 'mtu', '1450', 'type', 'vxlan', 'id', '300', 'dstport', '4789', 'local', '127.0.0.1', 'learning'])],
]

for (const [what, makeParent] of parents) {
  t.test(`${what}: the link is observed with its parent's name, and a Join's verify leaves it alone`, async (t) => {
    const ns = await createNetns(t)
    await makeParent(ns)
    const host = hostIn(t, ns)
    const owners = new Owners(host)
    await owners.set(OWNER, [child('up0')], 'creating endpoint e5e5')
    const made = await ifindex(ns, 'tsm-it1')
    t.ok(made, 'CreateEndpoint made the macvlan link')

    const seen = (await host.observe({ keys: ['link tsm-it1'] })).get('link tsm-it1')
    t.same(seen?.kind === 'link' ? seen.macvlan : undefined, { parent: 'up0', mode: 'bridge' }, 'observed alone, its parent is named, not numbered')

    await host.resetCounters()
    await owners.set(OWNER, [joined('up0')], 'joining endpoint e5e5', true)
    const c = await host.counters()
    t.equal(c.netlinkChanges, 0, `Join's verify sends no change to the kernel (${c.netlinkReads} reads)`)
    t.equal(await ifindex(ns, 'tsm-it1'), made, 'the same link (ifindex) is still there for Docker to move')

    // Positive control on the same path: a verify that finds a real difference does change the link.
    await host.resetCounters()
    await owners.set(OWNER, [joined('up0', { mtu: 1300 })], 'joining endpoint e5e5 again', true)
    t.ok((await host.counters()).netlinkChanges > 0, 'a link off spec (MTU) is brought to spec by the same verify')
    t.equal((await link(ns, 'tsm-it1'))?.mtu, 1300, 'MTU now as wanted')
    t.equal(await ifindex(ns, 'tsm-it1'), made, 'updated in place, not made again')
  })
}
