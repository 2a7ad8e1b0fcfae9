// core/diff: what sits on a link that is missing for good is missing too, not a change that fails.
import t from 'tap'
import { diff } from '../../src/core/diff.js'
import { keyOf, type HostObject } from '../../src/core/objects.js'

const veth: HostObject = { kind: 'link', name: 'tsvabc', type: 'veth', alias: 'tsnet:ep:abc', mtu: 1450, master: 'tsbr-x', up: true, recreate: false, veth: { peer: 'tscabc', peerMac: '02:42:0a:00:00:02' } }
const pin: HostObject = { kind: 'fdb', link: 'tsvabc', mac: '02:42:0a:00:00:02' }
const flood: HostObject = { kind: 'fdb', link: 'tsvx-x', mac: '00:00:00:00:00:00', dst: '10.0.0.2' }

t.test('a joined veth gone with its container takes its static entry along', async (t) => {
  const wanted = new Map([veth, pin, flood].map((o) => [keyOf(o), o]))
  const r = diff(wanted.keys(), wanted, new Map())
  t.same(r.missing.map(keyOf), [keyOf(veth), keyOf(pin)], 'both reported missing')
  t.same(r.ops.map((o) => keyOf(o.obj)), [keyOf(flood)], 'only what can be made is made')
})

t.test('a veth that is there gets its entry', async (t) => {
  const wanted = new Map([veth, pin].map((o) => [keyOf(o), o]))
  const r = diff(wanted.keys(), wanted, new Map([[keyOf(veth), veth]]))
  t.same(r.ops.map((o) => `${o.op} ${keyOf(o.obj)}`), [`create ${keyOf(pin)}`])
  t.same(r.missing, [])
})
