/**
 * Traffic between namespaces a test created, for the security tests: TCP servers that answer with
 * a tag, one-shot TCP probes, "containers" wired to an endpoint's veth, attackers whose frames go
 * to their gateway with destination 127.0.0.0/8, and an IPv6 Router Advertisement sender.
 *
 * The attacker's frame is the one a container with CAP_NET_RAW would write by hand (its gateway's
 * MAC, destination 127.0.0.1); here the namespace's own routing builds it (loopback without its address, a
 * route for 127.0.0.0/8 via the gateway), so the test needs no packet tool and gets a real TCP exchange
 * to judge by. route_localnet on the attacker's eth0 lets it read answers sent from 127.0.0.1, as
 * a sniffing raw socket would.
 */
import { spawn } from 'node:child_process'
import type { Test } from 'tap'
import type { Netns } from './netns.js'

/** server TAG HOST:PORT...: every connection gets "TAG\n" and is closed; prints "ready" once all listen. */
const SERVER_JS = `
const net = require('net');
const [tag, ...binds] = process.argv.slice(1);
let up = 0;
for (const b of binds) {
  const i = b.lastIndexOf(':');
  net.createServer((s) => { s.on('error', () => {}); s.end(tag + '\\n'); })
    .on('error', (e) => { console.error(String(e.code || e.message)); process.exit(1); })
    .listen({ host: b.slice(0, i), port: Number(b.slice(i + 1)) }, () => { if (++up === binds.length) console.log('ready'); });
}
`

/** probe HOST PORT MS: connects and prints what comes back; exit 0 with an answer, 2 on an error, 3 on timeout. */
const PROBE_JS = `
const [host, port, ms] = process.argv.slice(1);
let out = '';
const done = (code, why) => { if (why) process.stderr.write(why); process.stdout.write(out); process.exit(code); };
setTimeout(() => done(3, 'TIMEOUT'), Number(ms));
const c = require('net').connect({ host, port: Number(port) });
c.on('data', (d) => { out += d; });
c.on('end', () => done(out ? 0 : 4, out ? '' : 'EMPTY'));
c.on('error', (e) => done(2, String(e.code || e.message)));
`

/**
 * ra IFINDEX PREFIX: one Router Advertisement to ff02::1 out of IFINDEX (hop limit 255, router
 * lifetime 1800 s: "use me as default router"), with a Prefix Information option for PREFIX/64
 * (on-link, autonomous: "make yourself an address in it"). A raw ICMPv6 socket: the kernel adds
 * the IPv6 header, the link-local source and the checksum. Perl because Debian always has it
 * (perl-base is Essential) and Node has no raw sockets.
 */
const RA_PL = `
use strict; use Socket qw(AF_INET6 SOCK_RAW inet_pton pack_sockaddr_in6);
my ($ifindex, $prefix) = @ARGV;
socket(my $s, AF_INET6, SOCK_RAW, 58) or die "socket: $!";
setsockopt($s, 41, 18, pack('i', 255)) or die "IPV6_MULTICAST_HOPS: $!";
setsockopt($s, 41, 17, pack('i', $ifindex)) or die "IPV6_MULTICAST_IF: $!";
my $ra = pack('CCnCCnNN', 134, 0, 0, 64, 0, 1800, 0, 0);
my $pio = pack('CCCCNNN', 3, 4, 64, 0xc0, 86400, 14400, 0) . inet_pton(AF_INET6, $prefix);
send($s, $ra . $pio, 0, pack_sockaddr_in6(0, inet_pton(AF_INET6, 'ff02::1'), $ifindex)) or die "send: $!";
`

const children = new Set<ReturnType<typeof spawn>>()
process.on('exit', () => {
  for (const c of children) c.kill('SIGKILL')
})

/** Starts a TCP server in `ns` on each HOST:PORT; stopped in t.teardown (and at exit). */
export async function serve(t: Test, ns: Netns, tag: string, binds: string[]): Promise<void> {
  const child = spawn('nsenter', [`--net=/run/netns/${ns.name}`, process.execPath, '-e', SERVER_JS, tag, ...binds], { stdio: ['ignore', 'pipe', 'pipe'] })
  children.add(child)
  t.teardown(() => {
    child.kill('SIGKILL')
    children.delete(child)
  })
  await new Promise<void>((resolve, reject) => {
    let out = ''
    let err = ''
    child.stdout.on('data', (b: Buffer) => {
      out += b.toString()
      if (out.includes('ready')) resolve()
    })
    child.stderr.on('data', (b: Buffer) => { err += b.toString() })
    child.on('exit', (code) => reject(new Error(`server ${tag} in ${ns.name} exited (${code}): ${err.trim()}`)))
  })
}

export interface Probe {
  ok: boolean
  out: string
  err: string
}

/** One TCP connection from `ns` to host:port; ok when the peer answered. */
export async function probe(ns: Netns, host: string, port: number, timeoutMs = 1500): Promise<Probe> {
  const r = await ns.run(process.execPath, ['-e', PROBE_JS, host, String(port), String(timeoutMs)])
  return { ok: r.code === 0 && r.stdout !== '', out: r.stdout.trim(), err: r.code === 0 ? '' : r.stderr.trim() || `exit ${r.code}` }
}

/** What a probe shows, for assertion messages. */
export const shown = (p: Probe) => (p.ok ? `answered "${p.out}"` : `no answer (${p.err})`)

/**
 * Moves the container end `ifname` of an endpoint from `host` into `ns` as eth0, with `address`
 * (CIDR) and a default route via `gateway`, as Docker does at Join.
 */
export async function wireContainer(host: Netns, ns: Netns, ifname: string, address: string, gateway: string): Promise<void> {
  await host.ok('ip', ['link', 'set', 'dev', ifname, 'netns', ns.name])
  await ns.ok('ip', ['link', 'set', 'dev', ifname, 'name', 'eth0'])
  await ns.ok('sysctl', ['-q', '-w', 'net.ipv6.conf.eth0.accept_dad=0'])
  await ns.ok('ip', ['addr', 'add', address, 'dev', 'eth0'])
  await ns.ok('ip', ['link', 'set', 'dev', 'eth0', 'up'])
  await ns.ok('ip', ['route', 'add', 'default', 'via', gateway])
}

/** Makes `ns` send what is addressed to 127.0.0.0/8 to `gateway` (see the top of this file). */
export async function routeLoopbackVia(ns: Netns, gateway: string): Promise<void> {
  await ns.ok('ip', ['addr', 'flush', 'dev', 'lo']) // takes the local routes of 127.0.0.0/8 along
  await ns.ok('ip', ['link', 'set', 'dev', 'lo', 'down'])
  await ns.ok('ip', ['route', 'add', '127.0.0.0/8', 'via', gateway])
  await ns.ok('sysctl', ['-q', '-w', 'net.ipv4.conf.eth0.route_localnet=1'])
}

/** A veth pair between two namespaces: `a` gets `aName`, `b` gets `bName`; both up. */
export async function link(a: Netns, aName: string, b: Netns, bName: string): Promise<void> {
  await a.ok('ip', ['link', 'add', aName, 'type', 'veth', 'peer', 'name', bName, 'netns', b.name])
  await a.ok('ip', ['link', 'set', 'dev', aName, 'up'])
  await b.ok('ip', ['link', 'set', 'dev', bName, 'up'])
}

/** Sends one Router Advertisement for `prefix` out of `ifname` in `ns` (see RA_PL). */
export async function sendRouterAdvertisement(ns: Netns, ifname: string, prefix: string): Promise<void> {
  const [info] = JSON.parse(await ns.ok('ip', ['-j', 'link', 'show', 'dev', ifname])) as Array<{ ifindex: number }>
  if (!info) throw new Error(`no ${ifname} in ${ns.name}`)
  await ns.ok('perl', ['-e', RA_PL, String(info.ifindex), prefix])
}

/** Packets counted by the rule carrying `comment` in `table` (summed over chains). */
export async function dropCount(ns: Netns, tool: 'iptables' | 'ip6tables', table: string, comment: string): Promise<number> {
  const out = await ns.ok(`${tool}-save`, ['-c', '-t', table])
  let n = 0
  for (const line of out.split('\n')) {
    const m = /^\[(\d+):\d+\] .*--comment "?([^"]*?)"? -j DROP/.exec(line)
    if (m && m[2] === comment) n += Number(m[1])
  }
  return n
}
