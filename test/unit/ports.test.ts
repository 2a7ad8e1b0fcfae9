// core/ports: the port maps Docker sends with CreateEndpoint, Join and ProgramExternalConnectivity.
import t from 'tap'
import {
  MAX_PORT_TRIES, PortHolders, endpointOverlap, kernelOverlap, parseExposedPorts, parsePortMap, planPublish,
} from '../../src/core/ports.js'
import type { PortMapping } from '../../src/core/records.js'

t.test('parsePortMap: good inputs', async (t) => {
  t.same(parsePortMap(undefined), [])
  t.same(parsePortMap(null), [], 'Go nil arrives as null')
  t.same(parsePortMap([]), [])
  t.same(parsePortMap([{ Proto: 6, IP: '', Port: 80, HostIP: '', HostPort: 8080, HostPortEnd: 8080 }]),
    [{ proto: 'tcp', containerPort: 80, hostIp: '', hostPort: 8080, hostPortEnd: 8080 }], 'a recorded tcp mapping')
  t.same(parsePortMap([{ Proto: 17, Port: 53 }]), [{ proto: 'udp', containerPort: 53, hostIp: '', hostPort: 0, hostPortEnd: 0 }],
    'ephemeral host port; missing optional fields default')
  t.same(parsePortMap([{ Proto: 132, Port: 9, HostIP: '::1', HostPort: 10, HostPortEnd: 20 }]),
    [{ proto: 'sctp', containerPort: 9, hostIp: '::1', hostPort: 10, hostPortEnd: 20 }], 'sctp, IPv6 host IP, a host range')
  t.same(parsePortMap([{ Proto: 6, Port: 80, HostIP: '127.0.0.1', HostPort: 8080 }])[0]?.hostPortEnd, 8080, 'no HostPortEnd: the range is one port')
  t.same(parsePortMap([{ Proto: 6, Port: 80, HostIP: null, HostPort: 1 }])[0]?.hostIp, '', 'HostIP null is "unset"')
  t.same(parsePortMap([{ Proto: 6, Port: 65535, HostPort: 65535, HostPortEnd: 65535 }])[0]?.containerPort, 65535, 'upper bounds')
  t.equal(parsePortMap(Array.from({ length: 4096 }, () => ({ Proto: 6, Port: 1 }))).length, 4096, '4096 entries are accepted')
})

t.test('parsePortMap: bad inputs', async (t) => {
  const bad = (value: unknown, message: RegExp, why: string) => t.throws(() => parsePortMap(value), { name: 'TsnetError', kind: 'invalid', message }, why)
  bad({}, /the port map must be a list/, 'an object instead of a list')
  bad('80:80', /must be a list/, 'a string')
  bad(80, /must be a list/, 'a number')
  bad([1], /port mapping #1 is not an object/, 'a number entry')
  bad([null], /port mapping #1 is not an object/, 'a null entry')
  bad([[]], /port mapping #1 is not an object/, 'an array entry')
  bad([{ Proto: 6, Port: 80 }, 'x'], /port mapping #2 is not an object/, 'the message counts from 1')
  bad([{ Proto: 1, Port: 80 }], /port mapping #1: protocol number 1 is not supported \(tcp=6, udp=17, sctp=132\)/, 'ICMP')
  bad([{ Proto: 0, Port: 80 }], /protocol number 0 is not supported/, 'proto 0')
  bad([{ Proto: 256, Port: 80 }], /Proto must be a whole number from 0 to 255, got 256/, 'proto out of range')
  bad([{ Proto: 'tcp', Port: 80 }], /Proto must be a whole number.*got "tcp"/, 'proto as a name')
  bad([{ Port: 80 }], /Proto must be a whole number/, 'proto missing')
  bad([{ Proto: 6.5, Port: 80 }], /Proto must be a whole number/, 'fractional proto')
  bad([{ Proto: 6 }], /Port must be a whole number from 1 to 65535, got undefined/, 'port missing')
  bad([{ Proto: 6, Port: 0 }], /Port must be a whole number from 1 to 65535, got 0/, 'port 0')
  bad([{ Proto: 6, Port: 65536 }], /Port must be a whole number from 1 to 65535/, 'port too big')
  bad([{ Proto: 6, Port: 80.5 }], /Port must be a whole number/, 'fractional port')
  bad([{ Proto: 6, Port: '80' }], /Port must be a whole number/, 'port as a string')
  bad([{ Proto: 6, Port: 80, HostPort: -1 }], /HostPort must be a whole number from 0 to 65535, got -1/, 'negative host port')
  bad([{ Proto: 6, Port: 80, HostPort: 70000 }], /HostPort must be a whole number/, 'host port too big')
  bad([{ Proto: 6, Port: 80, HostPortEnd: 70000 }], /HostPortEnd must be a whole number/, 'host port end too big')
  bad([{ Proto: 6, Port: 80, HostPort: 9000, HostPortEnd: 8000 }], /host port range 9000-8000 is reversed/, 'reversed range')
  bad([{ Proto: 6, Port: 80, HostIP: '1.2.3' }], /host IP "1\.2\.3" is not an IP address/, 'bad host IP')
  bad([{ Proto: 6, Port: 80, HostIP: '0.0.0.0/0' }], /host IP "0\.0\.0\.0\/0" is not an IP address/, 'a CIDR host IP')
  bad([{ Proto: 6, Port: 80, HostIP: 'fe80::1%eth0' }], /host IP .* is not an IP address/, 'a zoned host IP')
  bad([{ Proto: 6, Port: 80, HostIP: 5 }], /host IP 5 is not an IP address/, 'a numeric host IP')
  bad(Array.from({ length: 4097 }, () => ({ Proto: 6, Port: 1 })), /the port map has 4097 entries; at most 4096 are accepted/, 'too many entries')
})

t.test('parseExposedPorts', async (t) => {
  t.same(parseExposedPorts(null), [])
  t.same(parseExposedPorts(undefined), [])
  t.same(parseExposedPorts([{ Proto: 6, Port: 80 }, { Proto: 17, Port: 53 }, { Proto: 132, Port: 5000 }]),
    [{ proto: 'tcp', port: 80 }, { proto: 'udp', port: 53 }, { proto: 'sctp', port: 5000 }])
  const bad = (value: unknown, message: RegExp, why: string) => t.throws(() => parseExposedPorts(value), { name: 'TsnetError', kind: 'invalid', message }, why)
  bad('x', /the exposed port list must be a list/, 'a string')
  bad({ Proto: 6, Port: 80 }, /must be a list/, 'a bare object')
  bad(['x'], /exposed port #1 is not an object/, 'a string entry')
  bad([{ Proto: 6, Port: 80 }, null], /exposed port #2 is not an object/, 'a null entry')
  bad([{ Proto: 6 }], /exposed port #1: Port must be a whole number from 1 to 65535, got undefined/, 'port missing')
  bad([{ Proto: 47, Port: 80 }], /exposed port #1: protocol number 47 is not supported/, 'GRE')
  bad([{ Proto: -1, Port: 80 }], /Proto must be a whole number from 0 to 255/, 'negative proto')
})

const map = (over: Partial<PortMapping> = {}): PortMapping => ({ proto: 'tcp', containerPort: 80, hostIp: '', hostPort: 8080, hostPortEnd: 8080, ...over })
const DUAL = { address: '172.18.0.2/16', addressV6: 'fd00:1::2/64' }
const V4 = { address: '172.18.0.2/16' }
const V6 = { addressV6: 'fd00:1::2/64' }

t.test('planPublish: targets per family', async (t) => {
  t.same(planPublish(DUAL, []), [], 'nothing to publish')
  t.same(planPublish(DUAL, [map()]), [{
    mapping: map(),
    targets: [{ family: 4, containerIp: '172.18.0.2', bind: '0.0.0.0' }, { family: 6, containerIp: 'fd00:1::2', bind: '::' }],
    hostPorts: { from: 8080, to: 8080 },
  }], 'empty HostIP: every host address of each family the container has')
  t.same(planPublish(V4, [map()])[0]?.targets, [{ family: 4, containerIp: '172.18.0.2', bind: '0.0.0.0' }], 'IPv4-only container: IPv4 only')
  t.same(planPublish(V6, [map()])[0]?.targets, [{ family: 6, containerIp: 'fd00:1::2', bind: '::' }], 'IPv6-only container: IPv6 only')
  t.same(planPublish({ address: '', addressV6: 'fd00:1::2/64' }, [map()])[0]?.targets, [{ family: 6, containerIp: 'fd00:1::2', bind: '::' }], 'an empty address counts as none')
  t.same(planPublish(DUAL, [map({ hostIp: '127.0.0.1' })])[0]?.targets, [{ family: 4, containerIp: '172.18.0.2', bind: '127.0.0.1' }], 'an IPv4 HostIP selects IPv4')
  t.same(planPublish(DUAL, [map({ hostIp: '0.0.0.0' })])[0]?.targets, [{ family: 4, containerIp: '172.18.0.2', bind: '0.0.0.0' }], '0.0.0.0 is IPv4 only')
  t.same(planPublish(DUAL, [map({ hostIp: '::1' })])[0]?.targets, [{ family: 6, containerIp: 'fd00:1::2', bind: '::1' }], 'an IPv6 HostIP selects IPv6')
  t.same(planPublish(DUAL, [map({ hostIp: '::' })])[0]?.targets, [{ family: 6, containerIp: 'fd00:1::2', bind: '::' }], ':: is IPv6 only')
  t.same(planPublish(DUAL, [map({ hostIp: '2001:DB8:0::5' })])[0]?.targets, [{ family: 6, containerIp: 'fd00:1::2', bind: '2001:db8::5' }], 'the bind address in canonical form')
  t.same(planPublish({ address: '172.18.0.2/16', addressV6: 'FD00:1:0::2/64' }, [map()])[0]?.targets[1], { family: 6, containerIp: 'fd00:1::2', bind: '::' }, 'the container address in canonical form')
  const two = planPublish(DUAL, [map(), map({ proto: 'udp', containerPort: 53, hostIp: '127.0.0.1', hostPort: 5353, hostPortEnd: 5353 })])
  t.equal(two.length, 2, 'one request per mapping, in order')
  t.same(two[1]?.mapping, map({ proto: 'udp', containerPort: 53, hostIp: '127.0.0.1', hostPort: 5353, hostPortEnd: 5353 }), 'the mapping is kept')
})

t.test('planPublish: host ports stay a range', async (t) => {
  t.equal(planPublish(V4, [map({ hostPort: 0, hostPortEnd: 0 })])[0]?.hostPorts, undefined, 'HostPort 0: one from the ephemeral range')
  t.same(planPublish(V4, [map({ hostPort: 8080, hostPortEnd: 8080 })])[0]?.hostPorts, { from: 8080, to: 8080 }, 'one port')
  t.same(planPublish(V4, [map({ hostPort: 8080, hostPortEnd: 8085 })])[0]?.hostPorts, { from: 8080, to: 8085 }, 'a range')
  t.same(planPublish(V4, [map({ hostPort: 65534, hostPortEnd: 65535 })])[0]?.hostPorts, { from: 65534, to: 65535 }, 'up to the top port')
  t.same(planPublish(V4, parsePortMap([{ Proto: 6, Port: 80, HostPort: 9000, HostPortEnd: 9002 }]))[0]?.hostPorts, { from: 9000, to: 9002 }, 'from a parsed port map')
  t.equal(planPublish(V4, parsePortMap([{ Proto: 6, Port: 80 }]))[0]?.hostPorts, undefined, 'a parsed -p 80 (no host port)')

  // The hostile shape of finding 4: the most mappings a port map may carry, each over every port.
  const wide = Array.from({ length: 4096 }, () => ({ Proto: 6, Port: 80, HostIP: '127.0.0.1', HostPort: 1, HostPortEnd: 65535 }))
  const heapBefore = process.memoryUsage().heapUsed
  const started = performance.now()
  const planned = planPublish(DUAL, parsePortMap(wide))
  const ms = performance.now() - started
  const grewMb = (process.memoryUsage().heapUsed - heapBefore) / 2 ** 20
  t.equal(planned.length, 4096)
  t.same(planned[4095]?.hostPorts, { from: 1, to: 65535 }, 'each the whole range, as two numbers')
  t.ok(ms < 500, `parsed and planned in ${ms.toFixed(0)} ms (bound 500 ms; spelling the ranges out took minutes)`)
  t.ok(grewMb < 64, `heap grew ${grewMb.toFixed(1)} MB (bound 64 MB; spelling the ranges out needs gigabytes)`)
})

t.test('PortHolders: published ports by (protocol, port)', async (t) => {
  const strict = new PortHolders(endpointOverlap)
  strict.add('tcp', 8080, { family: 4, bind: '0.0.0.0' }, 'endpoint A')
  strict.add('udp', 53, { family: 6, bind: '2001:DB8:0::5' }, 'endpoint B')
  strict.add('tcp', 9000, { family: 4, bind: '127.0.0.1' }, 'endpoint C')
  t.equal(strict.holder('tcp', 8080, [{ family: 4, bind: '0.0.0.0' }]), 'endpoint A', 'the same port and address')
  t.equal(strict.holder('tcp', 8080, [{ family: 4, bind: '127.0.0.1' }]), 'endpoint A', 'a wildcard covers every address')
  t.equal(strict.holder('tcp', 8080, [{ family: 6, bind: '::1' }]), 'endpoint A', 'between endpoints, a wildcard covers the other family too')
  t.equal(strict.holder('udp', 8080, [{ family: 4, bind: '0.0.0.0' }]), undefined, 'another protocol is free')
  t.equal(strict.holder('tcp', 8081, [{ family: 4, bind: '0.0.0.0' }]), undefined, 'another port is free')
  t.equal(strict.holder('udp', 53, [{ family: 6, bind: '2001:db8::5' }]), 'endpoint B', 'addresses are compared in canonical form')
  t.equal(strict.holder('tcp', 9000, [{ family: 4, bind: '127.0.0.2' }]), undefined, 'two specific addresses do not collide')
  t.equal(strict.holder('tcp', 9000, [{ family: 4, bind: '127.0.0.2' }, { family: 6, bind: '::' }]), 'endpoint C', 'any one of the bindings is enough')

  const kernel = new PortHolders(kernelOverlap)
  kernel.add('tcp', 8080, { family: 4, bind: '0.0.0.0' }, 'mapping #1')
  t.equal(kernel.holder('tcp', 8080, [{ family: 4, bind: '10.0.0.1' }]), 'mapping #1', 'the kernel: a wildcard covers its own family')
  t.equal(kernel.holder('tcp', 8080, [{ family: 6, bind: '::' }]), undefined, 'the kernel: 0.0.0.0 and :: (IPv6-only) coexist')
  t.ok(MAX_PORT_TRIES >= 4096 * 2, 'the per-request budget leaves room for the most single mappings a request carries, twice over')
})

t.test('planPublish: refusals', async (t) => {
  const bad = (ep: { address?: string; addressV6?: string }, m: PortMapping[], message: RegExp, why: string) =>
    t.throws(() => planPublish(ep, m), { name: 'TsnetError', kind: 'invalid', message }, why)
  bad(V4, [map({ hostIp: '::1' })], /port mapping #1 \(tcp\/80\): host IP ::1 is IPv6, but the container has no IPv6 address on this network/, 'IPv6 HostIP, IPv4-only container')
  bad(V6, [map({ hostIp: '127.0.0.1' })], /host IP 127\.0\.0\.1 is IPv4, but the container has no IPv4 address on this network/, 'IPv4 HostIP, IPv6-only container')
  bad({}, [map()], /port mapping #1 \(tcp\/80\): the container has no address on this network to publish/, 'no address at all')
  bad({ address: 'junk' }, [map()], /the container has no address on this network to publish/, 'an unreadable address is no address')
  bad(V4, [map(), map({ proto: 'udp', containerPort: 53, hostIp: 'nope' })], /port mapping #2 \(udp\/53\): host IP "nope" is not an IP address/, 'a bad HostIP (counted from 1)')
})
