// Nothing is spawned on a container's path (issue 12): on a real private dockerd (engine "nospawn"),
// with tsnet (the built dist/cli.js, as `serve` runs) under `strace -f -e trace=execve,execveat`,
// containers without published ports start and go without tsnet exec'ing a single process. The
// positive control runs on the same network under the same tracer: a container with a published
// port makes tsnet program DNAT with iptables-restore, which the tracer must see.
// Run: flock /tmp/tsnet-e2e.lock npx tap run --timeout=900 test/e2e/no-spawn.test.ts   (as root)
import t, { type Test } from 'tap';
import { existsSync } from 'node:fs';
import {
  BB,
  destroyEngine,
  ensureBusyboxImage,
  ip4InCidr,
  nsExecOk,
  containerIPv4,
  removeAllContainersAndNetworks,
  runSleeper,
  startEngine,
  startTsnet,
  TSNET_CLI,
  type Engine,
  type TsnetHandle,
} from './lib/index.js';
import { expectIdle, withDiagnostics } from './lib/scenario.js';
import { processes, traceSpawns, type SpawnTrace } from './lib/spawn-trace.js';

t.setTimeout(600_000);

const TS = ['-d', 'tsnet', '--ipam-driver', 'tsnet'];
const SUBNET = '10.77.0.0/24';
/** Containers started (and removed) under the tracer: enough that a spawn per start cannot hide. */
const N = 5;
/** The positive control's published host port (in the engine's own netns). */
const HOST_PORT = 18080;

let E: Engine | undefined;
let ts: TsnetHandle | undefined;
/** The tracer attached right now, so a failing scenario still detaches it. */
let tracing: SpawnTrace | undefined;

/** What tsnet exec'd (one entry per process) while `fn` ran, traced with strace. */
async function spawnedDuring(pid: number, fn: () => Promise<void>): Promise<Array<{ pid: number; file: string }>> {
  const trace = await traceSpawns(pid, 'strace');
  tracing = trace;
  try {
    await fn();
  } catch (err) {
    tracing = undefined;
    await trace.stop().catch(() => undefined);
    throw err;
  }
  tracing = undefined;
  return processes(await trace.stop());
}

const list = (ps: Array<{ pid: number; file: string }>) => (ps.length ? ps.map((p) => `${p.file} (pid ${p.pid})`).join(', ') : 'none');

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

t.teardown(async () => {
  await tracing?.stop().catch(() => undefined);
  if (E) {
    await removeAllContainersAndNetworks(E).catch(() => undefined);
    await ts?.stop().catch(() => undefined);
    await destroyEngine(E);
  }
});

await t.test('setup: engine, bb image, tsnet, a tsnet network', async (t) => {
  t.ok(existsSync(TSNET_CLI), `${TSNET_CLI} is built`);
  if (!existsSync(TSNET_CLI)) return;
  E = await startEngine('nospawn');
  await ensureBusyboxImage(E);
  // The periodic reconcile observes the firewall with iptables and ipset on its own timer; off, so
  // a pass that happens to fall inside a traced window cannot pass for a container's spawn.
  ts = await startTsnet(E, { env: { TSNET_RECONCILE_INTERVAL: '0' } });
  t.ok(ts.running, `tsnet running (pid ${ts.pid})`);
  await E.dockerOk(['network', 'create', ...TS, '--subnet', SUBNET, 'tnet']);
});

if (!E || !ts) {
  t.fail('setup failed: the other scenarios are not run');
} else {
  const e: Engine = E;
  const pid = ts.pid;
  const names = Array.from({ length: N }, (_, i) => `c${i}`);

  await scenario(`${N} containers without ports start: tsnet spawns no process`, async (t) => {
    const ps = await spawnedDuring(pid, async () => {
      for (const c of names) await runSleeper(e, c, ['--network', 'tnet']);
    });
    // Not vacuous: each start went through tsnet (an address from its IPAM on its network).
    for (const c of names) {
      const ip = await containerIPv4(e, c);
      t.ok(ip4InCidr(ip, SUBNET), `${c} has ${ip} from tsnet's ${SUBNET}`);
    }
    t.same(ps, [], `tsnet spawned no process during ${N} container starts (seen: ${list(ps)})`);
  });

  await scenario(`the ${N} containers go: tsnet spawns no process`, async (t) => {
    const ps = await spawnedDuring(pid, async () => {
      for (const c of names) await e.dockerOk(['rm', '-f', c]);
    });
    t.equal(await e.dockerOk(['network', 'inspect', '-f', '{{len .Containers}}', 'tnet']), '0', 'no container left on tnet');
    t.same(ps, [], `tsnet spawned no process while ${N} containers were removed (seen: ${list(ps)})`);
  });

  await scenario('positive control: a container with a published port makes tsnet spawn iptables-restore, and the tracer sees it', async (t) => {
    const dnat = async () => (await nsExecOk(e, ['iptables-save', '-t', 'nat'])).split('\n').filter((l) => l.includes(`--dport ${HOST_PORT}`));
    t.same(await dnat(), [], `no DNAT rule for host port ${HOST_PORT} before`);
    const ps = await spawnedDuring(pid, async () => {
      await runSleeper(e, 'published', ['--network', 'tnet', '-p', `127.0.0.1:${HOST_PORT}:8080`]);
    });
    // `docker port` cannot show a remote driver's ports: the engine's nat table says it is published.
    t.ok((await dnat()).length > 0, `a DNAT rule for host port ${HOST_PORT} is in place`);
    t.ok(ps.length > 0, `tsnet spawned ${ps.length} process(es) for the published port: ${list(ps)}`);
    t.ok(ps.some((p) => /iptables-restore$/.test(p.file)), 'among them iptables-restore (the DNAT rule)');
    await e.dockerOk(['rm', '-f', 'published']);
  });

  await scenario('teardown: nothing left', async (t) => {
    t.same(await removeAllContainersAndNetworks(e), [], 'all containers and networks removed');
  });
}
