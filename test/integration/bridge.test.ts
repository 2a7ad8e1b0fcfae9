// ensureBridge against a real kernel, inside private network namespaces: creation to spec,
// idempotence, MTU updates, refusal of links tsnet does not own, and rollback on failure.
import t from 'tap'
import { TsnetError } from '../../src/errors.js'
import { GROUP } from '../../src/core/edge-plan.js'
import { macFromSeed, networkAlias } from '../../src/core/names.js'
import type { BridgeSpec } from '../../src/host/host.js'
import { addPlainDevice, addrs, createNetns, deviceGroup, globalCidrs, hostIn, link, log, nsState, rejection } from './lib/netns.js'

const NET_ID = 'a1'.repeat(32)
const spec = (over: Partial<BridgeSpec> = {}): BridgeSpec => ({
  name: 'tsbr-it1',
  alias: networkAlias(NET_ID),
  mtu: 1400,
  mac: macFromSeed(NET_ID),
  addresses: ['10.77.0.1/24', 'fd77::1/64'],
  group: GROUP.base,
  ...over,
})

t.test('ensureBridge creates the bridge to spec and is idempotent', async (t) => {
  const ns = await createNetns(t)
  const { host } = hostIn(ns)
  const s = spec()

  await host.ensureBridge(s, log)
  const br = await link(ns, s.name)
  t.ok(br, 'bridge exists')
  t.equal(br?.linkinfo?.info_kind, 'bridge', 'it is a bridge')
  t.equal(br?.ifalias, s.alias, 'alias marks it as tsnet\'s')
  t.equal(br?.mtu, 1400, 'MTU')
  t.equal(br?.address, s.mac, 'MAC')
  t.ok(br?.flags.includes('UP'), 'administratively up')
  t.equal(deviceGroup(br), GROUP.base, 'tsnet\'s device group')
  t.same(await globalCidrs(ns, s.name), ['10.77.0.1/24', 'fd77::1/64'], 'IPv4 and IPv6 gateway addresses')
  const v6 = (await addrs(ns, s.name)).find((a) => a.local === 'fd77::1')
  t.notOk(v6?.tentative, 'IPv6 gateway is not tentative (nodad)')

  t.same(await host.getLink(s.name), { name: s.name, kind: 'bridge', alias: s.alias, mtu: 1400, mac: s.mac, up: true }, 'getLink reads it back')

  const before = await nsState(ns)
  await host.ensureBridge(s, log)
  await host.ensureBridge(s, log)
  t.same(await nsState(ns), before, 'repeating ensureBridge changes nothing')
  t.equal((await addrs(ns, s.name)).filter((a) => a.local === '10.77.0.1').length, 1, 'no duplicate IPv4 address')
  t.equal((await addrs(ns, s.name)).filter((a) => a.local === 'fd77::1').length, 1, 'no duplicate IPv6 address')

  await host.ensureBridge({ ...s, mtu: 1300 }, log)
  const br2 = await link(ns, s.name)
  t.equal(br2?.mtu, 1300, 'changed MTU is applied')
  t.equal(br2?.ifalias, s.alias, 'alias kept')
  t.equal(br2?.address, s.mac, 'MAC kept')
  t.same(await globalCidrs(ns, s.name), ['10.77.0.1/24', 'fd77::1/64'], 'addresses kept, not duplicated')

  await host.ensureBridge({ ...s, mtu: 1300, group: GROUP.base | GROUP.iccOff | GROUP.internal }, log)
  t.equal(deviceGroup(await link(ns, s.name)), GROUP.base | GROUP.iccOff | GROUP.internal, 'a changed device group is applied to an existing bridge')
  await ns.ok('ip', ['link', 'set', 'dev', s.name, 'group', 'default'])
  await host.ensureBridge({ ...s, mtu: 1300 }, log)
  t.equal(deviceGroup(await link(ns, s.name)), GROUP.base, 'a bridge of ours that lost its group gets it back')

  // a bridge of ours that was brought down is brought up again
  await ns.ok('ip', ['link', 'set', 'dev', s.name, 'down'])
  await host.ensureBridge({ ...s, mtu: 1300 }, log)
  t.ok((await link(ns, s.name))?.flags.includes('UP'), 'a downed bridge of ours is brought back up')
})

t.test('ensureBridge refuses links it does not own and leaves them untouched', async (t) => {
  const ns = await createNetns(t)
  const { host } = hostIn(ns)
  const s = spec({ name: 'tsbr-it2' })

  const cases: Array<{ what: string; setup: Array<string[] | 'plain'> }> = [
    { what: 'a bridge without alias', setup: [['link', 'add', 'name', s.name, 'mtu', '1500', 'type', 'bridge']] },
    {
      what: 'a bridge with a foreign alias',
      setup: [['link', 'add', 'name', s.name, 'type', 'bridge'], ['link', 'set', 'dev', s.name, 'alias', 'someone-else']],
    },
    {
      what: 'a bridge owned by another tsnet network',
      setup: [['link', 'add', 'name', s.name, 'type', 'bridge'], ['link', 'set', 'dev', s.name, 'alias', networkAlias('b2'.repeat(32))]],
    },
    // 'plain' = a dummy device (ifb where the kernel has no dummy driver)
    { what: 'a dummy device without alias', setup: ['plain'] },
    { what: 'a dummy device carrying our alias', setup: ['plain', ['link', 'set', 'dev', s.name, 'alias', s.alias]] },
  ]

  for (const c of cases) {
    for (const step of c.setup) {
      if (step === 'plain') await addPlainDevice(ns, s.name)
      else await ns.ok('ip', step)
    }
    const before = await nsState(ns)
    const err = await rejection(host.ensureBridge(s, log))
    t.ok(err instanceof TsnetError, `${c.what}: refused with a TsnetError`)
    t.equal((err as TsnetError | undefined)?.kind, 'conflict', `${c.what}: kind is conflict`)
    t.match((err as Error | undefined)?.message ?? '', new RegExp(s.name), `${c.what}: message names the link`)
    t.same(await nsState(ns), before, `${c.what}: namespace unchanged (no addresses, MTU, alias or state touched)`)
    t.equal((await host.getLink(s.name))?.up, false, `${c.what}: still down`)
    await ns.ok('ip', ['link', 'del', 'dev', s.name])
  }
})

t.test('a failing ensureBridge rolls back a bridge it created', async (t) => {
  const ns = await createNetns(t)
  const { host } = hostIn(ns)
  const empty = await nsState(ns)

  // The kernel refuses a multicast IPv6 address on an interface (EADDRNOTAVAIL).
  const e1 = await rejection(host.ensureBridge(spec({ name: 'tsbr-rb1', addresses: ['10.78.0.1/24', 'ff02::5/64'] }), log))
  t.ok(e1 instanceof TsnetError, 'kernel-refused address: rejected with a TsnetError')
  t.equal((e1 as TsnetError | undefined)?.kind, 'host', 'kernel-refused address: kind host')
  t.match((e1 as Error | undefined)?.message ?? '', /rolled back/, 'message says it rolled back')
  t.equal(await link(ns, 'tsbr-rb1'), undefined, 'kernel-refused address: the bridge is gone')
  t.same(await nsState(ns), empty, 'kernel-refused address: namespace as before')

  // An address ip cannot even parse.
  const e2 = await rejection(host.ensureBridge(spec({ name: 'tsbr-rb2', addresses: ['10.78.0.1/33'] }), log))
  t.ok(e2 instanceof TsnetError, 'unparsable address: rejected')
  t.equal(await link(ns, 'tsbr-rb2'), undefined, 'unparsable address: the bridge is gone')

  // A multicast MAC is a string like any other; the kernel accepts it at creation and refuses
  // to bring the device up (eth_validate_addr). Whatever layer refuses it, nothing may remain.
  const e3 = await rejection(host.ensureBridge(spec({ name: 'tsbr-rb3', mac: '01:00:5e:00:00:01' }), log))
  t.ok(e3 instanceof TsnetError, `multicast MAC: rejected (kind ${(e3 as TsnetError | undefined)?.kind})`)
  t.equal(await link(ns, 'tsbr-rb3'), undefined, 'multicast MAC: the bridge is gone')

  const e4 = await rejection(host.ensureBridge(spec({ name: 'tsbr-rb4', mac: '00:00:00:00:00:00' }), log))
  t.ok(e4 instanceof TsnetError, 'all-zero MAC: rejected')
  t.equal(await link(ns, 'tsbr-rb4'), undefined, 'all-zero MAC: the bridge is gone')

  t.same(await nsState(ns), empty, 'after all failures the namespace is as it was')
})

t.test('a failing ensureBridge on an existing bridge of ours leaves the bridge', async (t) => {
  const ns = await createNetns(t)
  const { host } = hostIn(ns)
  const s = spec({ name: 'tsbr-ex1' })
  await host.ensureBridge(s, log)
  const before = await nsState(ns)

  const err = await rejection(host.ensureBridge({ ...s, addresses: [...s.addresses, 'ff02::6/64'] }, log))
  t.ok(err instanceof TsnetError, 'rejected')
  t.equal((err as TsnetError | undefined)?.kind, 'host', 'kind host')
  t.notMatch((err as Error | undefined)?.message ?? '', /rolled back/, 'does not claim a rollback')
  const br = await link(ns, s.name)
  t.ok(br, 'bridge still exists')
  t.equal(br?.ifalias, s.alias, 'still ours')
  t.same(await globalCidrs(ns, s.name), ['10.77.0.1/24', 'fd77::1/64'], 'its addresses are still there')
  t.same(await nsState(ns), before, 'namespace unchanged')
})
