// The engine: diff, the desired index with shared keys, one change with rollback, reconcile — over FakeHost.
import t from 'tap'
import { diff } from '../../src/core/diff.js'
import { type HostObject, type LinkObject, keyOf } from '../../src/core/objects.js'
import { DesiredIndex } from '../../src/engine/desired-index.js'
import { Engine } from '../../src/engine/engine.js'
import { FakeHost } from '../../src/host/fake-host.js'
import { log } from './fixtures/util.js'

const bridge = (name: string, alias: string, more: Partial<LinkObject> = {}): LinkObject =>
  ({ kind: 'link', name, type: 'bridge', alias, mtu: 1500, up: true, recreate: true, ...more })
const veth = (name: string, alias: string, master: string, more: Partial<LinkObject> = {}): LinkObject =>
  ({ kind: 'link', name, type: 'veth', alias, mtu: 1500, master, up: true, recreate: true, veth: { peer: `p${name}`, peerMac: '02:42:0a:00:00:02' }, ...more })
const addr = (link: string, cidr: string): HostObject => ({ kind: 'addr', link, cidr })
const chains: HostObject = { kind: 'chains', intact: true }
const byKey = (objs: HostObject[]) => new Map(objs.map((o) => [keyOf(o), o]))

t.test('diff: creates what is missing in rank order, deletes what is owned and unwanted, leaves foreign links alone', async (t) => {
  const want = byKey([veth('tsv1', 'tsnet:ep:1', 'tsbr-a'), bridge('tsbr-a', 'tsnet:net:a'), addr('tsbr-a', '10.0.0.1/24'), chains])
  const have = byKey([bridge('tsbr-old', 'tsnet:net:old'), addr('tsbr-old', '10.9.0.1/24'), bridge('eth9', ''), { kind: 'setEntry', set: 'tsnet-src4', entry: 'x', comment: 'tsnet:net:old' }])
  const d = diff([...want.keys(), ...have.keys()], want, have)
  t.same(d.ops.map((o) => `${o.op} ${keyOf(o.obj)}`), [
    'delete set tsnet-src4 x',
    // the old bridge's address goes with it: no separate delete
    'delete link tsbr-old',
    'create chains',
    'create link tsbr-a',
    'create link tsv1',
    'create addr tsbr-a 10.0.0.1/24',
  ])
  t.same(d.foreign, [], 'an untagged link nobody wants is not touched')
})

t.test('diff: a wanted name held by another owner is foreign; an untagged link under a tsnet name is taken over', async (t) => {
  const want = byKey([bridge('mybr0', 'tsnet:net:b'), bridge('tsbr-c', 'tsnet:net:c')])
  const have = byKey([bridge('mybr0', 'tsnet:net:a'), bridge('tsbr-c', '')])
  const d = diff(want.keys(), want, have)
  t.equal(d.foreign.length, 1)
  t.equal(d.foreign[0]?.want.kind === 'link' && d.foreign[0].want.name, 'mybr0')
  t.same(d.ops.map((o) => `${o.op} ${keyOf(o.obj)}`), ['update link tsbr-c'], 'the untagged tsbr- bridge gets its tag')
})

t.test('diff: a joined veth that is gone is reported missing, not made again', async (t) => {
  const want = byKey([veth('tsv1', 'tsnet:ep:1', 'tsbr-a', { recreate: false })])
  const d = diff(want.keys(), want, new Map())
  t.same(d.ops, [])
  t.equal(d.missing.length, 1)
})

t.test('desired index: a key shared by owners stays wanted until the last owner goes', async (t) => {
  const idx = new DesiredIndex()
  idx.commit(idx.stage(new Map([['net:a', [chains, bridge('tsbr-a', 'tsnet:net:a')]], ['net:b', [chains]]])))
  const s = idx.stage(new Map([['net:a', undefined]]))
  t.ok(s.get('chains'), 'b still wants the chains')
  t.notOk(s.get('link tsbr-a'))
  idx.commit(s)
  const s2 = idx.stage(new Map([['net:b', undefined]]))
  t.notOk(s2.get('chains'), 'nobody wants them now')
  t.ok(s2.touched.has('chains'))
})

t.test('engine: a change applies, persists and commits; a repeat plans nothing', async (t) => {
  const host = new FakeHost()
  const engine = new Engine(host)
  let persisted = 0
  const objs = [chains, bridge('tsbr-a', 'tsnet:net:a'), addr('tsbr-a', '10.0.0.1/24')]
  await engine.change(new Map([['net:a', objs]]), { doing: 'creating network a', verify: ['net:a'], persist: async () => { persisted++ }, log })
  t.equal(persisted, 1)
  t.ok(host.objects.has('link tsbr-a'))
  host.calls.length = 0
  await engine.change(new Map([['net:a', objs]]), { doing: 'creating network a', verify: ['net:a'], log })
  t.same(host.calls.filter((c) => c !== 'observe'), [], 'nothing applied the second time')
  const report = await engine.reconcile({ dryRun: true, log })
  t.same(report.changes, [], 'a reconcile right after plans nothing')
})

t.test('engine: a failure undoes every change made so far, and says so once', async (t) => {
  const host = new FakeHost()
  const engine = new Engine(host)
  host.failNext.add('addr:create')
  const before = host.state()
  await t.rejects(engine.change(new Map([['net:a', [chains, bridge('tsbr-a', 'tsnet:net:a'), addr('tsbr-a', '10.0.0.1/24')]]]), { doing: 'creating network a', log }),
    { message: /^creating network a \(rolled back: the host is as it was\): injected failure in addr:create$/ })
  t.equal(host.state(), before, 'nothing left')
  t.equal([...engine.desired.keys()].length, 0, 'the index did not take the change')
})

t.test('engine: a store failure after the host change is undone on the host too', async (t) => {
  const host = new FakeHost()
  const engine = new Engine(host)
  const before = host.state()
  await t.rejects(engine.change(new Map([['net:a', [bridge('tsbr-a', 'tsnet:net:a')]]]), { doing: 'creating network a', persist: async () => { throw new Error('disk full') }, log }),
    { message: /rolled back: the host is as it was.*disk full/ })
  t.equal(host.state(), before)
})

t.test('engine: a failed undo says it is incomplete', async (t) => {
  const host = new FakeHost()
  const engine = new Engine(host)
  host.failNext.add('addr:create')
  host.failNext.add('link:delete')
  await t.rejects(engine.change(new Map([['net:a', [bridge('tsbr-a', 'tsnet:net:a'), addr('tsbr-a', '10.0.0.1/24')]]]), { doing: 'creating network a', log }),
    { message: /rollback incomplete: 1 change\(s\) could not be undone/ })
})

t.test('engine: a wanted name held by something else is refused before any change', async (t) => {
  const host = new FakeHost()
  host.objects.set('link mybr0', bridge('mybr0', ''))
  const engine = new Engine(host)
  await t.rejects(engine.change(new Map([['net:a', [chains, bridge('mybr0', 'tsnet:net:a')]]]), { doing: 'creating network a', log }),
    { name: 'TsnetError', kind: 'conflict', message: /^creating network a: a link named mybr0 already exists and is not tsnet's/ })
  t.notOk(host.objects.has('chains'), 'not even the chains were made')
})

t.test('engine: reconcile brings back what went, removes what nobody wants, leaves the rest', async (t) => {
  const host = new FakeHost()
  const engine = new Engine(host)
  await engine.change(new Map([['net:a', [chains, bridge('tsbr-a', 'tsnet:net:a'), addr('tsbr-a', '10.0.0.1/24')]]]), { doing: 'x', log })
  host.objects.delete('link tsbr-a')
  host.objects.delete('addr tsbr-a 10.0.0.1/24')
  host.objects.set('link tsv9', veth('tsv9', 'tsnet:ep:9', 'tsbr-a'))
  host.objects.set('link eth1', bridge('eth1', ''))
  const dry = await engine.reconcile({ dryRun: true, log })
  t.same(dry.changes.sort(), ['create addr tsbr-a 10.0.0.1/24', 'create link tsbr-a', 'delete link tsv9'])
  t.ok(host.objects.has('link tsv9'), 'a dry run changes nothing')
  const report = await engine.reconcile({ log })
  t.same(report.failed, [])
  t.ok(host.objects.has('link tsbr-a'))
  t.notOk(host.objects.has('link tsv9'))
  t.ok(host.objects.has('link eth1'), 'not tsnet\'s: untouched')
  t.same((await engine.reconcile({ dryRun: true, log })).changes, [], 'converged')
})

t.test('engine: reconcile skips what needs an object it could not make', async (t) => {
  const host = new FakeHost()
  const engine = new Engine(host)
  const dnat: HostObject = { kind: 'dnat', family: 4, rule: '-p tcp -m tcp --dport 8080 -m comment --comment "tsnet:ep:e1" -j DNAT --to-destination 10.0.0.2:80' }
  engine.seed(new Map([['ep:e1', [{ kind: 'portHold', proto: 'tcp', port: 8080, bindings: [{ family: 4, address: '0.0.0.0' }] }, dnat]]]))
  host.busyPorts.add('tcp/8080')
  const report = await engine.reconcile({ log })
  t.equal(report.failed.length, 2)
  t.match(report.failed[1], { change: /create dnat/, error: /skipped/ })
  t.notOk(host.objects.has(keyOf(dnat)), 'no rule steals the port another process holds')
})

t.test('engine: concurrent changes of different owners proceed; of one shared key, serialise', async (t) => {
  const host = new FakeHost()
  const engine = new Engine(host)
  await Promise.all([
    engine.change(new Map([['net:a', [chains, bridge('tsbr-a', 'tsnet:net:a')]]]), { doing: 'a', verify: ['net:a'], log }),
    engine.change(new Map([['net:b', [chains, bridge('tsbr-b', 'tsnet:net:b')]]]), { doing: 'b', verify: ['net:b'], log }),
  ])
  await Promise.all([
    engine.change(new Map([['net:a', undefined]]), { doing: 'a', log }),
    engine.change(new Map([['net:c', [chains, bridge('tsbr-c', 'tsnet:net:c')]]]), { doing: 'c', verify: ['net:c'], log }),
  ])
  t.ok(host.objects.has('chains'), 'the chains stay while b and c exist')
  await engine.change(new Map([['net:b', undefined], ['net:c', undefined]]), { doing: 'bc', log })
  t.notOk(host.objects.has('chains'), 'and go with the last network')
})
