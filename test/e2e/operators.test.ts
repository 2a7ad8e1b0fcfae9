// The operator commands end to end (issue 15): a private engine "op" (netns tse-op), real
// containers, the built plugin as a legacy plugin started with --reconcile-interval 0 (no
// automatic repair, so drift stays until doctor --fix) and a garbage collection interval of an
// hour (nothing is collected behind the test's back). The warning after five minutes of Docker's
// silence is docker-silence.test.ts (real time, so scripts/test.sh runs it beside other stages).
// Scenarios: a bridge+edge setup that doctor finds clean; status with container names and
// published ports; a bridge deleted, a chain flushed, a set member lost and a stale lease, each
// found (exit 1) and repaired by --fix (then exit 0); status and doctor with the daemon stopped;
// one request ID per request in the log. About 1 minute.
// Run: npm run build && flock /tmp/tsnet-e2e.lock npx tap run --timeout=900 test/e2e/operators.test.ts  (as root)
import t, { type Test } from 'tap';
import { copyFileSync, existsSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { XMLValidator } from 'fast-xml-parser';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  destroyEngine,
  ensureBusyboxImage,
  nsExec,
  nsExecOk,
  runSleeper,
  sleep,
  startEngine,
  startTsnet,
  SYS_PATH,
  TSNET_CLI,
  waitFor,
  type Engine,
  type RunResult,
  type TsnetHandle,
  type TsnetOptions,
} from './lib/index.js';
import { withDiagnostics } from './lib/scenario.js';

t.setTimeout(900_000);

const TS = ['-d', 'tsnet', '--ipam-driver', 'tsnet'];
const SUBNET = '10.31.0.0/24';
const POOL = `LocalDefault/${SUBNET}`;
const METRICS = 'http://127.0.0.1:9464/metrics';
const OPTS: TsnetOptions = { extraArgs: ['--reconcile-interval', '0', '--metrics-address', '127.0.0.1:9464'], env: { TSNET_GC_INTERVAL: '3600' } };
/** Where the topology picture of this lab is left (docs/topology-example.svg is a copy of one). */
const TOPOLOGY_EXAMPLE = join(tmpdir(), 'tsnet-topology-example.svg');

/** The value of one sample (`name{labels} value`) in a scrape; undefined when absent. */
function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

let E: Engine | undefined;
let ts: TsnetHandle | undefined;
/** Real outputs for the README, printed at the end. */
const captured: Record<string, string> = {};

function scenario(name: string, fn: (t: Test) => Promise<void>) {
  return t.test(name, (tt) => withDiagnostics(tt, fn, (tt) => {
    if (!E) return;
    tt.comment(`--- tail of ${E.stateDir}/tsnet.log:\n${ts?.logTail(40) ?? '(tsnet not started)'}`);
    tt.comment(`--- tail of ${E.logPath}:\n${E.dockerdLogTail(12)}`);
  }));
}

/** `tsnet ARGS` in the engine's netns (doctor reads the host there), with the daemon's flags. */
function tsnet(e: Engine, h: { socketPath: string; stateDir: string }, ...args: string[]): Promise<RunResult> {
  return nsExec(e, [process.execPath, TSNET_CLI, ...args, '--state-dir', h.stateDir, '--socket', h.socketPath], { timeoutMs: 120_000, env: { PATH: SYS_PATH } });
}

const withDocker = (e: Engine) => ['--docker-host', e.host];

function doctorJson(r: RunResult): { findings: Array<{ area: string; problem: string; fix: string; remedy: string }>; compared: string[]; notCompared: Array<{ what: string }>; fix?: unknown; exit: number } {
  try {
    return JSON.parse(r.stdout);
  } catch {
    throw new Error(`doctor --json printed no JSON (exit ${r.code}): ${r.stdout}\n${r.stderr}`);
  }
}

/** One kind of drift: made behind tsnet's back, found by doctor (exit 1), repaired by --fix (exit 0), checked in the kernel. */
async function driftCase(t: Test, e: Engine, what: string, make: () => Promise<void>, expect: RegExp, repaired: () => Promise<boolean>) {
  await make();
  t.notOk(await repaired(), `${what}: the drift is there`);
  const found = await tsnet(e, ts!, 'doctor', ...withDocker(e));
  t.equal(found.code, 1, `${what}: doctor exits 1\n${found.stdout}${found.stderr}`);
  t.match(found.stdout, expect, `${what}: doctor says it`);
  t.match(found.stdout, /fix: tsnet doctor --fix/, `${what}: with the command that fixes it`);
  captured[`doctor: ${what}`] ??= found.stdout;
  t.notOk(await repaired(), `${what}: doctor alone changed nothing (no automatic repair either)`);
  const fixed = await tsnet(e, ts!, 'doctor', '--fix', ...withDocker(e));
  t.equal(fixed.code, 0, `${what}: doctor --fix exits 0\n${fixed.stdout}${fixed.stderr}`);
  t.match(fixed.stdout, /fixing:\n  (reconcile|garbage collection) \(the daemon's\): (changed|removed) /, `${what}: --fix says what it did`);
  captured[`doctor --fix: ${what}`] ??= fixed.stdout;
  t.ok(await repaired(), `${what}: repaired in the kernel`);
  const after = await tsnet(e, ts!, 'doctor', ...withDocker(e));
  t.equal(after.code, 0, `${what}: doctor is clean again\n${after.stdout}`);
}

await t.test('setup: engine op with tsnet', async (t) => {
  t.ok(existsSync(TSNET_CLI), `${TSNET_CLI} is built`);
  if (!existsSync(TSNET_CLI)) return;
  E = await startEngine('op');
  await ensureBusyboxImage(E);
  ts = await startTsnet(E, OPTS);
  t.ok(ts.running, 'tsnet runs');
});

if (!E || !ts) {
  t.fail('setup failed: the other scenarios are not run');
  if (E) await destroyEngine(E);
} else {
  const e: Engine = E;
  t.teardown(async () => {
    await destroyEngine(e);
  });
  let bridge = '';

  await scenario('bridge and edge: networks, options, a policy, an internal network, published ports; doctor finds nothing', async (t) => {
    await e.dockerOk(['network', 'create', ...TS, '--subnet', SUBNET, '-o', 'com.docker.network.bridge.enable_icc=false', 'web']);
    await e.dockerOk(['network', 'create', ...TS, '--subnet', '10.32.0.0/24', 'ui']);
    await e.dockerOk(['network', 'create', ...TS, '--subnet', '10.33.0.0/24', '-o', 'tsnet.allow=ui tcp/8080', 'api']);
    await e.dockerOk(['network', 'create', ...TS, '--internal', 'vault']);
    await runSleeper(e, 'web1', ['--network', 'web', '-p', '8080:80', '-p', '127.0.0.1:5353:53/udp']);
    await runSleeper(e, 'web2', ['--network', 'web']);
    await runSleeper(e, 'ui1', ['--network', 'ui']);
    await runSleeper(e, 'api1', ['--network', 'api', '-p', '9090:8080']);
    await runSleeper(e, 'safe1', ['--network', 'vault']);
    await e.dockerOk(['network', 'connect', 'ui', 'web2']);
    const webId = await e.dockerOk(['network', 'inspect', '-f', '{{.Id}}', 'web']);
    bridge = `tsbr-${webId.slice(0, 10)}`;
    t.ok((await nsExecOk(e, ['ip', '-o', 'link', 'show', bridge])).includes(bridge), `web's bridge ${bridge} is there`);
    // GC and names learn the networks in the background: doctor judges records older than a minute.
    await sleep(1_000);
    const r = await tsnet(e, ts!, 'doctor', ...withDocker(e));
    t.equal(r.code, 0, `doctor exits 0\n${r.stdout}${r.stderr}`);
    t.match(r.stdout, /compared: the kernel with the store \(the daemon's reconcile, dry run, \d+ ms\); the store with Docker \(unix:\/\/\/tmp\/tse\/op\/docker.sock\); the host's routes/);
    t.match(r.stdout, /\nno problems found\.\n?$/);
    captured['doctor (clean)'] = r.stdout;
    const j = doctorJson(await tsnet(e, ts!, 'doctor', '--json', ...withDocker(e)));
    t.same(j.findings, [], 'no findings in --json either');
    t.same(j.notCompared, [], 'everything was compared');
  });

  await scenario('status: Docker names for networks and containers, addresses, MACs, published ports, health', async (t) => {
    const r = await tsnet(e, ts!, 'status', ...withDocker(e));
    t.equal(r.code, 0, r.stderr);
    captured.status = r.stdout;
    const web1 = await e.dockerOk(['inspect', '-f', '{{(index .NetworkSettings.Networks "web").IPAddress}}', 'web1']);
    t.match(r.stdout, /^daemon: running, pid \d+, version \S+, since /);
    t.match(r.stdout, /  reconcile  last .*, boot, \d+ ms: .*automatic repair off \(--reconcile-interval 0\)/);
    t.match(r.stdout, /  gc         running since .*; last pass .*: 0 record\(s\) Docker does not explain, 0 collected/);
    t.match(r.stdout, /  docker     answering at unix:\/\/\/tmp\/tse\/op\/docker.sock .*; names read from Docker's API now/);
    t.match(r.stdout, new RegExp(`\\n  web \\([0-9a-f]{12}\\)  bridge ${bridge}  mtu \\d+  10.31.0.0/24 gw 10.31.0.1  icc off\\n    options: com.docker.network.bridge.enable_icc=false\\n`));
    const line = r.stdout.split('\n').find((l) => l.startsWith('    web1  ')) ?? ''
    t.match(line, new RegExp(`^    web1  ${web1}/24  02:42:0a:1f:00:\\w\\w  tsv\\w+  joined  ports `), `web1: name, address, MAC, veth: ${line}`);
    t.match(line, ` 0.0.0.0:8080->${web1}:80/tcp`, 'its published TCP port');
    t.match(line, ` 127.0.0.1:5353->${web1}:53/udp`, 'and the UDP one on 127.0.0.1');
    t.match(r.stdout, /\n  api \([0-9a-f]{12}\)  bridge tsbr-\w+  mtu \d+  10.33.0.0\/24 gw 10.33.0.1\n(    options: .*\n)?    allow: ui tcp\/8080\n    api1  10.33.0.2\/24 .* ports 0.0.0.0:9090->10.33.0.2:8080\/tcp/);
    t.match(r.stdout, /\n  vault \([0-9a-f]{12}\)  bridge tsbr-\w+  mtu \d+  \S+ gw \S+  internal\n    safe1  /);
    t.match(r.stdout, /\n    web2  10.32.0.\d+\/24 /, 'web2 on ui too');
    const j = JSON.parse((await tsnet(e, ts!, 'status', '--json', ...withDocker(e))).stdout) as Record<string, any>;
    const ep = (j.endpoints as Array<Record<string, any>>).find((x) => x.container === 'web1');
    t.match(ep, { containerFrom: 'docker', address: `${web1}/24`, published: [{ hostPort: 8080, proto: 'tcp', containerPort: 80 }, { hostPort: 5353, proto: 'udp', hostIp: '127.0.0.1' }] }, '--json: the same, per endpoint');
    t.match(j.daemon.status, { gc: { state: 'running' }, docker: { state: 'answering' }, reconcile: { kind: 'boot' } });
    const cached = await tsnet(e, ts!, 'status');
    t.match(cached.stdout, /names as the daemon last saw them/, 'without --docker-host: the names the daemon cached');
    t.match(cached.stdout, /\n  web \([0-9a-f]{12}\)  bridge /, '... still the network names');
  });

  await scenario('metrics: scraped while a container starts and stops, the counters and gauges move', async (t) => {
    const scrape = () => nsExecOk(e, ['curl', '-sf', '--max-time', '10', METRICS]);
    const joins = (x: string) => sample(x, 'tsnet_request_duration_seconds_count{call="NetworkDriver.Join"}') ?? 0;
    const leaves = (x: string) => sample(x, 'tsnet_request_duration_seconds_count{call="NetworkDriver.Leave"}') ?? 0;
    const linkCreates = (x: string) => sample(x, 'tsnet_host_changes_total{kind="link",op="create"}') ?? 0;
    const before = await scrape();
    t.equal(sample(before, 'tsnet_networks'), 4, 'four networks');
    t.equal(sample(before, 'tsnet_endpoints{joined="true"}'), 6, 'six joined endpoints (web2 is on two networks)');
    t.equal(sample(before, 'tsnet_published_ports{proto="tcp"}'), 2);
    t.equal(sample(before, 'tsnet_reconcile_runs_total{trigger="boot"}'), 1);
    t.match(before, /\nprocess_cpu_seconds_total \d/, 'process metrics');
    const webLeased = `tsnet_ipam_pool_leased_addresses{pool="${SUBNET}",network="web"}`;
    const leased = sample(before, webLeased);
    t.ok(leased !== undefined && leased >= 3, `web's pool usage by network name: ${leased}`);
    await runSleeper(e, 'm1', ['--network', 'web', '-p', '8282:80']);
    const up = await scrape();
    t.equal(joins(up), joins(before) + 1, 'one more Join timed');
    t.ok(linkCreates(up) > linkCreates(before), 'the veth created on the host');
    t.equal(sample(up, 'tsnet_endpoints{joined="true"}'), 7);
    t.equal(sample(up, 'tsnet_published_ports{proto="tcp"}'), 3);
    t.equal(sample(up, webLeased), (leased ?? 0) + 1, 'one more address leased in web');
    await e.dockerOk(['rm', '-f', 'm1']);
    const down = await waitFor(async () => { const x = await scrape(); return sample(x, 'tsnet_endpoints{joined="true"}') === 6 ? x : undefined; }, { timeoutMs: 20_000, intervalMs: 500, what: 'the endpoint gone from the metrics' });
    t.equal(leaves(down), leaves(before) + 1, 'one more Leave timed');
    t.equal(sample(down, 'tsnet_published_ports{proto="tcp"}'), 2, 'its port unpublished');
    t.ok((sample(down, 'tsnet_host_changes_total{kind="link",op="delete"}') ?? 0) >= 1, 'the veth deleted on the host');
    t.ok((sample(down, 'tsnet_host_apply_duration_seconds_count') ?? 0) > 0, 'host changes timed');
    captured.metrics = down.split('\n').filter((l) => l.startsWith('tsnet_') && !l.includes('_bucket')).join('\n');
  });

  await scenario('topology: an SVG laid out by Graphviz, valid XML, with every container and network by name', async (t) => {
    const out = join(ts!.stateDir, 'topology.svg');
    const r = await tsnet(e, ts!, 'topology', '-o', out, ...withDocker(e));
    t.equal(r.code, 0, `topology exits 0: ${r.stderr}`);
    const svg = readFileSync(out, 'utf8');
    t.equal(XMLValidator.validate(svg), true, 'the SVG parses as XML');
    for (const c of ['web1', 'web2', 'ui1', 'api1', 'safe1']) t.match(svg, `>container ${c}</text>`, `container ${c} is in the picture`);
    for (const n of ['web', 'ui', 'api', 'vault']) t.match(svg, `>network ${n}</text>`, `network ${n} is in the picture`);
    t.match(svg, '>published *:8080&#45;&gt;80/tcp</text>', "web1's published port");
    t.match(svg, '>may reach tcp/8080</text>', 'the policy arrow from ui to api');
    const dot = await tsnet(e, ts!, 'topology', '--format', 'dot', ...withDocker(e));
    t.match(dot.stdout, /^digraph tsnet \{/);
    copyFileSync(out, TOPOLOGY_EXAMPLE);
    t.comment(`the picture: ${TOPOLOGY_EXAMPLE}`);
  });

  await scenario('drift behind tsnet\'s back: found by doctor, repaired by doctor --fix', async (t) => {
    const linkOk = async () => {
      const r = await nsExec(e, ['ip', '-o', 'addr', 'show', 'dev', bridge]);
      return r.code === 0 && r.stdout.includes('10.31.0.1/24');
    };
    await driftCase(t, e, 'a bridge deleted', async () => { await nsExecOk(e, ['ip', 'link', 'delete', bridge]); },
      new RegExp(`the bridge ${bridge} of network web \\([0-9a-f]{12}\\) is missing`), linkOk);
    const forward = async () => (await nsExecOk(e, ['iptables', '-S', 'TSNET-FORWARD'])).split('\n').filter((l) => l.startsWith('-A')).length;
    const rules = await forward();
    t.ok(rules > 0, `TSNET-FORWARD has ${rules} rules`);
    await driftCase(t, e, 'a chain flushed', async () => { await nsExecOk(e, ['iptables', '-F', 'TSNET-FORWARD']); },
      /tsnet's firewall chains \(TSNET-\*\), the jumps to them or its ipsets are not as tsnet made them/, async () => (await forward()) === rules);
    const member = `${SUBNET},${bridge}`;
    const hasMember = async () => (await nsExec(e, ['ipset', 'test', 'tsnet-src4', member])).code === 0;
    t.ok(await hasMember(), `tsnet-src4 holds ${member}`);
    await driftCase(t, e, 'a set member lost', async () => { await nsExecOk(e, ['ipset', 'del', 'tsnet-src4', member]); },
      new RegExp(`the ipset tsnet-src4 lacks the member ${member.replace(/[./]/g, '\\$&')} \\(network web`), hasMember);
  });

  await scenario('a stale lease; status and doctor with the daemon stopped', async (t) => {
    const file = join(ts!.stateDir, 'store', 'leases', `${encodeURIComponent(`${POOL}#10.31.0.77`)}.json`);
    await ts!.stop();
    const down = await tsnet(e, ts!, 'status');
    t.equal(down.code, 0, `status without the daemon: ${down.stderr}`);
    t.match(down.stdout, /^daemon: not running \(no socket file at .*\); what follows is what the store holds/);
    t.match(down.stdout, /  reconcile  unknown: only the running daemon knows/);
    t.match(down.stdout, /\n  web \([0-9a-f]{12}\)  bridge /, 'the networks, by their cached names');
    captured['status (daemon stopped)'] = down.stdout;
    const lease = { poolId: POOL, address: '10.31.0.77', kind: 'endpoint', owner: 'ghost', createdAt: new Date(Date.now() - 10 * 60_000).toISOString() };
    await writeFile(file, JSON.stringify(lease), { mode: 0o600 });
    const offline = await tsnet(e, ts!, 'doctor');
    t.equal(offline.code, 1, `doctor without the daemon finds the lease from the store alone\n${offline.stdout}${offline.stderr}`);
    t.match(offline.stdout, /compared: the kernel with the store \(a dry-run reconcile here, \d+ ms\)/, 'the kernel compared by a dry run in the command');
    t.match(offline.stdout, /address 10.31.0.77 of network web \([0-9a-f]{12}\) is leased to ghost, but no endpoint of tsnet's has it/);
    t.notMatch(offline.stdout, /\[kernel\]|\[firewall\]/, 'and no kernel drift (ports held by the daemon are not judged without it)');
    captured['doctor (daemon stopped)'] = offline.stdout;
    const cannot = await tsnet(e, ts!, 'doctor', '--fix');
    t.equal(cannot.code, 1, 'doctor --fix without the daemon: 1');
    t.match(cannot.stdout, /not fixed: tsnet is not running .* it reconciles the host with the store at boot/);
    t.ok(existsSync(file), 'and nothing was removed');
    ts = await startTsnet(e, OPTS);
    await driftCase(t, e, 'a stale lease', async () => {}, /address 10.31.0.77 of pool LocalDefault\/10.31.0.0\/24 is leased, but no container, gateway or aux address of Docker's has it/,
      async () => !existsSync(file));
  });

  await scenario('logs: one request ID on every line of a request; each host change logged once', async (t) => {
    const log = readFileSync(ts!.logPath, 'utf8').split('\n').flatMap((l) => {
      try {
        return [JSON.parse(l) as Record<string, unknown>];
      } catch {
        return [];
      }
    });
    const from = log.length;
    await runSleeper(e, 'late1', ['--network', 'web', '-p', '8181:80']);
    await e.dockerOk(['rm', '-f', 'late1']);
    await sleep(500);
    const lines = readFileSync(ts!.logPath, 'utf8').split('\n').flatMap((l) => {
      try {
        return [JSON.parse(l) as Record<string, unknown>];
      } catch {
        return [];
      }
    }).slice(from);
    const changes = lines.filter((l) => typeof l.host === 'string');
    const kinds = new Set(changes.map((c) => c.host));
    for (const k of ['link.created', 'firewall.dnat', 'port.released', 'link.deleted']) t.ok(kinds.has(k), `the run and rm logged ${k} (${[...kinds].join(', ')})`);
    t.ok(lines.some((l) => l.msg === 'port published' && l.hostPort === 8181 && typeof l.reqId === 'string'), 'the port reservation is logged with its request as "port published"');
    t.same(changes.filter((c) => c.reqId === undefined && c.component === undefined), [], 'every host change names its request (or its background component)');
    const seen = new Set<string>();
    const twice: string[] = [];
    for (const c of changes) {
      const { time: _time, ...rest } = c;
      const k = JSON.stringify(rest);
      if (seen.has(k)) twice.push(k);
      seen.add(k);
    }
    t.same(twice, [], 'no host change is logged twice');
    const byReq = new Map<string, Set<string>>();
    for (const l of lines) if (typeof l.reqId === 'string') byReq.set(l.reqId, new Set([...(byReq.get(l.reqId) ?? []), String(l.call ?? l.msg)]))
    t.ok(byReq.size >= 6, `the requests of one run and rm, each with its own ID (${byReq.size})`);
    t.ok(changes.some((c) => c.host === 'link.created' && typeof c.link === 'string' && typeof c.reqId === 'string'), 'a link creation names the link and its request');
    t.ok(changes.some((c) => c.host === 'firewall.dnat' && JSON.stringify(c.rules).includes('--dport 8181')), 'the DNAT change names its rule');
  });

  await scenario('clean up: doctor is clean after the containers and networks go', async (t) => {
    const ids = (await e.dockerOk(['ps', '-aq'])).split('\n').filter(Boolean);
    if (ids.length) await e.dockerOk(['rm', '-f', ...ids]);
    await e.dockerOk(['network', 'rm', 'web', 'ui', 'api', 'vault']);
    const r = await tsnet(e, ts!, 'doctor', ...withDocker(e));
    t.equal(r.code, 0, `doctor exits 0\n${r.stdout}`);
    t.notOk((await nsExec(e, ['iptables', '-S', 'TSNET-FORWARD'])).code === 0, "tsnet's chains went with its last network");
    for (const [what, text] of Object.entries(captured)) t.comment(`--- ${what}:\n${text}`);
  });
}
