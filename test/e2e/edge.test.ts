// The network edge end to end (docs/network-edge.md): egress NAT, published ports, isolation
// between networks (tsnet's and Docker's own), internal networks, ICC, tsnet.allow policies, and a
// dockerd restart. A private engine "ed" (netns tse-ed), the built plugin as a legacy plugin, busybox
// containers, and an "outside machine": the netns tsed-out, wired to tse-ed by a veth pair
// (198.51.100.1 / 2001:db8:51::1 engine side, .2 / ::2 outside), where the engine's default routes
// point. Nothing leaves these namespaces.
//
// Every negative check (something denied) comes with a positive control through the same path in
// the same subtest, and asserts that the firewall did it: the packet counter of tsnet's commented
// DROP rule ("tsnet: not allowed", ...) rose across the probe. Negatives that are no drop (a port
// that is not published, or published on another host address: the connection is refused) assert
// the DNAT rules instead. The subtests run in sequence (the counters are global) and share the
// networks ea, eb and dbr made once at the start. About 2-3 minutes.
// Run: npm run build && npx tap run --timeout=900 test/e2e/edge.test.ts   (as root)
import t, { type Test } from 'tap';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import {
  BB,
  destroyEngine,
  diffSnapshots,
  ensureBusyboxImage,
  ip4InCidr,
  nsExec,
  nsExecOk,
  runSleeper,
  snapshotHost,
  startDockerd,
  startEngine,
  startTsnet,
  stopDockerd,
  TSNET_CLI,
  waitFor,
  type Engine,
  type TsnetHandle,
} from './lib/index.js';
import { expectIdle, withDiagnostics } from './lib/scenario.js';
import {
  containerNetns,
  counterDelta,
  createOutside,
  dropCounters,
  ENGINE_IP,
  ENGINE_IP6,
  hitMark,
  hitsOf,
  httpFrom,
  ipsetSave,
  natRules,
  OUTSIDE_IP,
  OUTSIDE_IP6,
  OUTSIDE_PORT,
  portState,
  probeFrom,
  publishedOf,
  spawnInNetns,
  startSourceServer,
  tsnetCli,
  type NsProcess,
  type Outside,
} from './lib/outside.js';

// tell tap (its default per-file timeout is shorter)
t.setTimeout(900_000);

const TS = ['-d', 'tsnet', '--ipam-driver', 'tsnet'];
const NOT_ALLOWED = 'tsnet: not allowed';
const TO_DOCKER = 'tsnet: to a Docker network';
const INTERNAL = 'tsnet: internal network';
const ICC = 'tsnet: icc disabled';
/**
 * An HTTP GET with busybox nc (append HOST PORT): the static busybox's wget segfaults in the bb
 * image (exit 139, even for an address literal). `-w` bounds the connect, `timeout 5` the rest.
 */
const httpNc = (waitSec = 2) => `printf 'GET / HTTP/1.0\\r\\n\\r\\n' | timeout 5 nc -w ${waitSec}`;
const HTTP_NC = httpNc();
/**
 * Seconds a probe waits for an answer (nc's connect, ping's reply, the outside client). A
 * negative check (denied) waits 1 s: an answer on these local links takes milliseconds, and the
 * drop counter must rise as well; the positive controls on the same paths keep 2 s.
 */
const ANSWER_WAIT_SEC = 2;
const DENIED_WAIT_SEC = 1;
let answerWaitSec = ANSWER_WAIT_SEC;
/** Sends "ping" to HOST PORT from local port FROM every 100 ms and prints every answer: one UDP flow that never pauses. */
const UDP_SENDER_JS = `
const [host, port, from] = process.argv.slice(1);
const s = require('dgram').createSocket('udp4');
s.on('error', () => {});
s.on('message', (m) => console.log(String(m).trim()));
s.bind(Number(from), () => setInterval(() => s.send('ping', Number(port), host), 100));
`;

let E: Engine | undefined;
let ts: TsnetHandle | undefined;
let out: Outside | undefined;
/** processes started in namespaces (udp servers, port holders), stopped at teardown */
const procs: NsProcess[] = [];
const figures: Record<string, unknown> = {};

/** A subtest ending with the idempotence check; its failures carry the daemons' logs. */
/**
 * `external` names what changed the host behind tsnet's back in the scenario (a dockerd restart
 * rewrites its own rules): tsnet may then have a repair to make. One real reconcile pass makes it
 * (its changes are printed), and the dry run after it must plan nothing: the repair converges and
 * does not start a tug of war.
 */
function scenario(name: string, fn: (t: Test) => Promise<void>, external?: string) {
  const body = async (tt: Test) => {
    await fn(tt);
    await expectIdle(tt, ts?.running ? ts.socketPath : undefined, 'tsnet', external);
  };
  return t.test(name, (tt) =>
    withDiagnostics(tt, body, (tt) => {
      if (!E) return;
      tt.comment(`--- tail of ${E.stateDir}/tsnet.log:\n${ts?.logTail(30) ?? '(tsnet not started)'}`);
      tt.comment(`--- tail of ${E.logPath}:\n${E.dockerdLogTail(12)}`);
      if (out) tt.comment(`--- outside server: ${out.server.lines.slice(-10).join('\n')}`);
    }),
  );
}

await t.test('setup: engine ed, tsnet, the outside namespace', async (t) => {
  t.ok(existsSync(TSNET_CLI), `${TSNET_CLI} is built`);
  if (!existsSync(TSNET_CLI)) return;
  const t0 = Date.now();
  E = await startEngine('ed');
  await ensureBusyboxImage(E);
  ts = await startTsnet(E);
  t.ok(ts.running, `tsnet running (pid ${ts.pid})`);
  out = await createOutside(E);
  t.ok(out.server.running, `outside server listening on ${OUTSIDE_IP}:${OUTSIDE_PORT} and [${OUTSIDE_IP6}]:${OUTSIDE_PORT} in ${out.ns}`);
  // the wire itself (no firewall involved: the engine's own address, INPUT/OUTPUT)
  const direct = await probeFrom(E.netnsPath, 'tcp', OUTSIDE_IP, OUTSIDE_PORT);
  t.match(direct.out, `src=${ENGINE_IP}`, `the engine netns reaches the outside server directly (${direct.out.trim() || direct.err})`);
  t.comment(`setup (engine, image, tsnet, outside) took ${Date.now() - t0} ms`);
});

if (!E || !ts || !out) {
  t.fail('setup failed: the scenarios are not run');
  await out?.destroy();
  if (E) await destroyEngine(E);
} else {
  const e: Engine = E;
  const o: Outside = out;
  t.teardown(async () => {
    for (const p of procs) await p.stop();
    await o.destroy();
    await destroyEngine(e);
    t.comment(`figures: ${JSON.stringify(figures)}`);
  });

  // ---------- helpers ----------

  const net = (name: string, subnets: readonly string[], extra: readonly string[] = []) =>
    e.dockerOk(['network', 'create', ...TS, ...subnets.flatMap((s) => ['--subnet', s]), ...extra, name]);

  /** busybox httpd on each port (index.html holds `content`), then sleep; waits until it answers. */
  const server = async (name: string, runArgs: readonly string[], ports: readonly number[], content = name) => {
    const script = `mkdir -p /www && echo ${content} > /www/index.html && for p in ${ports.join(' ')}; do httpd -p $p -h /www || exit 1; done; exec sleep 3600`;
    await e.dockerOk(['run', '-d', '--init', '--name', name, ...runArgs, BB, 'sh', '-c', script]);
    await waitFor(async () => (await e.docker(['exec', name, 'sh', '-c', `${HTTP_NC} 127.0.0.1 ${ports[0]}`])).stdout.includes(content), {
      timeoutMs: 15_000,
      what: `${name} serving on ${ports.join(',')}`,
    });
  };

  const ip4 = (c: string, netName: string) => e.dockerOk(['inspect', '-f', `{{(index .NetworkSettings.Networks "${netName}").IPAddress}}`, c]);
  const ip6 = (c: string, netName: string) => e.dockerOk(['inspect', '-f', `{{(index .NetworkSettings.Networks "${netName}").GlobalIPv6Address}}`, c]);

  interface Probe {
    ok: boolean;
    detail: string;
  }
  /** HTTP GET / with busybox nc inside FROM (bb's static wget crashes); ok when the page holds `expect`. */
  const http = async (from: string, host: string, port: number, expect: string): Promise<Probe> => {
    const r = await e.docker(['exec', from, 'sh', '-c', `${httpNc(answerWaitSec)} ${host} ${port}`], { timeoutMs: 20_000 });
    const body = r.stdout.split('\r\n\r\n').slice(1).join('').trim();
    return { ok: r.code === 0 && body.includes(expect), detail: `${(body || r.stdout.split('\n')[0] || r.stderr).trim().slice(0, 160)} (${r.ms} ms)` };
  };
  /** `docker exec FROM nc -w 2 HOST 7777` to the outside server (-w 1 when denied): the answer names the source it saw. */
  const egress = async (from: string, host = OUTSIDE_IP): Promise<Probe & { src: string }> => {
    const r = await e.docker(['exec', from, 'nc', '-w', String(answerWaitSec), host, String(OUTSIDE_PORT)], { timeoutMs: 20_000 });
    const src = /outside src=(\S+)/.exec(r.stdout)?.[1] ?? '';
    return { ok: r.code === 0 && src !== '', src, detail: `${(r.stdout + r.stderr).trim().slice(0, 160)} (${r.ms} ms)` };
  };
  const pingP = async (from: string, target: string, v6 = false): Promise<Probe> => {
    const r = await e.docker(['exec', from, 'ping', ...(v6 ? ['-6'] : []), '-c1', `-W${answerWaitSec}`, target], { timeoutMs: 20_000 });
    return { ok: r.code === 0, detail: r.stdout.split('\n').slice(-3).join(' ').trim() || r.stderr.trim() };
  };
  const fromOutside = async (host: string, port: number, expect: string): Promise<Probe> => {
    const r = await o.http(host, port, expect, answerWaitSec * 1_000);
    return { ok: r.ok, detail: `${r.out.split('\r\n\r\n').slice(1).join('').trim() || r.err} (${r.ms} ms)` };
  };
  const fromEngine = async (host: string, port: number, expect: string): Promise<Probe> => {
    const r = await httpFrom(e.netnsPath, host, port, expect);
    return { ok: r.ok, detail: `${r.out.split('\r\n\r\n').slice(1).join('').trim() || r.err} (${r.ms} ms)` };
  };

  /** A positive check; with pollMs it is retried until it passes (policy learning, IPv6 DAD). */
  const reach = async (t: Test, what: string, probe: () => Promise<Probe>, pollMs = 0): Promise<boolean> => {
    const t0 = Date.now();
    let p = await probe();
    while (!p.ok && Date.now() - t0 < pollMs) {
      await new Promise((r) => setTimeout(r, 300));
      p = await probe();
    }
    t.ok(p.ok, `${what}: ${p.detail}${pollMs ? ` [after ${Date.now() - t0} ms]` : ''}`);
    return p.ok;
  };

  /** A negative check: the probe fails, and one of the named drop counters rose across it. */
  const denied = async (t: Test, what: string, probe: () => Promise<Probe>, counters: readonly string[], v6 = false): Promise<void> => {
    const once = async () => {
      const before = await dropCounters(e, v6);
      answerWaitSec = DENIED_WAIT_SEC;
      let p: Probe;
      try {
        p = await probe();
      } finally {
        answerWaitSec = ANSWER_WAIT_SEC;
      }
      const after = await dropCounters(e, v6);
      return { p, after, d: counterDelta(before, after, counters) };
    };
    let { p, after, d } = await once();
    if (d < 0) {
      // The counters went down: tsnet refilled its chains meanwhile (a repair after Docker rewrote
      // its rules), which starts them at zero. Say so and probe once more.
      t.comment(`${what}: the drop counters were reset during the probe (tsnet refilled its chains); probing again`);
      ({ p, after, d } = await once());
    }
    t.notOk(p.ok, `${what} is denied: ${p.detail}`);
    t.ok(d > 0, `${what}: ${v6 ? 'ip6tables' : 'iptables'} counter "${counters.join('" or "')}" rose by ${d} (now ${counters.map((c) => after.get(c) ?? 'no such rule').join('/')})`);
  };

  const policy = (args: readonly string[]) => tsnetCli(['policy', ...args, '--socket', ts!.socketPath]);

  /** A udp server (the echo-source program) in a container's netns; answers "TAG src=ADDR". */
  const udpServer = async (c: string, port: number, tag: string) => {
    const p = await startSourceServer(await containerNetns(e, c), port, tag, `udp server in ${c}`);
    procs.push(p);
    return p;
  };

  const nsPorts = async (proto: 'tcp' | 'udp', port: number) => portState(e.netnsPath, proto, port);

  // ---------- shared networks and containers ----------

  await scenario('shared: networks ea/eb (tsnet) and dbr (Docker bridge), servers and clients', async (t) => {
    const t0 = Date.now();
    await Promise.all([
      net('ea', ['10.81.1.0/24']),
      net('eb', ['10.81.2.0/24']),
      e.dockerOk(['network', 'create', '-d', 'bridge', '--subnet', '10.81.3.0/24', 'dbr']),
    ]);
    await Promise.all([
      server('a1', ['--network', 'ea', '-p', '8080:80', '-p', '8080:5353/udp'], [80, 81]),
      runSleeper(e, 'a2', ['--network', 'ea']),
      server('b1', ['--network', 'eb'], [80]),
      runSleeper(e, 'b2', ['--network', 'eb']),
      server('d1', ['--network', 'dbr'], [80]),
      runSleeper(e, 'd2', ['--network', 'dbr']),
    ]);
    await udpServer('a1', 5353, 'a1-udp');
    const a1 = await ip4('a1', 'ea');
    t.ok(ip4InCidr(a1, '10.81.1.0/24'), `a1 has ${a1} from ea's 10.81.1.0/24`);
    t.pass(`3 networks and 6 containers in ${Date.now() - t0} ms`);
  });

  // ---------- 1. egress ----------

  await scenario('egress: masqueraded to the host address; enable_ip_masquerade=false keeps the container address', async (t) => {
    const a2 = await ip4('a2', 'ea');
    const hits0 = hitMark(o.server);
    const r = await egress('a2');
    t.ok(r.ok, `a2 (${a2}) reaches the outside server and gets its answer back: ${r.detail}`);
    t.equal(r.src, ENGINE_IP, `the outside server saw the host address ${ENGINE_IP}, not ${a2} (masquerade)`);
    const seen = hitsOf(o.server, hits0).map((h) => h.src);
    t.notOk(seen.includes(a2), `the container address ${a2} never reached the outside (server saw ${seen.join(', ')})`);

    await net('enomasq', ['10.81.4.0/24'], ['-o', 'com.docker.network.bridge.enable_ip_masquerade=false']);
    await runSleeper(e, 'm1', ['--network', 'enomasq']);
    const m1 = await ip4('m1', 'enomasq');
    // without a route back to 10.81.4.0/24 the outside cannot answer: the source really was m1's own
    const hits1 = hitMark(o.server);
    const noRoute = await egress('m1');
    t.notOk(noRoute.ok, `without a route back in ${o.ns}, m1's exchange does not complete (its source was not NATed): ${noRoute.detail}`);
    t.same(hitsOf(o.server, hits1).filter((h) => h.src === ENGINE_IP), [], 'and nothing arrived from the host address');
    const unroute = await o.routeVia('10.81.4.0/24');
    try {
      const r2 = await egress('m1');
      t.ok(r2.ok, `with the route back, m1 reaches the outside server and gets the answer: ${r2.detail}`);
      t.equal(r2.src, m1, `the outside server saw m1's own address ${m1} (no masquerade)`);
    } finally {
      await unroute();
    }
    const r3 = await egress('a2');
    t.equal(r3.src, ENGINE_IP, `control: a2 on the masquerading network is still seen as ${ENGINE_IP}`);
  });

  // ---------- 2. published ports ----------

  await scenario('published ports: -p 8080:80 (tcp) and 8080:5353/udp from outside, the host, 127.0.0.1, hairpin, another network', async (t) => {
    const a1 = await ip4('a1', 'ea');
    await reach(t, `outside -> ${ENGINE_IP}:8080 (tcp) reaches a1`, () => fromOutside(ENGINE_IP, 8080, 'a1'));
    const u = await o.probe('udp', ENGINE_IP, 8080, { payload: 'hello' });
    t.ok(u.ok && u.out.includes('a1-udp'), `outside -> ${ENGINE_IP}:8080/udp reaches a1's udp server: ${u.out.trim() || u.err}`);
    t.comment(`a1's udp server saw the outside client as ${/src=(\S+)/.exec(u.out)?.[1] ?? '?'}`);
    await reach(t, `engine netns -> its own address ${ENGINE_IP}:8080 reaches a1`, () => fromEngine(ENGINE_IP, 8080, 'a1'));
    if (!(await reach(t, 'engine netns -> 127.0.0.1:8080 reaches a1', () => fromEngine('127.0.0.1', 8080, 'a1')))) {
      t.comment(`iptables-save -c -t nat:\n${(await nsExec(e, ['iptables-save', '-c', '-t', 'nat'])).stdout}`);
      t.comment(`conntrack -L:\n${(await nsExec(e, ['conntrack', '-L'])).stdout}`);
      t.comment(`route_localnet:\n${(await nsExec(e, ['sh', '-c', 'grep . /proc/sys/net/ipv4/conf/*/route_localnet'])).stdout}`);
    }
    const lu = await probeFrom(e.netnsPath, 'udp', '127.0.0.1', 8080, { payload: 'hello' });
    t.ok(lu.ok && lu.out.includes('a1-udp'), `engine netns -> 127.0.0.1:8080/udp reaches a1: ${lu.out.trim() || lu.err}`);
    await reach(t, `hairpin: a2 (same network) -> ${ENGINE_IP}:8080 reaches a1`, () => http('a2', ENGINE_IP, 8080, 'a1'));
    await reach(t, `b2 (network eb) -> ${ENGINE_IP}:8080 reaches a1`, () => http('b2', ENGINE_IP, 8080, 'a1'));
    await reach(t, `d2 (Docker bridge dbr) -> ${ENGINE_IP}:8080 reaches a1`, () => http('d2', ENGINE_IP, 8080, 'a1'));
    await reach(t, 'engine netns -> another host address (docker0 172.17.0.1):8080 reaches a1', () => fromEngine('172.17.0.1', 8080, 'a1'));
    const text = await tsnetCli(['status', '--state-dir', ts!.stateDir]);
    t.match(text.stdout, `0.0.0.0:8080->${a1}:80/tcp`, 'tsnet status shows the mapping as 0.0.0.0:8080->ADDR:80/tcp');
    // negatives: what is not published is not reachable
    const un = await o.http(ENGINE_IP, 81, 'a1');
    t.notOk(un.ok, `outside -> ${ENGINE_IP}:81 (a1 serves 81 but it is not published) fails: ${un.err}`);
    const l6 = await httpFrom(e.netnsPath, '::1', 8080, 'a1');
    t.notOk(l6.ok, `engine netns -> [::1]:8080 is not forwarded (documented): ${l6.err || l6.out.slice(0, 80)}`);
    const pub = await publishedOf(ts!.stateDir, a1);
    t.ok(pub && pub.some((p) => p.hostPort === 8080 && p.proto === 'tcp' && p.containerPort === 80), `tsnet status --json lists 8080->80/tcp for a1: ${JSON.stringify(pub?.map((p) => p.raw))}`);
    t.ok(pub && pub.some((p) => p.hostPort === 8080 && p.proto === 'udp' && p.containerPort === 5353), 'and 8080->5353/udp');
    const nat = (await natRules(e)).filter((l) => /--dport 8080\b/.test(l));
    t.ok(nat.length >= 2, `DNAT rules for 8080 (tcp and udp): ${nat.join(' | ')}`);
  });

  await scenario('published ports: HostIP 127.0.0.1, a host port range, HostPort 0', async (t) => {
    await Promise.all([
      server('p1', ['--network', 'ea', '-p', '127.0.0.1:8082:80'], [80]),
      server('p2', ['--network', 'ea', '-p', '8090-8095:80'], [80]),
    ]);
    await reach(t, 'engine netns -> 127.0.0.1:8082 reaches p1 (published on 127.0.0.1 only)', () => fromEngine('127.0.0.1', 8082, 'p1'));
    const wrong = await o.http(ENGINE_IP, 8082, 'p1');
    t.notOk(wrong.ok, `outside -> ${ENGINE_IP}:8082 does not reach p1: ${wrong.err || wrong.out.slice(0, 80)}`);
    const wrongLocal = await httpFrom(e.netnsPath, ENGINE_IP, 8082, 'p1');
    t.notOk(wrongLocal.ok, `engine netns -> ${ENGINE_IP}:8082 does not reach p1 either: ${wrongLocal.err}`);
    const nat8082 = (await natRules(e)).filter((l) => /--dport 8082\b/.test(l));
    t.ok(nat8082.length > 0 && nat8082.every((l) => /-d 127\.0\.0\.1(\/32)?\b/.test(l)), `every DNAT rule for 8082 is for 127.0.0.1: ${nat8082.join(' | ')}`);

    const p2 = await publishedOf(ts!.stateDir, await ip4('p2', 'ea'));
    const p2port = p2?.find((p) => p.proto === 'tcp')?.hostPort ?? 0;
    t.equal(p2port, 8090, `-p 8090-8095:80 took the first port of the range: ${JSON.stringify(p2?.map((p) => p.raw))}`);
    await server('p3', ['--network', 'ea', '-p', '8090-8095:80'], [80]);
    const p3 = await publishedOf(ts!.stateDir, await ip4('p3', 'ea'));
    const p3port = p3?.find((p) => p.proto === 'tcp')?.hostPort ?? 0;
    t.equal(p3port, 8091, `a second -p 8090-8095:80 took the next free port: ${JSON.stringify(p3?.map((p) => p.raw))}`);
    await reach(t, `outside -> ${ENGINE_IP}:8090 reaches p2`, () => fromOutside(ENGINE_IP, 8090, 'p2'));
    await reach(t, `outside -> ${ENGINE_IP}:8091 reaches p3`, () => fromOutside(ENGINE_IP, 8091, 'p3'));
    const p8092 = await o.http(ENGINE_IP, 8092, 'p');
    t.notOk(p8092.ok, `outside -> ${ENGINE_IP}:8092 (in the range, not taken) reaches nothing: ${p8092.err}`);

    await server('p4', ['--network', 'ea', '-p', '80'], [80]);
    const p4 = await publishedOf(ts!.stateDir, await ip4('p4', 'ea'));
    const p4port = p4?.find((p) => p.proto === 'tcp')?.hostPort ?? 0;
    const [lo, hi] = (await nsExecOk(e, ['cat', '/proc/sys/net/ipv4/ip_local_port_range'])).trim().split(/\s+/).map(Number);
    t.ok(p4port >= (lo ?? 1) && p4port <= (hi ?? 0), `-p 80 (HostPort 0) got ${p4port} from the ephemeral range ${lo}-${hi}: ${JSON.stringify(p4?.map((p) => p.raw))}`);
    if (p4port) await reach(t, `outside -> ${ENGINE_IP}:${p4port} reaches p4`, () => fromOutside(ENGINE_IP, p4port, 'p4'));
    figures.hostPort0 = p4port;
    const nat0 = await natRules(e);
    const foreign = await e.docker(['run', '-d', '--init', '--name', 'p5', '--network', 'ea', '-p', '192.0.2.10:8083:80', BB, 'sleep', '3600']);
    t.not(foreign.code, 0, '-p 192.0.2.10:8083:80 (not an address of this host) fails');
    t.match(foreign.stderr, /192\.0\.2\.10/, `the error names the address: ${foreign.stderr.trim()}`);
    t.same(await natRules(e), nat0, 'nat table unchanged');
    await e.docker(['rm', '-f', 'p5']);
    const dp = await e.dockerOk(['port', 'p2']);
    t.comment(`docker port p2 (Docker cannot show a remote driver's ports): ${JSON.stringify(dp)}`);
  });

  await scenario('published ports: two containers serving port 80, published on 8080 and 8081', async (t) => {
    await server('w2', ['--network', 'eb', '-p', '8081:80'], [80]);
    await reach(t, `outside -> ${ENGINE_IP}:8080 reaches a1`, () => fromOutside(ENGINE_IP, 8080, 'a1'));
    await reach(t, `outside -> ${ENGINE_IP}:8081 reaches w2`, () => fromOutside(ENGINE_IP, 8081, 'w2'));
    const cross = await o.http(ENGINE_IP, 8081, 'a1');
    t.notOk(cross.ok, `${ENGINE_IP}:8081 is w2's, not a1's: ${cross.out.split('\r\n\r\n')[1]?.trim()}`);
  });

  await scenario('published ports: a port in use is refused and changes nothing; docker rm -f frees the port', async (t) => {
    const holder = spawnInNetns(e.netnsPath, ['busybox', 'nc', '-l', '-p', '8099'], 'port holder 8099 in tse-ed');
    procs.push(holder);
    await waitFor(async () => (await nsPorts('tcp', 8099)) === 'EADDRINUSE', { timeoutMs: 5_000, what: 'nc holding 8099' });
    const nat0 = [...(await natRules(e)), ...(await natRules(e, true))];
    const t0 = Date.now();
    const r = await e.docker(['run', '-d', '--init', '--name', 'pu1', '--network', 'ea', '-p', '8099:80', BB, 'sleep', '3600']);
    t.not(r.code, 0, `docker run -p 8099:80 fails while another process holds 8099 (${Date.now() - t0} ms)`);
    t.match(r.stderr, /8099/, `the error names the port: ${r.stderr.trim()}`);
    t.same([...(await natRules(e)), ...(await natRules(e, true))], nat0, 'iptables/ip6tables nat tables unchanged');
    await e.docker(['rm', '-f', 'pu1']);
    await holder.stop();
    await waitFor(async () => (await nsPorts('tcp', 8099)) === 'free', { timeoutMs: 5_000, what: '8099 free again' });

    // positive control: the same run works once the port is free
    const t1 = Date.now();
    await server('pu2', ['--network', 'ea', '-p', '8099:80'], [80]);
    figures.runWithPortMs = Date.now() - t1;
    await reach(t, `with 8099 free, docker run -p 8099:80 works and outside -> ${ENGINE_IP}:8099 reaches pu2`, () => fromOutside(ENGINE_IP, 8099, 'pu2'));
    t.equal(await nsPorts('tcp', 8099), 'EADDRINUSE', 'tsnet holds 8099 now: another process cannot bind it');

    const nat1 = [...(await natRules(e)), ...(await natRules(e, true))];
    const dup = await e.docker(['run', '-d', '--init', '--name', 'pu3', '--network', 'eb', '-p', '8099:80', BB, 'sleep', '3600']);
    t.not(dup.code, 0, 'a second container publishing 8099 fails');
    t.match(dup.stderr, /8099/, `the error names the port: ${dup.stderr.trim()}`);
    t.same([...(await natRules(e)), ...(await natRules(e, true))], nat1, 'nat tables unchanged');
    await e.docker(['rm', '-f', 'pu3']);
    await reach(t, 'pu2 is still reachable on 8099', () => fromOutside(ENGINE_IP, 8099, 'pu2'));

    const logOff = (await readFile(ts!.logPath)).length;
    await e.dockerOk(['rm', '-f', 'pu2']);
    const logged = (await readFile(ts!.logPath)).subarray(logOff).toString();
    t.match(logged, /port unpublished/, 'tsnet logged "port unpublished"');
    const left = (await natRules(e)).filter((l) => /--dport 8099\b/.test(l));
    t.same(left, [], 'after docker rm -f pu2 no DNAT rule for 8099 is left');
    t.equal(await nsPorts('tcp', 8099), 'free', 'and another process can bind 8099');
    const gone = await o.http(ENGINE_IP, 8099, 'pu2');
    t.notOk(gone.ok, `outside -> ${ENGINE_IP}:8099 reaches nothing: ${gone.err}`);
  });

  await scenario('published ports: -o host_binding_ipv4 serves -p 8077:80 on that host address only', async (t) => {
    const bad = await e.docker(['network', 'create', ...TS, '--subnet', '10.81.16.0/24', '-o', 'com.docker.network.bridge.host_binding_ipv4=not-an-ip', 'ehbad']);
    t.not(bad.code, 0, 'network create with host_binding_ipv4=not-an-ip fails');
    t.match(bad.stderr, /host_binding_ipv4="not-an-ip" is not an IP address/, `naming the option and the value: ${bad.stderr.trim()}`);
    await net('ehb', ['10.81.16.0/24'], ['-o', `com.docker.network.bridge.host_binding_ipv4=${ENGINE_IP}`]);
    await server('hb1', ['--network', 'ehb', '-p', '8077:80'], [80]);
    await reach(t, `outside -> ${ENGINE_IP}:8077 reaches hb1 (the network's host address)`, () => fromOutside(ENGINE_IP, 8077, 'hb1'));
    await reach(t, `engine netns -> ${ENGINE_IP}:8077 reaches hb1`, () => fromEngine(ENGINE_IP, 8077, 'hb1'));
    // Another host address (docker0's), from outside and from the host, each after a control on the same path.
    const unroute = await o.routeVia('172.17.0.1/32');
    try {
      await reach(t, 'control: outside -> 172.17.0.1:8080 (a1, published on every address) works', () => fromOutside('172.17.0.1', 8080, 'a1'));
      const other = await o.http('172.17.0.1', 8077, 'hb1');
      t.notOk(other.ok, `outside -> 172.17.0.1:8077 (another host address) does not reach hb1: ${other.err || other.out.slice(0, 80)}`);
    } finally {
      await unroute();
    }
    await reach(t, 'control: engine netns -> 172.17.0.1:8080 reaches a1', () => fromEngine('172.17.0.1', 8080, 'a1'));
    const local = await httpFrom(e.netnsPath, '172.17.0.1', 8077, 'hb1');
    t.notOk(local.ok, `engine netns -> 172.17.0.1:8077 does not reach hb1: ${local.err || local.out.slice(0, 80)}`);
    const nat4 = (await natRules(e)).filter((l) => /--dport 8077\b/.test(l));
    t.ok(nat4.length === 1 && /-d 198\.51\.100\.1(\/32)?\b/.test(nat4[0] ?? ''), `one DNAT rule for 8077, for ${ENGINE_IP}: ${nat4.join(' | ')}`);
    t.same((await natRules(e, true)).filter((l) => /--dport 8077\b/.test(l)), [], 'no IPv6 rule beside it (as Docker 20.10)');
    t.equal(await portState(e.netnsPath, 'tcp', 8077, ENGINE_IP), 'EADDRINUSE', `tsnet holds 8077 on ${ENGINE_IP}`);
    t.equal(await portState(e.netnsPath, 'tcp', 8077, '172.17.0.1'), 'free', 'and not on another address');

    await net('ehfar', ['10.81.17.0/24'], ['-o', 'com.docker.network.bridge.host_binding_ipv4=192.0.2.10']);
    const nat0 = await natRules(e);
    const far = await e.docker(['run', '-d', '--init', '--name', 'hb2', '--network', 'ehfar', '-p', '8076:80', BB, 'sleep', '3600']);
    t.not(far.code, 0, 'on a network whose host_binding_ipv4 is not an address of this host, docker run -p 8076:80 fails');
    t.match(far.stderr, /192\.0\.2\.10 \(com\.docker\.network\.bridge\.host_binding_ipv4\).*not an address of this host/, `naming the option and the address: ${far.stderr.trim()}`);
    t.same(await natRules(e), nat0, 'nat table unchanged');
    await e.docker(['rm', '-f', 'hb2']);
  });

  await scenario('published UDP port: a client that keeps sending reaches the container that replaces the removed one (moby#8795)', async (t) => {
    await runSleeper(e, 'uc1', ['--network', 'ea', '-p', '8078:5353/udp']);
    await udpServer('uc1', 5353, 'uc1');
    const sender = spawnInNetns(o.nsPath, [process.execPath, '-e', UDP_SENDER_JS, ENGINE_IP, '8078', '40078'], 'udp sender in the outside netns');
    procs.push(sender);
    const answered = (tag: string, from = 0) => sender.lines.slice(from).some((l) => l.startsWith(`${tag} src=`));
    await waitFor(async () => answered('uc1'), { timeoutMs: 10_000, what: 'uc1 answering the outside sender' });
    t.pass('the outside sender (one source port, every 100 ms) reaches uc1 through 8078/udp');
    const logOff = (await readFile(ts!.logPath)).length;
    const uc1 = await ip4('uc1', 'ea');
    await e.dockerOk(['rm', '-f', 'uc1']);
    const mark = sender.lines.length;
    // Another address: the IPAM would hand uc1's freed one out again, and the old flow would lead there anyway.
    await runSleeper(e, 'uc2', ['--network', 'ea', '--ip', '10.81.1.201', '-p', '8078:5353/udp']);
    t.not(await ip4('uc2', 'ea'), uc1, `uc2 (10.81.1.201) does not have uc1's address ${uc1}`);
    await udpServer('uc2', 5353, 'uc2');
    const t0 = Date.now();
    const ok = await waitFor(async () => answered('uc2', mark), { timeoutMs: 10_000, what: 'uc2 answering the same sender' }).then(() => true, () => false);
    t.ok(ok, `the same sender, never pausing, reaches uc2 ${Date.now() - t0} ms after uc2's server started (answers since: ${sender.lines.slice(mark).slice(-3).join(' | ')})`);
    const logged = (await readFile(ts!.logPath)).subarray(logOff).toString();
    t.match(logged, /conntrack entries of published ports forgotten/, 'tsnet logged that it made the kernel forget the old flows');
    await sender.stop();
    await e.dockerOk(['rm', '-f', 'uc2']);
  });

  await scenario("overlapping subnets: Docker's default IPAM accepts one, tsnet refuses it naming both networks", async (t) => {
    await net('ov1', ['10.81.18.0/24']);
    const before = await snapshotHost(e);
    const sets0 = await ipsetSave(e);
    // Docker's own IPAM does not know tsnet's pools: only tsnet can see the overlap.
    const r = await e.docker(['network', 'create', '-d', 'tsnet', '--subnet', '10.81.18.128/25', 'ov2']);
    t.not(r.code, 0, 'docker network create -d tsnet --subnet 10.81.18.128/25 (default IPAM) fails');
    t.match(r.stderr, /subnet 10\.81\.18\.128\/25 of network [0-9a-f]{12} overlaps subnet 10\.81\.18\.0\/24 of tsnet network (ov1|[0-9a-f]{12})/, `naming both networks and subnets: ${r.stderr.trim()}`);
    t.notOk((await e.dockerOk(['network', 'ls', '--format', '{{.Name}}'])).split('\n').includes('ov2'), 'no network ov2');
    t.same(diffSnapshots(before, await snapshotHost(e)), [], 'links, iptables, ip6tables and store unchanged');
    t.same(await ipsetSave(e), sets0, 'ipsets unchanged');
    const good = await e.docker(['network', 'create', '-d', 'tsnet', '--subnet', '10.81.19.0/24', 'ov3']);
    t.equal(good.code, 0, `control: the same command with a free subnet works: ${good.stderr.trim()}`);
    await e.docker(['network', 'rm', 'ov3', 'ov1']);
  });

  // ---------- 3. isolation ----------

  await scenario('isolation: two tsnet networks; a container on both reaches both', async (t) => {
    const a1 = await ip4('a1', 'ea');
    const b1 = await ip4('b1', 'eb');
    await reach(t, `a2 -> a1 ${a1}:80 (same network)`, () => http('a2', a1, 80, 'a1'));
    await reach(t, `b2 -> b1 ${b1}:80 (same network)`, () => http('b2', b1, 80, 'b1'));
    await denied(t, `a2 (ea) -> b1 ${b1}:80 (eb)`, () => http('a2', b1, 80, 'b1'), [NOT_ALLOWED]);
    await denied(t, `b2 (eb) -> a1 ${a1}:80 (ea)`, () => http('b2', a1, 80, 'a1'), [NOT_ALLOWED]);
    await denied(t, `a2 ping b1 ${b1}`, () => pingP('a2', b1), [NOT_ALLOWED]);
    await runSleeper(e, 'a3', ['--network', 'ea']);
    await e.dockerOk(['network', 'connect', 'eb', 'a3']);
    await reach(t, 'a3 (on ea and eb) -> a1:80', () => http('a3', a1, 80, 'a1'));
    await reach(t, 'a3 (on ea and eb) -> b1:80', () => http('a3', b1, 80, 'b1'));
    await reach(t, 'b1 -> a3 (ping on eb)', async () => pingP('b1', await ip4('a3', 'eb')));
  });

  await scenario('isolation: a Docker bridge network and a tsnet network, both directions', async (t) => {
    const a1 = await ip4('a1', 'ea');
    const d1 = await ip4('d1', 'dbr');
    await reach(t, `d2 -> d1 ${d1}:80 (inside the Docker network)`, () => http('d2', d1, 80, 'd1'));
    await reach(t, `d1 -> a1 through its published port ${ENGINE_IP}:8080 (same path, allowed)`, () => http('d1', ENGINE_IP, 8080, 'a1'));
    await denied(t, `d1 (dbr) -> a1 ${a1}:80 (ea)`, () => http('d1', a1, 80, 'a1'), [NOT_ALLOWED, TO_DOCKER]);
    await reach(t, `a2 -> the outside (a2 can send through the host)`, () => egress('a2'));
    await denied(t, `a2 (ea) -> d1 ${d1}:80 (dbr)`, () => http('a2', d1, 80, 'd1'), [TO_DOCKER, NOT_ALLOWED]);
  });

  await scenario('isolation: from outside straight to a container address (routed, not published)', async (t) => {
    const a1 = await ip4('a1', 'ea');
    const unroute = await o.routeVia('10.81.1.0/24');
    try {
      await reach(t, `outside -> a1's published port ${ENGINE_IP}:8080`, () => fromOutside(ENGINE_IP, 8080, 'a1'));
      await denied(t, `outside -> a1 ${a1}:80 (routed via ${ENGINE_IP})`, () => fromOutside(a1, 80, 'a1'), [NOT_ALLOWED]);
      // the "changed by" column: tsnet.allow=CIDR
      const set = await policy(['set', 'ea', `${OUTSIDE_IP} tcp/80`]);
      t.equal(set.code, 0, `tsnet policy set ea '${OUTSIDE_IP} tcp/80': ${(set.stdout + set.stderr).trim()}`);
      await reach(t, `with the policy, outside -> a1 ${a1}:80 works`, () => fromOutside(a1, 80, 'a1'), 10_000);
      await denied(t, `with the policy, outside -> a1 ${a1}:81 (port not in the policy)`, () => fromOutside(a1, 81, 'a1'), [NOT_ALLOWED]);
      const clr = await policy(['clear', 'ea']);
      t.equal(clr.code, 0, `tsnet policy clear ea: ${(clr.stdout + clr.stderr).trim()}`);
      await denied(t, `policy cleared: outside -> a1 ${a1}:80`, () => fromOutside(a1, 80, 'a1'), [NOT_ALLOWED]);
    } finally {
      await unroute();
    }
  });

  await scenario('isolation over IPv6: two --ipv6 tsnet networks; IPv6 egress and a published port', async (t) => {
    await Promise.all([
      net('e6a', ['10.81.12.0/24', 'fd81:12::/64'], ['--ipv6']),
      net('e6b', ['10.81.13.0/24', 'fd81:13::/64'], ['--ipv6']),
    ]);
    await Promise.all([
      server('v6a1', ['--network', 'e6a', '-p', '8086:80'], [80]),
      runSleeper(e, 'v6a2', ['--network', 'e6a']),
      server('v6b1', ['--network', 'e6b'], [80]),
    ]);
    const a1 = await ip6('v6a1', 'e6a');
    const b1 = await ip6('v6b1', 'e6b');
    t.match(a1, /^fd81:12::/, `v6a1 has ${a1}`);
    t.match(b1, /^fd81:13::/, `v6b1 has ${b1}`);
    await reach(t, `v6a2 -> v6a1 [${a1}]:80 (same network)`, () => http('v6a2', a1, 80, 'v6a1'), 10_000);
    await reach(t, `v6b1 -> itself [${b1}]:80 (it serves on IPv6)`, () => http('v6b1', b1, 80, 'v6b1'), 10_000);
    await denied(t, `v6a2 (e6a) -> v6b1 [${b1}]:80 (e6b)`, () => http('v6a2', b1, 80, 'v6b1'), [NOT_ALLOWED], true);
    await reach(t, `control: v6a2 ping -6 v6a1 (same network)`, () => pingP('v6a2', a1, true), 5_000);
    await denied(t, `v6b1 (e6b) ping -6 v6a1 (e6a)`, () => pingP('v6b1', a1, true), [NOT_ALLOWED], true);
    const eg = await (async () => {
      const t0 = Date.now();
      let r = await egress('v6a2', OUTSIDE_IP6);
      while (!r.ok && Date.now() - t0 < 5_000) r = await egress('v6a2', OUTSIDE_IP6);
      return r;
    })();
    t.ok(eg.ok, `v6a2 reaches the outside server over IPv6: ${eg.detail}`);
    t.equal(eg.src, ENGINE_IP6, `the outside saw the host's IPv6 address ${ENGINE_IP6} (masquerade)`);
    await reach(t, `outside -> [${ENGINE_IP6}]:8086 reaches v6a1`, () => fromOutside(ENGINE_IP6, 8086, 'v6a1'), 5_000);
    await reach(t, `outside -> ${ENGINE_IP}:8086 reaches v6a1`, () => fromOutside(ENGINE_IP, 8086, 'v6a1'));
    const unroute = await o.routeVia('fd81:12::/64');
    try {
      await denied(t, `outside -> v6a1 [${a1}]:80 (routed, not published)`, () => fromOutside(a1, 80, 'v6a1'), [NOT_ALLOWED], true);
    } finally {
      await unroute();
    }
  });

  // ---------- 4. internal ----------

  await scenario('internal network: no egress, no default route, traffic inside works, nothing published', async (t) => {
    await net('eint', ['10.81.5.0/24'], ['--internal']);
    await Promise.all([
      server('i1', ['--network', 'eint'], [80]),
      runSleeper(e, 'i2', ['--network', 'eint']),
      runSleeper(e, 'i3', ['--network', 'eint', '--cap-add', 'NET_ADMIN']),
      server('i4', ['--network', 'eint', '-p', '8087:80'], [80]),
    ]);
    const i1 = await ip4('i1', 'eint');
    const routes = await e.dockerOk(['exec', 'i2', 'ip', 'route']);
    t.notMatch(routes, /^default/m, `no default route in a container of an internal network:\n${routes}`);
    t.match(routes, /^10\.81\.5\.0\/24 /m, 'but the route to its own subnet');
    await reach(t, `i2 -> i1 ${i1}:80 (inside the internal network)`, () => http('i2', i1, 80, 'i1'));
    const eg = await egress('i2');
    t.notOk(eg.ok, `i2 cannot reach the outside (no route): ${eg.detail}`);
    // force a packet to the host anyway: i3 routes the outside via the bridge's address
    const gw = '10.81.5.1';
    await reach(t, `i3 -> the bridge address ${gw} (the link to the host works)`, () => pingP('i3', gw));
    await e.dockerOk(['exec', 'i3', 'ip', 'route', 'add', '198.51.100.0/24', 'via', gw]);
    const hits0 = hitMark(o.server);
    await denied(t, `i3 (internal, with a route via ${gw}) -> the outside server`, () => egress('i3'), [INTERNAL]);
    t.same(hitsOf(o.server, hits0), [], 'the outside server saw nothing');
    await reach(t, 'control: a2 (not internal) -> the outside server', () => egress('a2'));
    await denied(t, `a2 (ea) -> i1 ${i1}:80 (internal)`, () => http('a2', i1, 80, 'i1'), [INTERNAL, NOT_ALLOWED]);
    const pub = await o.http(ENGINE_IP, 8087, 'i4');
    t.notOk(pub.ok, `-p 8087:80 on an internal network publishes nothing: outside -> ${ENGINE_IP}:8087 ${pub.err}`);
    t.same((await natRules(e)).filter((l) => /--dport 8087\b/.test(l)), [], 'no DNAT rule for 8087');
    const bad = await e.docker(['network', 'create', ...TS, '--internal', '--subnet', '10.81.14.0/24', '-o', 'tsnet.allow=ea tcp/80', 'eintpol']);
    t.not(bad.code, 0, `an internal network with a policy is refused: ${bad.stderr.trim()}`);
    if (bad.code === 0) await e.docker(['network', 'rm', 'eintpol']);
  });

  // ---------- 5. ICC off ----------

  await scenario('enable_icc=false: containers of the network cannot reach each other; egress and published ports work', async (t) => {
    await net('eicc', ['10.81.6.0/24'], ['-o', 'com.docker.network.bridge.enable_icc=false']);
    await Promise.all([server('n1', ['--network', 'eicc', '-p', '8088:80'], [80]), runSleeper(e, 'n2', ['--network', 'eicc'])]);
    const n1 = await ip4('n1', 'eicc');
    await reach(t, 'n2 -> the bridge address 10.81.6.1 (its link works)', () => pingP('n2', '10.81.6.1'));
    await denied(t, `n2 ping n1 ${n1}`, () => pingP('n2', n1), [ICC]);
    await denied(t, `n2 -> n1 ${n1}:80`, () => http('n2', n1, 80, 'n1'), [ICC]);
    const eg = await egress('n2');
    t.ok(eg.ok && eg.src === ENGINE_IP, `n2 reaches the outside server (seen as ${eg.src}): ${eg.detail}`);
    await reach(t, `outside -> n1's published port ${ENGINE_IP}:8088`, () => fromOutside(ENGINE_IP, 8088, 'n1'));
  });

  // ---------- 6. policies ----------

  await scenario("policies: ui -> logic tcp/8080 -> db tcp/5432, and nothing else", async (t) => {
    await net('ui', ['10.81.7.0/24']);
    await net('logic', ['10.81.8.0/24'], ['-o', 'tsnet.allow=ui tcp/8080']);
    await net('db', ['10.81.9.0/24'], ['-o', 'tsnet.allow=logic tcp/5432']);
    await Promise.all([
      server('u1', ['--network', 'ui'], [80]),
      runSleeper(e, 'u2', ['--network', 'ui']),
      server('l1', ['--network', 'logic'], [8080, 9090]),
      server('db1', ['--network', 'db'], [5432]),
    ]);
    const [u1, l1, db1] = [await ip4('u1', 'ui'), await ip4('l1', 'logic'), await ip4('db1', 'db')];
    const t0 = Date.now();
    await reach(t, `u2 (ui) -> l1 ${l1}:8080 (logic allows ui tcp/8080)`, () => http('u2', l1, 8080, 'l1'), 15_000);
    figures.policyEffectiveMs = Date.now() - t0;
    await denied(t, `u2 (ui) -> l1 ${l1}:9090 (logic)`, () => http('u2', l1, 9090, 'l1'), [NOT_ALLOWED]);
    await reach(t, `l1 (logic) -> db1 ${db1}:5432 (db allows logic tcp/5432)`, () => http('l1', db1, 5432, 'db1'), 15_000);
    await denied(t, `u2 (ui) -> db1 ${db1}:5432 (db)`, () => http('u2', db1, 5432, 'db1'), [NOT_ALLOWED]);
    await reach(t, `u2 -> u1 ${u1}:80 (inside ui)`, () => http('u2', u1, 80, 'u1'));
    await denied(t, `db1 (db) -> u1 ${u1}:80 (ui)`, () => http('db1', u1, 80, 'u1'), [NOT_ALLOWED]);
    await denied(t, `l1 (logic) -> u1 ${u1}:80 (replies are allowed, new connections back are not)`, () => http('l1', u1, 80, 'u1'), [NOT_ALLOWED]);
    const show = await policy(['show', 'logic']);
    t.match(show.stdout, /ui tcp\/8080/, `tsnet policy show logic: ${(show.stdout + show.stderr).trim()}`);
  });

  await scenario('policies: tsnet policy set changes them at runtime', async (t) => {
    const [l1, db1] = [await ip4('l1', 'logic'), await ip4('db1', 'db')];
    await reach(t, `before: l1 -> db1 ${db1}:5432`, () => http('l1', db1, 5432, 'db1'));
    const t0 = Date.now();
    const set = await policy(['set', 'db', 'ui tcp/5432']);
    t.equal(set.code, 0, `tsnet policy set db 'ui tcp/5432' (${set.ms} ms): ${(set.stdout + set.stderr).trim()}`);
    await reach(t, `after: u2 (ui) -> db1 ${db1}:5432`, () => http('u2', db1, 5432, 'db1'), 10_000);
    figures.policySetToTrafficMs = Date.now() - t0;
    await denied(t, `after: l1 (logic) -> db1 ${db1}:5432`, () => http('l1', db1, 5432, 'db1'), [NOT_ALLOWED]);
    await reach(t, `logic's own policy is untouched: u2 -> l1 ${l1}:8080`, () => http('u2', l1, 8080, 'l1'));
    const show = await policy(['show', 'db']);
    t.match(show.stdout, /ui tcp\/5432/, `tsnet policy show db: ${show.stdout.trim()}`);
    t.notMatch(show.stdout, /logic/, 'the old rule is gone');
    const bad = await policy(['set', 'db', 'ui tcp/99999']);
    t.not(bad.code, 0, 'tsnet policy set with port 99999 fails');
    t.match(bad.stdout + bad.stderr, /99999/, `and names the port: ${(bad.stdout + bad.stderr).trim()}`);
    await reach(t, 'the policy in force is unchanged by the bad set: u2 -> db1:5432', () => http('u2', db1, 5432, 'db1'));
  });

  await scenario('policies: a source network that appears later', async (t) => {
    await net('late-tgt', ['10.81.11.0/24'], ['-o', 'tsnet.allow=latenet tcp/7000']);
    await server('lt1', ['--network', 'late-tgt'], [7000, 7001]);
    const lt1 = await ip4('lt1', 'late-tgt');
    await net('latenet', ['10.81.10.0/24']);
    await runSleeper(e, 'ln1', ['--network', 'latenet']);
    const t0 = Date.now();
    const ok = await reach(t, `ln1 (latenet, created after the policy naming it) -> lt1 ${lt1}:7000 within 15 s`, () => http('ln1', lt1, 7000, 'lt1'), 15_000);
    figures.lateNetworkAllowedMs = ok ? Date.now() - t0 : 'never';
    t.comment(`the policy followed the new network after ${Date.now() - t0} ms`);
    await denied(t, `ln1 (latenet) -> lt1 ${lt1}:7001 (not in the policy)`, () => http('ln1', lt1, 7001, 'lt1'), [NOT_ALLOWED]);
    await denied(t, `a2 (ea) -> lt1 ${lt1}:7000 (ea is not named)`, () => http('a2', lt1, 7000, 'lt1'), [NOT_ALLOWED]);
  });

  await scenario('policies: a bad tsnet.allow is refused at network create and creates nothing', async (t) => {
    const before = await snapshotHost(e);
    const sets0 = await ipsetSave(e);
    const r = await e.docker(['network', 'create', ...TS, '--subnet', '10.81.15.0/24', '-o', 'tsnet.allow=ui tcp/99999', 'badpol']);
    t.not(r.code, 0, 'docker network create with tsnet.allow=ui tcp/99999 fails');
    t.match(r.stderr, /99999/, `the error names the problem: ${r.stderr.trim()}`);
    const nets = (await e.dockerOk(['network', 'ls', '--format', '{{.Name}}'])).split('\n');
    t.notOk(nets.includes('badpol'), 'no network badpol');
    const after = await snapshotHost(e);
    t.same(diffSnapshots(before, after), [], 'links (no new bridge), iptables, ip6tables and store unchanged');
    t.same(await ipsetSave(e), sets0, 'ipsets unchanged');
    // positive control: the same command with a valid policy works
    const good = await e.docker(['network', 'create', ...TS, '--subnet', '10.81.15.0/24', '-o', 'tsnet.allow=ui tcp/9999', 'goodpol']);
    t.equal(good.code, 0, `the same create with tcp/9999 works: ${good.stderr.trim()}`);
    if (good.code === 0) await e.dockerOk(['network', 'rm', 'goodpol']);
  });

  // ---------- 7. dockerd restart ----------

  await scenario('dockerd restart: traffic flows again, isolation holds, tsnet decides before Docker', async (t) => {
    const always = ['--restart', 'always'];
    await Promise.all([
      server('r1', ['--network', 'ea', '-p', '8070:80', ...always], [80]),
      server('r2', ['--network', 'eb', ...always], [80]),
      e.dockerOk(['run', '-d', '--init', '--name', 'r3', '--network', 'ea', ...always, BB, 'sleep', '3600']),
      e.dockerOk(['run', '-d', '--init', '--name', 'rd', '--network', 'dbr', ...always, BB, 'sleep', '3600']),
    ]);
    let r1 = await ip4('r1', 'ea');
    let r2 = await ip4('r2', 'eb');
    await reach(t, `before: r3 -> r1 ${r1}:80`, () => http('r3', r1, 80, 'r1'));
    await denied(t, `before: r3 (ea) -> r2 ${r2}:80 (eb)`, () => http('r3', r2, 80, 'r2'), [NOT_ALLOWED]);
    const t0 = Date.now();
    await stopDockerd(e, { keepNetns: true });
    await startDockerd(e);
    const t1 = Date.now();
    let last = '';
    const back = await waitFor(
      async () => {
        const st = await e.dockerOk(['inspect', '-f', '{{.Name}} {{.State.Status}} {{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}', 'r1', 'r2', 'r3', 'rd']);
        // addresses may change across the restart (Docker gives the endpoints up at shutdown)
        r1 = await ip4('r1', 'ea');
        r2 = await ip4('r2', 'eb');
        const h = await http('r3', r1, 80, 'r1');
        last = `${st.replace(/\n/g, ', ')}; r3 -> r1 ${r1}: ${h.detail}`;
        return !/exited|created|restarting/.test(st) && h.ok;
      },
      { timeoutMs: 60_000, intervalMs: 300, what: 'r1-r3 and rd running, r3 reaching r1' },
    ).catch(() => false);
    t.ok(back, `after the dockerd restart r3 reaches r1 again (${Date.now() - t1} ms after dockerd answered, ${Date.now() - t0} ms in all): ${last}`);
    figures.dockerdRestartToTrafficMs = Date.now() - t0;
    t.ok(ts!.running, 'tsnet kept running');
    const fwd = (await nsExecOk(e, ['iptables', '-w', '-S', 'FORWARD'])).split('\n').filter((l) => l.startsWith('-A FORWARD'));
    const user = (await nsExecOk(e, ['iptables', '-w', '-S', 'DOCKER-USER'])).split('\n').filter((l) => l.startsWith('-A DOCKER-USER'));
    const first = fwd[0] ?? '';
    const tsnetFirst = /-j TSNET-FORWARD\b/.test(first) || (/-j DOCKER-USER\b/.test(first) && /-j TSNET-FORWARD\b/.test(user[0] ?? ''));
    t.ok(tsnetFirst, `tsnet's chain is the first decision of FORWARD:\n  FORWARD: ${fwd.slice(0, 4).join('\n           ')}\n  DOCKER-USER: ${user.slice(0, 3).join('\n               ')}`);
    await reach(t, `after: outside -> r1's published port ${ENGINE_IP}:8070`, () => fromOutside(ENGINE_IP, 8070, 'r1'), 10_000);
    const eg = await egress('r3');
    t.ok(eg.ok && eg.src === ENGINE_IP, `after: r3 reaches the outside (seen as ${eg.src})`);
    await denied(t, `after: r3 (ea) -> r2 ${r2}:80 (eb)`, () => http('r3', r2, 80, 'r2'), [NOT_ALLOWED]);
    await denied(t, `after: rd (Docker bridge) -> r1 ${r1}:80`, () => http('rd', r1, 80, 'r1'), [NOT_ALLOWED, TO_DOCKER]);
    await reach(t, `after: rd -> r1 through its published port ${ENGINE_IP}:8070`, () => http('rd', ENGINE_IP, 8070, 'r1'));
  }, "a dockerd restart (Docker rewrites its iptables rules as it starts)");
}
