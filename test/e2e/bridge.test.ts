// tsnet end to end: a real dockerd (private engine "br" in netns tse-br), real containers, the
// built plugin (dist/cli.js) as a legacy v1 plugin on <engine>/plugins/tsnet.sock.
// The subtests run in sequence on one engine and build on each other (c2/c3 on my_bridge).
// Run: npx tap run --timeout=900 test/e2e/bridge.test.ts   (as root; scripts/install-test-deps.sh)
import t, { type Test } from 'tap';
import { existsSync } from 'node:fs';
import {
  cidr4Overlap,
  containerAddr4,
  containerGlobalIPv6,
  containerIPv4,
  diffSnapshots,
  ensureBusyboxImage,
  ip4InCidr,
  isIPv4Cidr,
  listLinks,
  median,
  networkSubnets,
  nsExecOk,
  ping,
  pingOk,
  removeAllContainersAndNetworks,
  runSleeper,
  snapshotHost,
  forwardingOf,
  expectForwardingClosed,
  startEngine,
  startTsnet,
  destroyEngine,
  TSNET_CLI,
  waitFor,
  BB,
  type Engine,
  type HostSnapshot,
  type TsnetHandle,
} from './lib/index.js';
import { expectIdle, withDiagnostics } from './lib/scenario.js';

// The whole file takes 1-3 minutes; tell tap (its default per-file timeout may be shorter).
t.setTimeout(600_000);

const TS = ['-d', 'tsnet', '--ipam-driver', 'tsnet'];

let E: Engine | undefined;
let base: HostSnapshot | undefined;
let ts: TsnetHandle | undefined;
let forwardingAtBase: { v4: string; v6: string } | undefined;

/**
 * A subtest that ends with the idempotence check (a reconcile right after plans nothing) and,
 * when it fails, adds the tails of tsnet.log and dockerd.log to its output.
 */
function scenario(name: string, fn: (t: Test) => Promise<void>) {
  const body = async (tt: Test) => {
    await fn(tt);
    await expectIdle(tt, ts?.running ? ts.socketPath : undefined);
  };
  return t.test(name, (tt) => withDiagnostics(tt, body, (tt) => {
    if (!E) return;
    tt.comment(`--- tail of ${E.stateDir}/tsnet.log:\n${ts?.logTail(30) ?? '(tsnet not started)'}`);
    tt.comment(`--- tail of ${E.logPath}:\n${E.dockerdLogTail(15)}`);
  }));
}

await t.test('setup: engine, bb image, base snapshot, tsnet', async (t) => {
  t.ok(existsSync(TSNET_CLI), `${TSNET_CLI} is built`);
  if (!existsSync(TSNET_CLI)) return;
  E = await startEngine('br');
  await ensureBusyboxImage(E);
  // before tsnet runs: it may add its base firewall chains lazily and must remove them again
  base = await snapshotHost(E);
  forwardingAtBase = await forwardingOf(E);
  t.same(base.storeFiles, [], 'no tsnet store yet');
  ts = await startTsnet(E);
  t.ok(ts.running, `tsnet running (pid ${ts.pid})`);
});

if (!E || !base || !ts) {
  t.fail('setup failed: the other scenarios are not run');
  if (E) await destroyEngine(E);
} else {
  const e: Engine = E;
  const s0: HostSnapshot = base;
  t.teardown(() => destroyEngine(e));

  await scenario('my_bridge: addresses, ping by IP and by name, gateway, MAC', async (t) => {
    await e.dockerOk(['network', 'create', ...TS, '--subnet', '10.0.0.0/24', 'my_bridge']);
    t.equal(await e.dockerOk(['network', 'inspect', '-f', '{{.Driver}}', 'my_bridge']), 'tsnet', 'driver is tsnet');
    await runSleeper(e, 'c2', ['--network', 'my_bridge']);
    t.equal(await containerAddr4(e, 'c2'), '10.0.0.2/24', 'c2 got 10.0.0.2/24');
    await runSleeper(e, 'c3', ['--network', 'my_bridge', '--ip', '10.0.0.254']);
    t.equal(await containerAddr4(e, 'c3'), '10.0.0.254/24', 'c3 got the requested 10.0.0.254/24');
    t.equal((await ping(e, 'c2', '10.0.0.254')).code, 0, 'c2 pings c3 by IP');
    t.equal((await ping(e, 'c3', '10.0.0.2')).code, 0, 'c3 pings c2 by IP');
    t.equal((await ping(e, 'c2', 'c3')).code, 0, 'c2 pings c3 by name');
    t.equal((await ping(e, 'c3', 'c2')).code, 0, 'c3 pings c2 by name');
    t.not((await ping(e, 'c2', '10.0.0.77', { waitSec: 1 })).code, 0, 'ping to an unused address fails (negative control)');
    const routes = await e.dockerOk(['exec', 'c2', 'ip', 'route']);
    t.match(routes, /^default via 10\.0\.0\.1 dev eth0/m, `c2's default route is via 10.0.0.1:\n${routes}`);
    t.equal(await e.dockerOk(['exec', 'c2', 'cat', '/sys/class/net/eth0/address']), '02:42:0a:00:00:02', "c2's MAC derives from 10.0.0.2");
    t.equal(await e.dockerOk(['exec', 'c3', 'cat', '/sys/class/net/eth0/address']), '02:42:0a:00:00:fe', "c3's MAC derives from 10.0.0.254");
  });

  await scenario('networks without --subnet get pools that overlap nothing', async (t) => {
    const taken: string[] = ['10.0.0.0/24']; // my_bridge
    for (const net of ['auto1', 'auto2']) {
      await e.dockerOk(['network', 'create', ...TS, net]);
      const subs = (await networkSubnets(e, net)).filter(isIPv4Cidr);
      t.equal(subs.length, 1, `${net} has one IPv4 pool: ${subs.join(' ')}`);
      const pool = subs[0];
      if (!pool) continue;
      const routes = JSON.parse(await nsExecOk(e, ['ip', '-j', 'route'])) as { dst: string; dev?: string }[];
      const others = routes.filter((r) => r.dst !== 'default' && r.dst !== pool);
      const clashes = others.filter((r) => isIPv4Cidr(r.dst) && cidr4Overlap(pool, r.dst));
      t.same(clashes, [], `${net} pool ${pool} overlaps none of the engine's routes (${others.map((r) => `${r.dst} dev ${r.dev}`).join(', ')})`);
      for (const other of taken) t.notOk(cidr4Overlap(pool, other), `${net} pool ${pool} does not overlap ${other}`);
      taken.push(pool);
      // and it is usable
      const addr = await e.dockerOk(['run', '--rm', '--network', net, BB, 'ip', '-4', '-o', 'addr', 'show', 'dev', 'eth0']);
      const ip = /\binet (\d+\.\d+\.\d+\.\d+)\//.exec(addr)?.[1] ?? '';
      t.ok(ip && ip4InCidr(ip, pool), `a container on ${net} got ${ip} from ${pool}`);
    }
    t.not(taken[1], taken[2], 'the second network got a different pool');
    await e.dockerOk(['network', 'rm', 'auto1', 'auto2']);
  });

  await scenario('--mac-address and -o com.docker.network.driver.mtu', async (t) => {
    const mac = await e.dockerOk(['run', '--rm', '--network', 'my_bridge', '--mac-address', '02:42:ac:11:00:99', BB, 'cat', '/sys/class/net/eth0/address']);
    t.equal(mac, '02:42:ac:11:00:99', '--mac-address is the MAC inside the container');
    await e.dockerOk(['network', 'create', ...TS, '--subnet', '10.0.14.0/24', '-o', 'com.docker.network.driver.mtu=1400', 'mtu1400']);
    const mtu = await e.dockerOk(['run', '--rm', '--network', 'mtu1400', BB, 'cat', '/sys/class/net/eth0/mtu']);
    t.equal(mtu, '1400', 'eth0 mtu is 1400 on the mtu1400 network');
    const mtuDefault = await e.dockerOk(['exec', 'c2', 'cat', '/sys/class/net/eth0/mtu']);
    t.not(mtuDefault, '1400', `control: eth0 mtu on my_bridge is ${mtuDefault}`);
    await e.dockerOk(['network', 'rm', 'mtu1400']);
  });

  await scenario('IPv6: --ipv6 --subnet fd00:10::/64', async (t) => {
    await e.dockerOk(['network', 'create', ...TS, '--ipv6', '--subnet', '10.0.6.0/24', '--subnet', 'fd00:10::/64', 'v6net']);
    await runSleeper(e, 'v6a', ['--network', 'v6net']);
    await runSleeper(e, 'v6b', ['--network', 'v6net']);
    const a = (await containerGlobalIPv6(e, 'v6a')).trim();
    const b = (await containerGlobalIPv6(e, 'v6b')).trim();
    t.match(a, /^fd00:10::[0-9a-f:]+$/, `v6a has ${a}`);
    t.match(b, /^fd00:10::[0-9a-f:]+$/, `v6b has ${b}`);
    t.not(a, b, 'different addresses');
    if (!a || !b) return;
    t.match(await e.dockerOk(['exec', 'v6b', 'ip', '-6', '-o', 'addr', 'show', 'dev', 'eth0']), b, 'v6b has its address on eth0');
    // positive checks may retry briefly (IPv6 duplicate address detection, neighbour discovery)
    const okAB = await waitFor(() => pingOk(e, 'v6a', b, { v6: true }), { timeoutMs: 10_000, what: `v6a ping -6 ${b}` }).catch(() => false);
    t.ok(okAB, `v6a reaches v6b over IPv6 (${b})`);
    const okBA = await waitFor(() => pingOk(e, 'v6b', a, { v6: true }), { timeoutMs: 10_000, what: `v6b ping -6 ${a}` }).catch(() => false);
    t.ok(okBA, `v6b reaches v6a over IPv6 (${a})`);
    t.not((await ping(e, 'v6a', 'fd00:10::77', { v6: true, waitSec: 1 })).code, 0, 'ping -6 to an unused address fails (negative control)');
  });

  await scenario('network connect / disconnect of a running container', async (t) => {
    await e.dockerOk(['network', 'create', ...TS, '--subnet', '10.0.7.0/24', 'cn2']);
    await runSleeper(e, 'd1', ['--network', 'cn2']);
    const d1 = await containerIPv4(e, 'd1');
    t.ok(ip4InCidr(d1, '10.0.7.0/24'), `d1 on cn2 has ${d1}`);
    t.not((await e.docker(['exec', 'c2', 'ip', 'link', 'show', 'eth1'])).code, 0, 'c2 has no eth1 before connect');
    t.not((await ping(e, 'c2', d1, { waitSec: 1 })).code, 0, 'before connect, c2 cannot reach d1 (networks are isolated)');
    await e.dockerOk(['network', 'connect', 'cn2', 'c2']);
    const eth1 = await containerAddr4(e, 'c2', 'eth1');
    t.ok(eth1 && ip4InCidr(eth1.split('/')[0]!, '10.0.7.0/24'), `after connect, c2 has eth1 ${eth1}`);
    t.equal((await ping(e, 'c2', d1)).code, 0, 'c2 pings d1 by IP over eth1 (positive control)');
    t.equal((await ping(e, 'c2', 'd1')).code, 0, 'c2 pings d1 by name');
    t.equal((await ping(e, 'c2', 'c3')).code, 0, 'c2 still reaches c3 on my_bridge');
    await e.dockerOk(['network', 'disconnect', 'cn2', 'c2']);
    t.not((await e.docker(['exec', 'c2', 'ip', 'link', 'show', 'eth1'])).code, 0, 'after disconnect, eth1 is gone');
    t.not((await ping(e, 'c2', d1)).code, 0, 'after disconnect, c2 cannot reach d1');
    t.equal((await ping(e, 'c2', 'c3')).code, 0, 'c2 still reaches c3 after disconnect');
  });

  await scenario('tsnet restart (SIGTERM, start) keeps the data plane; the network stays usable', async (t) => {
    const linksBefore = await listLinks(e);
    // background ping c2 -> c3 through the whole restart
    await e.dockerOk(['exec', '-d', 'c2', 'sh', '-c', 'ping -i 0.2 10.0.0.254 > /tmp/bgping.txt 2>&1']);
    await waitFor(async () => /bytes from/.test(await e.dockerOk(['exec', 'c2', 'cat', '/tmp/bgping.txt'])), {
      timeoutMs: 5_000,
      what: 'background ping running',
    });
    const old = ts!;
    const exit = await old.stop();
    t.same(exit, { code: 0, signal: null }, 'tsnet exits 0 on SIGTERM');
    t.notOk(existsSync(old.socketPath), 'socket removed on stop');
    t.equal((await ping(e, 'c2', '10.0.0.254')).code, 0, 'while tsnet is down: c2 pings c3 by IP');
    t.equal((await ping(e, 'c3', 'c2')).code, 0, 'while tsnet is down: c3 pings c2 by name');
    t.same(await listLinks(e), linksBefore, 'while tsnet is down: links unchanged');
    ts = await startTsnet(e);
    t.ok(ts.running, `tsnet started again (pid ${ts.pid})`);
    t.equal((await ping(e, 'c2', '10.0.0.254')).code, 0, 'after restart: c2 pings c3');
    t.same(await listLinks(e), linksBefore, 'after restart: links unchanged (nothing recreated or duplicated)');
    await runSleeper(e, 'c4', ['--network', 'my_bridge']);
    const c4 = await containerIPv4(e, 'c4');
    t.ok(ip4InCidr(c4, '10.0.0.0/24') && !['10.0.0.1', '10.0.0.2', '10.0.0.254'].includes(c4), `new container c4 got a free address ${c4} (leases survived the restart)`);
    t.equal((await ping(e, 'c4', '10.0.0.254')).code, 0, 'c4 pings c3 by IP');
    t.equal((await ping(e, 'c4', 'c2')).code, 0, 'c4 pings c2 by name');
    await e.dockerOk(['exec', 'c2', 'killall', '-INT', 'ping']);
    const bg = await waitFor(
      async () => {
        const out = await e.dockerOk(['exec', 'c2', 'cat', '/tmp/bgping.txt']);
        return /packets transmitted/.test(out) ? out : '';
      },
      { timeoutMs: 5_000, what: 'background ping statistics' },
    );
    const m = /(\d+) packets transmitted, (\d+) packets received/.exec(bg);
    const sent = Number(m?.[1] ?? 0);
    const recv = Number(m?.[2] ?? -1);
    t.ok(sent >= 5, `background ping sent ${sent} packets during the restart`);
    t.equal(recv, sent, `background ping lost nothing (${recv}/${sent})`);
  });

  await scenario('an overlapping subnet is refused and changes nothing', async (t) => {
    const before = await snapshotHost(e);
    const r = await e.docker(['network', 'create', ...TS, '--subnet', '10.0.0.0/25', 'overlap']);
    t.not(r.code, 0, 'network create fails');
    t.match(r.stderr, /overlap/i, `the error mentions the overlap: ${r.stderr.trim()}`);
    const nets = (await e.dockerOk(['network', 'ls', '--format', '{{.Name}}'])).split('\n');
    t.notOk(nets.includes('overlap'), 'no network "overlap" exists');
    const after = await snapshotHost(e);
    t.same(diffSnapshots(before, after), [], 'links, iptables, ip6tables and store unchanged');
  });

  await scenario("-d tsnet with Docker's default IPAM", async (t) => {
    await e.dockerOk(['network', 'create', '-d', 'tsnet', 'defipam']);
    const subs = (await networkSubnets(e, 'defipam')).filter(isIPv4Cidr);
    t.equal(subs.length, 1, `Docker's IPAM gave ${subs.join(' ')}`);
    await runSleeper(e, 'e1', ['--network', 'defipam']);
    await runSleeper(e, 'e2', ['--network', 'defipam']);
    const ip1 = await containerIPv4(e, 'e1');
    const ip2 = await containerIPv4(e, 'e2');
    t.ok(subs[0] && ip4InCidr(ip1, subs[0]) && ip4InCidr(ip2, subs[0]), `e1 ${ip1} and e2 ${ip2} are in ${subs[0]}`);
    t.equal((await ping(e, 'e1', ip2)).code, 0, 'e1 pings e2 by IP');
    t.equal((await ping(e, 'e2', 'e1')).code, 0, 'e2 pings e1 by name');
  });

  await scenario('timing: docker run --rm on tsnet vs a Docker bridge network (measurement)', async (t) => {
    await e.dockerOk(['network', 'create', '-d', 'bridge', '--subnet', '10.0.99.0/24', 'dbr']);
    const ms: Record<string, number[]> = { my_bridge: [], dbr: [] };
    for (let i = 0; i < 5; i++) {
      for (const net of ['my_bridge', 'dbr']) {
        const r = await e.docker(['run', '--rm', '--network', net, BB, 'true']);
        if (r.code !== 0) t.fail(`docker run --rm --network ${net}: ${r.stderr.trim()}`);
        ms[net]!.push(r.ms);
      }
    }
    t.pass('10 runs done');
    t.comment(`median docker run --rm bb true: tsnet ${median(ms.my_bridge!)} ms [${ms.my_bridge!.join(' ')}], docker bridge ${median(ms.dbr!)} ms [${ms.dbr!.join(' ')}]`);
    await e.dockerOk(['network', 'rm', 'dbr']);
  });

  await scenario('teardown: everything removed, host back to the base snapshot', async (t) => {
    t.same(await removeAllContainersAndNetworks(e), [], 'all containers and networks removed');
    await expectIdle(t, ts!.socketPath);
    const exit = await ts!.stop();
    t.same(exit, { code: 0, signal: null }, 'tsnet exits 0 on SIGTERM');
    const now = await snapshotHost(e);
    // tsnet turned IPv6 forwarding on for the dual-stack network and so closed FORWARD, as Docker does.
    const expected = expectForwardingClosed(s0, forwardingAtBase!, await forwardingOf(e));
    t.same(diffSnapshots(expected, now, ['links', 'iptables', 'ip6tables', 'ipsets']), [], 'links, iptables, ip6tables and ipsets identical to the base snapshot (FORWARD closed where tsnet turned forwarding on)');
    t.same(now.storeFiles, [], 'the tsnet store holds no network/endpoint/pool/lease records');
  });
}
