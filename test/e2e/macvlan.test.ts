// Macvlan mode end to end: a private engine ("mv"), the built tsnet, and a LAN made of network
// namespaces (lib/lan.ts): two segments standing in for VLAN 10 and VLAN 20, a router between
// them, a machine on segment 10. Two macvlan networks as in issue 16, one per segment.
// Run (as root, under the e2e lock): flock /tmp/tsnet-e2e.lock npx tap run --timeout=900 test/e2e/macvlan.test.ts
import t, { type Test } from 'tap';
import { existsSync } from 'node:fs';
import {
  BB, TSNET_CLI, containerIPv4, runOk, containerGlobalIPv6, destroyEngine, diffSnapshots, ensureBusyboxImage, pingOk, pluginPost, runSleeper, snapshotHost,
  startEngine, startTsnet, waitFor, type Engine, type HostSnapshot, type TsnetHandle,
} from './lib/index.js';
import { containerNetns, httpFrom } from './lib/outside.js';
import { LAN_HOST_NS, LAN_NS, SEGMENTS, createLan, nsPathOf, parentState, type Lan } from './lib/lan.js';
import { countWhile, listenFrames, sendFrames } from './lib/frames.js';
import { withDiagnostics } from './lib/scenario.js';

t.setTimeout(600_000);

const TS = ['-d', 'tsnet', '--ipam-driver', 'tsnet', '-o', 'tsnet.mode=macvlan'];
const [SEG10, SEG20] = SEGMENTS as [(typeof SEGMENTS)[0], (typeof SEGMENTS)[0]];
const A1 = '192.168.10.131';
const B1 = '192.168.20.131';
/** Reserved with --aux-address: no container may get it. */
const RESERVED = '192.168.10.130';

let E: Engine | undefined;
let lan: Lan | undefined;
let ts: TsnetHandle | undefined;
let base: HostSnapshot | undefined;
const parentsBefore = new Map<string, string>();
let vlanControl = '';

function scenario(name: string, fn: (t: Test) => Promise<void>) {
  return t.test(name, (tt) => withDiagnostics(tt, fn, (tt) => {
    if (!E) return;
    tt.comment(`--- tail of tsnet.log:\n${ts?.logTail(30) ?? '(tsnet not started)'}`);
    tt.comment(`--- tail of ${E.logPath}:\n${E.dockerdLogTail(15)}`);
  }));
}

/** ping from inside a container; a positive check may wait for ARP / neighbour discovery. */
const reaches = (e: Engine, from: string, to: string, v6 = false) =>
  waitFor(() => pingOk(e, from, to, { v6, waitSec: 1 }), { timeoutMs: 6_000, what: `${from} ping ${to}` }).then(() => true, () => false);
/** ping from a namespace (busybox's: the host has no other). */
const nsPing = async (ns: string, to: string, v6 = false) => (await lan!.inNs(ns, ['/bin/busybox', 'ping', ...(v6 ? ['-6'] : []), '-c1', '-W1', to])).code === 0;
const nsReaches = (ns: string, to: string, v6 = false) =>
  waitFor(() => nsPing(ns, to, v6), { timeoutMs: 6_000, what: `${ns} ping ${to}` }).then(() => true, () => false);

/** docker ARGS must fail with a message matching `re` and leave store and kernel as they were. */
async function refused(t: Test, e: Engine, args: string[], re: RegExp, cleanup: string[][] = []) {
  const before = await snapshotHost(e);
  const r = await e.docker(args);
  t.not(r.code, 0, `docker ${args.slice(0, 3).join(' ')} … fails`);
  t.match(r.stderr, re, `with the sentence: ${r.stderr.trim()}`);
  for (const c of cleanup) await e.docker(c);
  t.same(diffSnapshots(before, await snapshotHost(e)), [], 'links, rules, sets and store exactly as before');
}

await t.test('setup: engine, LAN, tsnet', async (t) => {
  t.ok(existsSync(TSNET_CLI), `${TSNET_CLI} is built`);
  E = await startEngine('mv');
  await ensureBusyboxImage(E);
  lan = await createLan(E);
  for (const s of SEGMENTS) parentsBefore.set(s.parent, await parentState(E, s.parent));
  // Whether this kernel can make 802.1Q links, asked as an administrator would (the control for
  // what tsnet says). Asked here: a bare await between top-level tests would let the run end.
  vlanControl = await lan.engine(['link', 'add', 'link', SEG10.parent, 'name', 'tsmvq0', 'type', 'vlan', 'id', '30']).then(
    async () => { await lan!.engine(['link', 'del', 'tsmvq0']); return ''; },
    (err: unknown) => String(err instanceof Error ? err.message : err).trim());
  base = await snapshotHost(E);
  ts = await startTsnet(E);
  t.ok(ts.running, `tsnet running (pid ${ts.pid})`);
});

if (!E || !lan || !ts || !base) {
  t.fail('setup failed: the other scenarios are not run');
  await lan?.destroy();
  if (E) await destroyEngine(E);
} else {
  const e: Engine = E;
  const l: Lan = lan;
  const s0: HostSnapshot = base;
  const started = Date.now();
  t.teardown(async () => {
    await destroyEngine(e);
    await l.destroy();
  });

  await scenario('two macvlan networks, one per segment: nothing is configured on the host', async (t) => {
    await e.dockerOk(['network', 'create', ...TS, '-o', `parent=${SEG10.parent}`, '--subnet', SEG10.subnet, '--gateway', SEG10.router,
      '--ip-range', '192.168.10.128/25', '--aux-address', `router2=${RESERVED}`, '--ipv6', '--subnet', SEG10.subnet6, '--gateway', SEG10.router6, 'macvlan10']);
    await e.dockerOk(['network', 'create', ...TS, '-o', `parent=${SEG20.parent}`, '--subnet', SEG20.subnet, '--gateway', SEG20.router, 'macvlan20']);
    const now = await snapshotHost(e);
    t.same(diffSnapshots(s0, now, ['links', 'iptables', 'ip6tables', 'ipsets']), [], 'no link, rule or set on the host for either network');
    const script = 'mkdir -p /w && echo macvlan-a1 > /w/index.html && httpd -p 8080 -h /w && exec sleep 3600';
    await e.dockerOk(['run', '-d', '--init', '--name', 'a1', '--network', 'macvlan10', '--ip', A1, BB, 'sh', '-c', script]);
    await runSleeper(e, 'a2', ['--network', 'macvlan10']);
    await runSleeper(e, 'b1', ['--network', 'macvlan20', '--ip', B1]);
    const a2 = await containerIPv4(e, 'a2');
    const n = Number(a2.split('.')[3]);
    t.ok(a2.startsWith('192.168.10.') && n >= 128 && a2 !== RESERVED, `a2 got ${a2}: in --ip-range, not the --aux-address`);
    t.match(await e.dockerOk(['exec', 'a1', 'ip', 'route']), /^default via 192\.168\.10\.1 dev eth0/m, "a1's default route is the LAN's router");
    t.equal(await e.dockerOk(['exec', 'a1', 'cat', '/sys/class/net/eth0/address']), '02:42:c0:a8:0a:83', "a1's MAC derives from its address");
    t.equal(await e.dockerOk(['exec', 'a1', 'cat', '/sys/class/net/eth0/mtu']), '1500', "the parent's MTU");
    const inA1 = await runOk('nsenter', [`--net=${await containerNetns(e, 'a1')}`, '--', 'ip', '-d', 'link', 'show', 'eth0']);
    t.match(inA1.stdout, /macvlan mode bridge/, 'eth0 is a macvlan link in bridge mode');
    t.same(diffSnapshots(s0, await snapshotHost(e), ['links', 'iptables', 'ip6tables', 'ipsets']), [], 'with three containers: still nothing on the host (their links are in the containers)');
  });

  await scenario('within a segment: the router and each other', async (t) => {
    t.ok(await reaches(e, 'a1', SEG10.router), 'a1 reaches the router of segment 10');
    t.ok(await reaches(e, 'a1', await containerIPv4(e, 'a2')), 'a1 reaches a2');
    t.ok(await reaches(e, 'b1', SEG20.router), 'b1 reaches the router of segment 20');
    t.ok(await reaches(e, 'a1', SEG10.router6, true), 'a1 reaches the router over IPv6');
    const a2v6 = (await containerGlobalIPv6(e, 'a2')).trim();
    t.ok(a2v6 && (await reaches(e, 'a1', a2v6, true)), `a1 reaches a2 over IPv6 (${a2v6})`);
    t.notOk(await pingOk(e, 'a1', '192.168.10.77', { waitSec: 1 }), 'an unused address answers nothing (negative control)');
  });

  await scenario('across segments: only through the router', async (t) => {
    const a2 = await containerIPv4(e, 'a2');
    const arp = async (target: string) => (await e.docker(['exec', 'a1', 'arping', '-c', '2', '-w', '2', '-I', 'eth0', target])).code === 0;
    t.ok(await arp(a2), 'a1 finds a2 by ARP on segment 10 (positive control)');
    t.notOk(await arp(B1), 'a1 finds no b1 by ARP: segment 20 is not its link');
    t.ok(await reaches(e, 'a1', B1), 'a1 reaches b1 through the router');
    const hops = await e.dockerOk(['exec', 'a1', 'ping', '-c1', '-W2', B1]);
    t.match(hops, /ttl=63/, 'one router hop on the way (ttl 63)');
    await l.routing(false);
    try {
      t.notOk(await pingOk(e, 'a1', B1, { waitSec: 1 }), 'with the router not forwarding, a1 cannot reach b1');
      t.ok(await pingOk(e, 'a1', a2), 'while a2 on its own segment still answers (positive control)');
    } finally {
      await l.routing(true);
    }
  });

  // Containers have CAP_NET_RAW: they can put any frame on their link. These send raw Ethernet
  // frames (a private EtherType no stack answers) and count where they arrive.
  const macOf = async (c: string) => (await e.dockerOk(['exec', c, 'cat', '/sys/class/net/eth0/address'])).trim();
  const BROADCAST = 'ff:ff:ff:ff:ff:ff';
  await scenario('hostile frames: a container on segment 10 cannot put a frame on segment 20', async (t) => {
    const [a1, a2, b1] = [await containerNetns(e, 'a1'), await containerNetns(e, 'a2'), await containerNetns(e, 'b1')];
    const [a2Mac, b1Mac] = [await macOf('a2'), await macOf('b1')];
    const marker = `tsnet-x-${Date.now()}`;
    const onA2 = await listenFrames(a2, 'eth0', marker);
    const onB1 = await listenFrames(b1, 'eth0', marker).catch(async (err: unknown) => { await onA2.stop(); throw err; });
    const [gotA2, gotB1] = await countWhile([onA2, onB1], async () => {
      for (const dst of [b1Mac, a2Mac, BROADCAST]) await sendFrames(a1, 'eth0', dst, 20, marker);
    });
    t.equal(gotA2, 40, `a2 (segment 10) gets the 20 frames to its MAC and the 20 broadcasts: the sender works (positive control), ${gotA2}`);
    t.equal(gotB1, 0, `b1 (segment 20) gets none, not even the 20 sent straight to its MAC ${b1Mac}`);
  });

  await scenario('hostile frames: macvlan_mode=private keeps containers apart on the host (and what a hairpinning switch does)', async (t) => {
    await e.dockerOk(['network', 'create', ...TS, '-o', `parent=${SEG20.parent}`, '-o', 'macvlan_mode=private', '--subnet', '192.168.21.0/24', 'private20']);
    try {
      await runSleeper(e, 'p1', ['--network', 'private20']);
      await runSleeper(e, 'p2', ['--network', 'private20']);
      const [p1, p2] = [await containerNetns(e, 'p1'), await containerNetns(e, 'p2')];
      const p2Mac = await macOf('p2');
      const round = async (tag: string) => {
        const marker = `tsnet-p-${tag}-${Date.now()}`;
        const onLan = await listenFrames(nsPathOf(LAN_NS), SEG20.uplink, marker);
        const onP2 = await listenFrames(p2, 'eth0', marker).catch(async (err: unknown) => { await onLan.stop(); throw err; });
        const [lanGot, p2Got] = await countWhile([onLan, onP2], async () => {
          for (const dst of [p2Mac, BROADCAST]) await sendFrames(p1, 'eth0', dst, 20, marker);
        });
        return { lan: lanGot, p2: p2Got };
      };
      const plain = await round('plain');
      t.equal(plain.lan, 40, `all 40 frames from p1 reach the LAN's port (positive control): ${plain.lan}`);
      t.equal(plain.p2, 0, `p2 gets none of them, not the 20 sent straight to its MAC ${p2Mac} nor the broadcasts`);
      // The kernel keeps private children apart on the host and drops broadcasts that come back
      // from the LAN; unicast a switch reflects (hairpin) is delivered. docs/macvlan.md says so.
      await l.lan(['link', 'set', 'dev', SEG20.uplink, 'type', 'bridge_slave', 'hairpin', 'on']);
      try {
        const hairpin = await round('hairpin');
        t.equal(hairpin.lan, 40, `with a hairpinning switch port: the 40 frames reach the LAN (${hairpin.lan})`);
        t.equal(hairpin.p2, 20, 'and the switch sends the 20 unicast frames back to p2, while the broadcasts stay dropped (as documented)');
      } finally {
        await l.lan(['link', 'set', 'dev', SEG20.uplink, 'type', 'bridge_slave', 'hairpin', 'off']);
      }
    } finally {
      await e.docker(['rm', '-f', 'p1', 'p2']);
      await e.docker(['network', 'rm', 'private20']);
    }
  });

  await scenario('a machine on the LAN reaches a container directly, no published port', async (t) => {
    t.ok(await nsReaches(LAN_HOST_NS, A1), `the LAN host pings a1 at ${A1}`);
    const http = await httpFrom(nsPathOf(LAN_HOST_NS), A1, 8080, 'macvlan-a1');
    t.ok(http.ok, `the LAN host gets a1's web page at ${A1}:8080 (${http.err || 'ok'})`);
    const a1v6 = (await containerGlobalIPv6(e, 'a1')).trim();
    t.ok(a1v6 && (await nsReaches(LAN_HOST_NS, a1v6, true)), `and over IPv6 (${a1v6})`);
    t.same(diffSnapshots(s0, await snapshotHost(e), ['iptables', 'ip6tables']), [], 'no NAT or rule made it so');
  });

  await scenario("the kernel's rule: the host cannot reach its own macvlan containers through the parent; a macvlan of its own can", async (t) => {
    await l.engine(['addr', 'add', '192.168.10.250/24', 'dev', SEG10.parent]);
    try {
      t.ok(await nsReaches(e.netns, SEG10.router), 'the host reaches the router through lan10 (positive control)');
      t.notOk(await nsPing(e.netns, A1), 'but not a1, a macvlan child of lan10');
    } finally {
      await l.engine(['addr', 'del', '192.168.10.250/24', 'dev', SEG10.parent]);
    }
    await l.engine(['link', 'add', 'mv-host', 'link', SEG10.parent, 'type', 'macvlan', 'mode', 'bridge']);
    try {
      await l.engine(['addr', 'add', '192.168.10.251/24', 'dev', 'mv-host']);
      await l.engine(['link', 'set', 'mv-host', 'up']);
      t.ok(await nsReaches(e.netns, A1), 'with a macvlan link of its own on lan10 (the documented remedy), the host reaches a1');
    } finally {
      await l.engine(['link', 'del', 'mv-host']);
    }
  });

  await scenario('a reconcile with containers running plans nothing (their links are in the containers)', async (t) => {
    const r = await pluginPost(ts!.socketPath, '/Tsnet.Reconcile', JSON.stringify({ DryRun: true }));
    t.equal(r.status, 200);
    t.match(JSON.parse(r.body), { Changes: [], Failed: [], Missing: [], Foreign: [] }, r.body);
  });

  const hasVlan = vlanControl === '';
  const refusedName = 'parent=lan10.30 on a kernel without 802.1Q: refused with the kernel\'s reason, nothing changed';
  if (hasVlan) await t.test(refusedName, { skip: 'this kernel has 802.1Q links (ip link add ... type vlan worked): the refusal does not apply' }, async () => {});
  else await scenario(refusedName, async (t) => {
    t.comment(`control: ip link add ... type vlan: ${vlanControl.split('\n').pop()}`);
    await refused(t, e, ['network', 'create', ...TS, '-o', `parent=${SEG10.parent}.30`, '--subnet', '192.168.30.0/24', '--gateway', '192.168.30.1', 'vlan30'],
      /there is no interface named lan10\.30, and tsnet cannot create it as an 802\.1Q sub-interface of lan10 with VLAN 30: this kernel has no vlan support/);
  });
  const madeName = 'parent=lan10.30 on a kernel with 802.1Q: the sub-interface is made, shared and removed with the last network';
  if (!hasVlan) await t.test(madeName, { skip: `this kernel has no 802.1Q (vlan) links (${vlanControl.split('\n').pop()}): tsnet refuses the sub-interface (scenario above); its plan is covered by unit and contract tests` }, async () => {});
  else await scenario(madeName, async (t) => {
    const vlan30 = (name: string, subnet: string) => e.dockerOk(['network', 'create', ...TS, '-o', `parent=${SEG10.parent}.30`, '--subnet', subnet, name]);
    await vlan30('vlan30a', '192.168.30.0/25');
    await vlan30('vlan30b', '192.168.30.128/25');
    t.match((await l.engine(['-d', 'link', 'show', `${SEG10.parent}.30`])).stdout, /vlan protocol 802\.1Q id 30/, 'lan10.30 is an 802.1Q link with VLAN 30');
    await e.dockerOk(['network', 'rm', 'vlan30a']);
    t.ok((await l.inNs(e.netns, ['ip', 'link', 'show', `${SEG10.parent}.30`])).code === 0, 'it stays while vlan30b uses it');
    await e.dockerOk(['network', 'rm', 'vlan30b']);
    t.not((await l.inNs(e.netns, ['ip', 'link', 'show', `${SEG10.parent}.30`])).code, 0, 'and goes with the last network');
  });

  await scenario('bad input: its sentence, and store and kernel unchanged', async (t) => {
    const create = (...args: string[]) => ['network', 'create', ...TS, ...args];
    const n30 = ['--subnet', '192.168.30.0/24', '--gateway', '192.168.30.1', 'bad30'];
    await refused(t, e, create('-o', 'parent=eth9', ...n30), /-o parent=eth9: there is no interface named "eth9" on this host/);
    await l.engine(['link', 'add', 'lan30', 'type', 'veth', 'peer', 'name', 'lan30p']);
    try {
      await refused(t, e, create('-o', 'parent=lan30', ...n30), /-o parent=lan30: lan30 is down/);
    } finally {
      await l.engine(['link', 'del', 'lan30']);
    }
    // Docker's own IPAM does not know tsnet's pools: the driver sees the overlap itself.
    await refused(t, e, ['network', 'create', '-d', 'tsnet', '-o', 'tsnet.mode=macvlan', '-o', `parent=${SEG10.parent}`, '--subnet', '192.168.10.0/25', 'bad10'],
      /subnet 192\.168\.10\.0\/25 overlaps subnet 192\.168\.10\.0\/24 of macvlan network macvlan10, which is on the same parent lan10/);
    const p10 = ['-o', `parent=${SEG10.parent}`];
    await refused(t, e, create(...p10, '-o', 'tsnet.allow=other tcp/80', ...n30), /tsnet\.allow needs the host firewall, which never sees the traffic of a macvlan network/);
    await refused(t, e, create(...p10, '-o', 'com.docker.network.bridge.enable_icc=false', ...n30), /enable_icc does not apply to a macvlan network: host netfilter never sees/);
    await refused(t, e, create(...p10, '-o', 'com.docker.network.bridge.enable_ip_masquerade=true', ...n30), /enable_ip_masquerade does not apply to a macvlan network: host netfilter never sees/);
    await refused(t, e, create(...p10, '--internal', ...n30), /--internal cannot be given to a macvlan network/);
    await refused(t, e, create(...p10, '-o', 'com.docker.network.driver.mtu=9000', ...n30), /larger than the MTU of the parent lan10 \(1500\)/);
    await refused(t, e, ['network', 'create', '-d', 'tsnet', '--ipam-driver', 'tsnet', '-o', 'tsnet.mode=ipvlan', ...p10, ...n30],
      /tsnet\.mode=ipvlan: this kernel has no ipvlan support \(it refuses to create an ipvlan link: operation not supported\)/);
    await refused(t, e, ['run', '-d', '--name', 'pub', '--network', 'macvlan10', '-p', '8081:80', BB, 'sleep', '60'],
      /a macvlan network publishes no ports: host netfilter never sees its traffic/, [['rm', '-f', 'pub']]);
    await refused(t, e, ['run', '-d', '--name', 'aux', '--network', 'macvlan10', '--ip', RESERVED, BB, 'sleep', '60'], /192\.168\.10\.130/, [['rm', '-f', 'aux']]);
  });

  await scenario('removing the networks leaves the parents and the host as they were', async (t) => {
    await e.dockerOk(['rm', '-f', 'a1', 'a2', 'b1']);
    await e.dockerOk(['network', 'rm', 'macvlan10', 'macvlan20']);
    for (const s of SEGMENTS) t.equal(await parentState(e, s.parent), parentsBefore.get(s.parent), `${s.parent} exactly as before`);
    t.same(diffSnapshots(s0, await snapshotHost(e)), [], 'links, rules, sets and store as before tsnet ran');
    const r = await pluginPost(ts!.socketPath, '/Tsnet.Reconcile', JSON.stringify({ DryRun: true }));
    t.match(JSON.parse(r.body), { Changes: [], Missing: [] }, 'and a reconcile finds nothing to do');
    t.comment(`scenarios took ${Math.round((Date.now() - started) / 1000)} s`);
  });
}
