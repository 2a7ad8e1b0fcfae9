// netlink wire format and the nested attributes tsnet encodes itself (veth peer, vxlan, macvlan,
// vlan, bridge options): exact bytes where the kernel's layout is fixed, and decode(encode(x)) = x.
import t from 'tap'
import { IFLA, IFLA_INFO, VETH_INFO_PEER } from '../../src/host/netlink/constants.js'
import { decodeLinkInfo, encodeLinkInfo } from '../../src/host/netlink/link-kinds.js'
import { checkFdbMac, checkIp, checkLinkRef, ipText, macText } from '../../src/host/netlink/values.js'
import { attr, Attrs, decodeMessages, encodeMessage, errnoOf, ifinfomsg, nest, readIfinfomsg, str, u16be, u32 } from '../../src/host/netlink/wire.js'
import { explain, NetlinkErrno } from '../../src/host/netlink/errno.js'
import { TsnetError } from '../../src/errors.js'

const hex = (b: Buffer) => b.toString('hex')

t.test('attributes: length, type, padding to 4 bytes', async (t) => {
  t.equal(hex(attr(3, str('ab'))), '0700030061620000', 'IFLA_IFNAME "ab": length 7 (header 4 + "ab\\0"), padded to 8')
  t.equal(hex(attr(15, u16be(4789))), '06000f0012b50000', 'IFLA_VXLAN_PORT 4789 in network order')
  t.equal(hex(attr(4, u32(1450))), '08000400aa050000', 'IFLA_MTU 1450, host order')
  const n = nest(18, [attr(1, str('veth'))])
  t.equal(hex(n), '10001200' + '090001007665746800000000', 'a nest\'s length covers its padded children')
  t.throws(() => attr(1, Buffer.alloc(70000)), /more than an attribute can hold/)
})

t.test('Attrs reads what attr writes, keeps the first of a repeated type, masks flag bits, refuses bad lengths', async (t) => {
  const buf = Buffer.concat([attr(1, u32(7)), attr(2, str('x')), attr(1, u32(8)), attr(0x8000 | 5, Buffer.alloc(0))])
  const a = new Attrs(buf)
  t.equal(a.u32(1), 7, 'first occurrence')
  t.equal(a.str(2), 'x')
  t.ok(a.has(5), 'NLA_F_NESTED bit masked off the type')
  t.equal(a.u32(9), undefined)
  t.throws(() => new Attrs(Buffer.from('0900010000000000', 'hex')), /malformed netlink attribute/, 'length past the end')
  t.throws(() => new Attrs(Buffer.from('02000100', 'hex')), /malformed netlink attribute/, 'length shorter than the header')
})

t.test('messages: header, several per datagram, errno of ERROR/DONE, malformed refused', async (t) => {
  const m1 = encodeMessage(16, 0x2, 7, 0, [Buffer.from([1, 2, 3])])
  t.equal(hex(m1.subarray(0, 16)), '13000000100002000700000000000000', 'nlmsghdr: length 19, type 16, flags MULTI, seq 7, port 0')
  const padded = Buffer.concat([m1, Buffer.alloc(1), encodeMessage(3, 2, 7, 0, [Buffer.from([0xfe, 0xff, 0xff, 0xff])])])
  const msgs = decodeMessages(padded)
  t.same(msgs.map((m) => [m.type, m.seq, m.payload.length]), [[16, 7, 3], [3, 7, 4]], 'two messages, padding between them skipped')
  t.equal(errnoOf(msgs[1]!), 2, 'DONE carrying -2 is ENOENT')
  t.throws(() => decodeMessages(Buffer.from('ff000000100000000000000000000000', 'hex')), /malformed netlink message/)
})

t.test('veth: the peer is an ifinfomsg followed by its own attributes, inside IFLA_INFO_DATA', async (t) => {
  const info = encodeLinkInfo({ kind: 'veth', peer: { name: 'tsc0', mac: '02:42:0a:00:00:02', mtu: 1450 } })
  const top = new Attrs(info)
  const li = top.nested(IFLA.LINKINFO)
  t.equal(li?.str(IFLA_INFO.KIND), 'veth')
  const peer = li?.nested(IFLA_INFO.DATA)?.raw(VETH_INFO_PEER)
  t.ok(peer, 'VETH_INFO_PEER present')
  t.same(readIfinfomsg(peer!), { family: 0, type: 0, index: 0, flags: 0, change: 0 }, 'an empty ifinfomsg first')
  const pa = new Attrs(peer!.subarray(16))
  t.equal(pa.str(IFLA.IFNAME), 'tsc0')
  t.equal(macText(pa.raw(IFLA.ADDRESS)), '02:42:0a:00:00:02')
  t.equal(pa.u32(IFLA.MTU), 1450)
  t.same(decodeLinkInfo(new Attrs(Buffer.concat([info, attr(IFLA.LINK, u32(12))]))), { kind: 'veth', veth: { peerIndex: 12 } }, 'the peer index comes from IFLA_LINK')
})

t.test('vxlan, macvlan, vlan, bridge: decode(encode(x)) gives x back', async (t) => {
  const vx = encodeLinkInfo({ kind: 'vxlan', vxlan: { vni: 4001, local: checkIp('10.0.0.1'), port: 4789, devIndex: 2, learning: false, proxy: true, ttl: 64 } })
  t.same(decodeLinkInfo(new Attrs(vx)).vxlan, { vni: 4001, port: 4789, local: '10.0.0.1', dev: 2, learning: false, proxy: true, ttl: 64, l2miss: false, l3miss: false })
  const vx6 = encodeLinkInfo({ kind: 'vxlan', vxlan: { vni: 1, local: checkIp('fd00::1') } })
  t.match(decodeLinkInfo(new Attrs(vx6)).vxlan, { vni: 1, local: 'fd00::1' }, 'IPv6 source in IFLA_VXLAN_LOCAL6')
  const mv = Buffer.concat([encodeLinkInfo({ kind: 'macvlan', mode: 'private' }), attr(IFLA.LINK, u32(3))])
  t.same(decodeLinkInfo(new Attrs(mv)), { kind: 'macvlan', macvlan: { mode: 'private', parent: 3 } })
  const vl = Buffer.concat([encodeLinkInfo({ kind: 'vlan', id: 10, protocol: '802.1ad' }), attr(IFLA.LINK, u32(3))])
  t.same(decodeLinkInfo(new Attrs(vl)), { kind: 'vlan', vlan: { id: 10, protocol: '802.1ad', parent: 3 } })
  t.equal(hex(new Attrs(new Attrs(vl).nested(IFLA.LINKINFO)!.raw(IFLA_INFO.DATA)!).raw(5)!), '88a8', 'IFLA_VLAN_PROTOCOL in network order')
  const br = encodeLinkInfo({ kind: 'bridge', bridge: { stpState: true, forwardDelay: 400, ageingTime: 12000, vlanFiltering: true, mcastSnooping: false } })
  t.same(decodeLinkInfo(new Attrs(br)).bridge, { stpState: true, forwardDelay: 400, ageingTime: 12000, vlanFiltering: true, mcastSnooping: false })
  t.same(new Attrs(encodeLinkInfo({ kind: 'bridge' })).nested(IFLA.LINKINFO)?.has(IFLA_INFO.DATA), false, 'no options, no IFLA_INFO_DATA')
})

t.test('values: addresses, MACs, link references', async (t) => {
  t.same(checkIp('10.1.2.3').bytes, Buffer.from([10, 1, 2, 3]))
  t.equal(ipText(checkIp('fd00:0:0::01').bytes), 'fd00::1', 'IPv6 back in the form ip prints')
  t.equal(ipText(Buffer.alloc(5)), undefined)
  t.equal(checkFdbMac('00:00:00:00:00:00'), '00:00:00:00:00:00', 'the flood MAC is an FDB MAC')
  t.equal(checkFdbMac('02:AA:00:00:00:01'), '02:aa:00:00:00:01')
  t.throws(() => checkFdbMac('ff:ff:ff:ff:ff:ff'), /multicast/)
  t.throws(() => checkIp('10.0.0.1/24'), { message: 'IP address "10.0.0.1/24" is not an IPv4 or IPv6 address' })
  t.equal(checkLinkRef(5), 5)
  t.throws(() => checkLinkRef(-1), { message: 'link index -1 is not a positive 32-bit number' })
  t.throws(() => checkLinkRef('a b'), /is not usable/)
})

t.test('errno sentences: known ones by the operation, generic ones with text and code, TsnetErrors untouched', async (t) => {
  const known = explain(new NetlinkErrno(17), 'create bridge link b0', { EEXIST: () => new TsnetError('conflict', 'a link named b0 already exists') })
  t.match(known, { kind: 'conflict', message: 'a link named b0 already exists', context: { errno: 'EEXIST' } })
  t.equal(new NetlinkErrno(95).code, 'EOPNOTSUPP', 'errno 95 is called EOPNOTSUPP (Node says ENOTSUP)')
  t.match(explain(new NetlinkErrno(1), 'delete link x'), { kind: 'host', message: 'not permitted to delete link x: tsnet needs CAP_NET_ADMIN in this network namespace' })
  t.match(explain(new NetlinkErrno(22), 'change link x (mtu)'), { kind: 'host', message: 'cannot change link x (mtu): invalid argument (EINVAL)' })
  t.match(explain(new NetlinkErrno(4000), 'list links'), { kind: 'host', message: 'cannot list links: unknown error (errno 4000)' }, 'an errno Node does not know still reads as a sentence')
  const own = new TsnetError('host', 'netlink: the kernel did not answer')
  t.equal(explain(own, 'x'), own)
})
