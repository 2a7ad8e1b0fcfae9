// core/addr: parsing, formatting and prefix arithmetic.
import t from 'tap'
import {
  formatCidr, formatIp, formatPrefix, lastAddress, maskOf, nthSubnet, parseCidr, parseIp, prefixContains,
  prefixSize, prefixesOverlap, prefixWithin, subnetCount,
} from '../../src/core/addr.js'
import { ip, pfx } from './fixtures/util.js'

t.test('parseIp accepts IPv4 dotted quads and gives their value', async (t) => {
  t.same(parseIp('10.0.0.2'), { family: 4, value: 0x0a000002n })
  t.same(parseIp('0.0.0.0'), { family: 4, value: 0n })
  t.same(parseIp('255.255.255.255'), { family: 4, value: 0xffffffffn })
  t.same(parseIp('172.17.0.1'), { family: 4, value: (172n << 24n) | (17n << 16n) | 1n })
})

t.test('parseIp rejects malformed IPv4', async (t) => {
  for (const bad of [
    '01.2.3.4', '1.2.3.04', '1.02.3.4', '00.0.0.0', // leading zeros (octal ambiguity)
    '256.1.1.1', '1.2.3.256', '1.2.3.999', // octet out of range
    '1.2.3', '1.2.3.4.5', '1..3.4', '1.2.3.', // wrong shape
    ' 1.2.3.4', '1.2.3.4 ', '1.2.3.4/32', '-1.2.3.4', '1.2.3.0x4', '', 'localhost',
  ]) {
    t.equal(parseIp(bad), undefined, `rejects ${JSON.stringify(bad)}`)
  }
})

t.test('parseIp accepts IPv6 forms', async (t) => {
  t.same(parseIp('::'), { family: 6, value: 0n })
  t.same(parseIp('::1'), { family: 6, value: 1n })
  t.same(parseIp('2001:db8::1'), { family: 6, value: (0x20010db8n << 96n) | 1n })
  t.same(parseIp('2001:DB8::1'), parseIp('2001:db8::1'), 'upper case hex')
  t.same(parseIp('2001:0db8:0000:0000:0000:0000:0000:0001'), parseIp('2001:db8::1'), 'full form with leading zeros in groups')
  t.same(parseIp('1:2:3:4:5:6:7:8')?.value, 0x00010002000300040005000600070008n)
  t.same(parseIp('fd00::'), { family: 6, value: 0xfdn << 120n })
  t.same(parseIp('::ffff:1.2.3.4'), { family: 6, value: (0xffffn << 32n) | 0x01020304n }, 'embedded IPv4')
})

t.test('parseIp rejects IPv6 zones and malformed IPv6', async (t) => {
  for (const bad of [
    'fe80::1%eth0', 'fe80::1%1', // zone IDs
    '1::2::3', '1:2:3:4:5:6:7:8:9', ':::', '12345::', 'g::1', '2001:db8::1/64', '[::1]',
    'fe80::1%eth0/64',
  ]) {
    t.equal(parseIp(bad), undefined, `rejects ${JSON.stringify(bad)}`)
  }
  t.equal(parseIp('1'.repeat(46)), undefined, 'overlong text')
  t.equal(parseIp(undefined as unknown as string), undefined, 'not a string')
  t.equal(parseIp(42 as unknown as string), undefined, 'a number')
})

t.test('parseCidr returns the address as written and the canonical prefix', async (t) => {
  const c = parseCidr('10.1.2.3/8')
  t.ok(c)
  t.same(c?.ip, { family: 4, value: 0x0a010203n })
  t.same(c?.prefix, { family: 4, network: 0x0a000000n, bits: 8 })
  t.same(parseCidr('172.18.0.0/16')?.prefix, pfx('172.18.0.0/16'))
  t.same(parseCidr('10.0.0.7/32')?.prefix, { family: 4, network: 0x0a000007n, bits: 32 })
  t.same(parseCidr('0.0.0.0/0')?.prefix, { family: 4, network: 0n, bits: 0 })
  t.same(parseCidr('10.9.9.9/0')?.prefix, { family: 4, network: 0n, bits: 0 }, '/0 clears every bit')
  const v6 = parseCidr('2001:db8::1/64')
  t.same(v6?.ip, parseIp('2001:db8::1'))
  t.same(v6?.prefix, { family: 6, network: 0x20010db8n << 96n, bits: 64 })
  t.same(parseCidr('2001:db8::/128')?.prefix.bits, 128)
  t.same(parseCidr('::/0')?.prefix, { family: 6, network: 0n, bits: 0 })
})

t.test('parseCidr rejects bad masks, zones and malformed text', async (t) => {
  for (const bad of [
    '10.0.0.0/33', '10.0.0.0/64', '10.0.0.0/-1', '10.0.0.0/', '10.0.0.0', '10.0.0.0/8/8', '10.0.0.0/ 8',
    '10.0.0.0/008', '10.0.0.0/8a', '01.0.0.0/8', '256.0.0.0/8',
    '2001:db8::/129', '2001:db8::/200', 'fe80::1%eth0/64', '2001:db8::1::/64', '/24', '', 'x/24',
  ]) {
    t.equal(parseCidr(bad), undefined, `rejects ${JSON.stringify(bad)}`)
  }
  t.equal(parseCidr(null as unknown as string), undefined, 'not a string')
})

t.test('formatIp round-trips and prints IPv6 in compressed form', async (t) => {
  for (const text of ['0.0.0.0', '10.0.0.2', '172.17.255.254', '255.255.255.255', '::', '::1', '2001:db8::1', 'fd12:3456:789a::', '1:2:3:4:5:6:7:8']) {
    t.equal(formatIp(ip(text)), text, `round trip of ${text}`)
  }
  t.equal(formatIp(ip('2001:0DB8:0000:0000:0000:0000:0000:0001')), '2001:db8::1', 'leading zeros and upper case dropped')
  t.equal(formatIp(ip('fd00:0:0:0:0:0:0:0')), 'fd00::')
  t.equal(formatIp(ip('1:0:0:0:0:0:0:0')), '1::')
  t.equal(formatIp(ip('1:0:0:2:0:0:0:3')), '1:0:0:2::3', 'the longest run of zeros is the one compressed')
  t.equal(formatIp(ip('2001:db8:0:0:1:0:0:1')), '2001:db8::1:0:0:1', 'the first of two equal runs is compressed')
  t.equal(formatIp(ip('2001:db8:0:1:1:1:1:1')), '2001:db8:0:1:1:1:1:1', 'a single zero group is not compressed')
  t.equal(formatIp(ip('0:0:1:0:0:0:1:0')), '0:0:1::1:0', 'a longer later run wins over an earlier one')
  t.equal(formatIp(ip('1:0:0:0:1:0:0:0')), '1::1:0:0:0', 'equal runs of three: the first')
  t.equal(formatIp(ip('1:2:3:4:5:6:0:0')), '1:2:3:4:5:6::', 'a trailing run')
  t.equal(formatPrefix(pfx('2001:db8:0:0::/64')), '2001:db8::/64')
  t.equal(formatPrefix(pfx('10.1.2.3/8')), '10.0.0.0/8', 'prefix printed canonical')
  t.equal(formatCidr(ip('172.18.0.2'), 16), '172.18.0.2/16')
  t.equal(formatCidr(ip('fd00::2'), 64), 'fd00::2/64')
})

t.test('masks, sizes and last addresses', async (t) => {
  t.equal(maskOf(4, 24), 0xffffff00n)
  t.equal(maskOf(4, 0), 0n)
  t.equal(maskOf(4, 32), 0xffffffffn)
  t.equal(maskOf(6, 64), ((1n << 64n) - 1n) << 64n)
  t.equal(prefixSize(pfx('10.0.0.0/24')), 256n)
  t.equal(prefixSize(pfx('10.0.0.0/32')), 1n)
  t.equal(prefixSize(pfx('::/64')), 1n << 64n)
  t.equal(formatIp({ family: 4, value: lastAddress(pfx('10.0.0.0/24')) }), '10.0.0.255')
  t.equal(formatIp({ family: 4, value: lastAddress(pfx('0.0.0.0/0')) }), '255.255.255.255')
  t.equal(formatIp({ family: 6, value: lastAddress(pfx('fd00::/64')) }), 'fd00::ffff:ffff:ffff:ffff')
})

t.test('prefixContains checks range and family', async (t) => {
  const p = pfx('10.0.0.0/24')
  t.ok(prefixContains(p, ip('10.0.0.0')), 'network address')
  t.ok(prefixContains(p, ip('10.0.0.255')), 'last address')
  t.notOk(prefixContains(p, ip('10.0.1.0')), 'one past the end')
  t.notOk(prefixContains(p, ip('9.255.255.255')), 'one before the start')
  t.notOk(prefixContains(pfx('::/0'), ip('10.0.0.1')), 'an IPv4 address is not in ::/0')
  t.notOk(prefixContains(pfx('0.0.0.0/0'), ip('::1')), 'an IPv6 address is not in 0.0.0.0/0')
  t.ok(prefixContains(pfx('0.0.0.0/0'), ip('203.0.113.9')))
})

t.test('prefixesOverlap edge cases', async (t) => {
  t.ok(prefixesOverlap(pfx('10.0.0.0/24'), pfx('10.0.0.0/24')), 'identical')
  t.ok(prefixesOverlap(pfx('10.0.0.0/16'), pfx('10.0.5.0/24')), 'outer contains inner')
  t.ok(prefixesOverlap(pfx('10.0.5.0/24'), pfx('10.0.0.0/16')), 'symmetric')
  t.notOk(prefixesOverlap(pfx('10.0.0.0/24'), pfx('10.0.1.0/24')), 'adjacent blocks do not overlap')
  t.notOk(prefixesOverlap(pfx('10.0.1.0/24'), pfx('10.0.0.0/24')), 'adjacent, other order')
  t.ok(prefixesOverlap(pfx('10.0.0.255/32'), pfx('10.0.0.0/24')), 'the last address of a block')
  t.notOk(prefixesOverlap(pfx('10.0.1.0/32'), pfx('10.0.0.0/24')), 'the address just past a block')
  t.ok(prefixesOverlap(pfx('0.0.0.0/0'), pfx('192.168.1.0/24')), '/0 overlaps everything of its family')
  t.notOk(prefixesOverlap(pfx('::/0'), pfx('10.0.0.0/8')), 'families never overlap')
  t.notOk(prefixesOverlap(pfx('::/96'), pfx('0.0.0.0/0')), 'same numbers, different family')
  t.ok(prefixesOverlap(pfx('fd00::/48'), pfx('fd00:0:0:ffff::/64')))
  t.notOk(prefixesOverlap(pfx('fd00::/48'), pfx('fd00:0:1::/64')))
})

t.test('prefixWithin (containment)', async (t) => {
  t.ok(prefixWithin(pfx('10.0.5.0/24'), pfx('10.0.0.0/16')))
  t.ok(prefixWithin(pfx('10.0.0.0/16'), pfx('10.0.0.0/16')), 'a prefix lies within itself')
  t.notOk(prefixWithin(pfx('10.0.0.0/16'), pfx('10.0.5.0/24')), 'the bigger one is not within the smaller')
  t.notOk(prefixWithin(pfx('10.0.0.0/15'), pfx('10.0.0.0/16')), 'same start, larger')
  t.notOk(prefixWithin(pfx('10.1.0.0/24'), pfx('10.0.0.0/16')), 'outside')
  t.ok(prefixWithin(pfx('10.0.255.255/32'), pfx('10.0.0.0/16')), 'last host')
  t.notOk(prefixWithin(pfx('::/128'), pfx('0.0.0.0/0')), 'families differ')
  t.ok(prefixWithin(pfx('fd00:0:0:7::/64'), pfx('fd00::/48')))
})

t.test('nthSubnet and subnetCount', async (t) => {
  const base = pfx('192.168.0.0/16')
  t.equal(subnetCount(base, 20), 16n)
  t.equal(subnetCount(base, 16), 1n)
  t.equal(subnetCount(base, 15), 0n, 'a subnet larger than the base does not fit')
  t.equal(subnetCount(base, 32), 65536n)
  t.equal(formatPrefix(nthSubnet(base, 20, 0n)), '192.168.0.0/20')
  t.equal(formatPrefix(nthSubnet(base, 20, 1n)), '192.168.16.0/20')
  t.equal(formatPrefix(nthSubnet(base, 20, 15n)), '192.168.240.0/20')
  t.equal(formatPrefix(nthSubnet(pfx('172.20.0.0/14'), 16, 3n)), '172.23.0.0/16')
  const ula = pfx('fd12:3456:789a::/48')
  t.equal(subnetCount(ula, 64), 65536n)
  t.equal(formatPrefix(nthSubnet(ula, 64, 0n)), 'fd12:3456:789a::/64')
  t.equal(formatPrefix(nthSubnet(ula, 64, 1n)), 'fd12:3456:789a:1::/64')
  t.equal(formatPrefix(nthSubnet(ula, 64, 65535n)), 'fd12:3456:789a:ffff::/64')
  for (let i = 0n; i < 16n; i++) t.ok(prefixWithin(nthSubnet(base, 20, i), base), `subnet ${i} lies in the base`)
})
