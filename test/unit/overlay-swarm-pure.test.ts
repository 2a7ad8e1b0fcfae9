// The pure swarm bookkeeping of overlay mode: VNI claims on the leader, the peer book, the
// VXLAN-wrapped gratuitous ARP.
import t from 'tap'
import { announcement, gratuitousArp } from '../../src/core/vxlan-frame.js'
import { claimVni, releaseVni } from '../../src/modes/overlay-vni.js'
import { departed, discovered, floodList, fromDocker, nodeAddress, remembered, type PeerBook } from '../../src/modes/overlay-peers.js'

const RANGE = { first: 256, last: 258 }

t.test('VNIs: lowest free, idempotent per network, exhausted with a sentence, freed', async (t) => {
  let c = claimVni({}, 'a', undefined, RANGE)
  t.same([c.vni, c.how], [256, 'allocated'])
  c = claimVni(c.claims, 'a', undefined, RANGE)
  t.same([c.vni, c.how], [256, 'kept'], 'a retry gets the same VNI')
  const b = claimVni(c.claims, 'b', undefined, RANGE)
  const d = claimVni(b.claims, 'd', undefined, RANGE)
  t.same([b.vni, d.vni], [257, 258])
  t.throws(() => claimVni(d.claims, 'e', undefined, RANGE), /every VNI of tsnet's range 256-258 is in use.*TSNET_VNI_RANGE/)
  const freed = releaseVni(d.claims, 'b')
  t.equal(claimVni(freed, 'e', undefined, RANGE).vni, 257, 'a freed VNI is given again')
  t.equal(releaseVni(freed, 'nope'), freed, 'freeing what holds nothing changes nothing')
})

t.test("VNIs: Swarm's options are the truth (replay after a leader change)", async (t) => {
  const given = claimVni({}, 'a', 4000, RANGE)
  t.same([given.vni, given.how], [4000, 'given'], 'a VNI in the options is taken as it is, even outside the range')
  const next = claimVni(given.claims, 'b', undefined, RANGE)
  t.equal(next.vni, 256)
  const replay = claimVni(next.claims, 'a', 4000, RANGE)
  t.equal(replay.how, 'kept')
  // An earlier term as leader left 'old' holding 256, which Swarm since gave to 'b' again.
  const stale = claimVni({ old: 256 }, 'b', 256, RANGE)
  t.same(stale.claims, { b: 256 }, 'the stale claim goes')
  t.equal(stale.evicted, 'old')
  t.equal(claimVni(stale.claims, 'c', undefined, RANGE).vni, 257, 'replayed VNIs are never given to a new network')
})

t.test('peers: discovery, self, departure, restart, Docker lists', async (t) => {
  let b: PeerBook = { peers: {} }
  b = discovered(b, '10.0.0.1', true)
  b = discovered(b, '10.0.0.2', false)
  b = discovered(b, '10.0.0.3', false)
  b = discovered(b, '10.0.0.1', false)
  t.same(floodList(b), ['10.0.0.2', '10.0.0.3'], 'self is never a peer')
  t.same(floodList(departed(b, '10.0.0.3')), ['10.0.0.2'])
  t.same(fromDocker(b, [[]]), b, 'hosts Docker told about stay until DiscoverDelete')
  const after = remembered(b)
  t.same(floodList(after), ['10.0.0.2', '10.0.0.3'], 'a restarted plugin keeps what it remembered')
  const checked = fromDocker(after, [['10.0.0.1', '10.0.0.2'], ['10.0.0.4']])
  t.same(floodList(checked), ['10.0.0.2', '10.0.0.4'], 'then Docker lists confirm, add and drop')
  t.same(checked.peers['10.0.0.2'], 'docker')
  t.same(discovered(checked, '10.0.0.2', false).peers['10.0.0.2'], 'discovery', 'a new DiscoverNew makes it certain again')
  t.equal(nodeAddress('0.0.0.0'), undefined)
  t.equal(nodeAddress('fd00:0::1'), 'fd00::1', 'addresses are compared in canonical form')
  t.equal(nodeAddress(42), undefined)
})

t.test('announcement: VXLAN header + broadcast gratuitous ARP, padded to 60 bytes', async (t) => {
  const p = announcement(300, '02:42:0a:d2:00:07', '10.210.0.7')
  t.equal(p.length, 8 + 60)
  t.same([...p.subarray(0, 8)], [0x08, 0, 0, 0, 0, 0x01, 0x2c, 0], 'I flag and VNI 300')
  const f = gratuitousArp('02:42:0a:d2:00:07', '10.210.0.7')
  t.equal(f.subarray(0, 6).toString('hex'), 'ffffffffffff', 'broadcast')
  t.equal(f.subarray(6, 12).toString('hex'), '02420ad20007', 'from the container')
  t.equal(f.readUInt16BE(12), 0x0806)
  t.equal(f.readUInt16BE(20), 1, 'an ARP request')
  t.equal(f.subarray(28, 32).toString('hex'), '0ad20007', 'sender IP')
  t.equal(f.subarray(38, 42).toString('hex'), '0ad20007', 'target IP is the same: gratuitous')
  t.throws(() => announcement(0, '02:42:0a:d2:00:07', '10.210.0.7'), /VNI 0/)
  t.throws(() => gratuitousArp('ff:ff:ff:ff:ff:ff', '10.0.0.1'), /multicast/)
})
