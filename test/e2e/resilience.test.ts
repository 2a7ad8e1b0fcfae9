// tsnet resilience end to end (issue 4): a private engine "rs" (netns tse-rs) started in boot
// order (tsnet first, then dockerd, as ../shared/lab/FINDINGS.md §7), real containers (bb image),
// the built plugin as a legacy plugin. A second engine "rb" appears only in scenario 4.
// The scenarios run in sequence on one engine; each cleans up what it made, and every measured
// figure is written with t.comment (and summed up at the end). Order: 1 kill -9 during 50 runs,
// 1b Docker's late ReleaseAddress after GC, 6 100 parallel runs (1 and 10 networks), 5 GC racing
// creation, 2 ping while tsnet is down, 3a+4+3b removal while down / GC against a wrong engine,
// 8 boot reconcile of leftovers, 7 reboot and dockerd restart, teardown. About 5.5 minutes.
// Run: npx tsc -p tsconfig.json && npx tap run --timeout=900 test/e2e/resilience.test.ts  (as root)
// TSE_RS_ONLY=1b,7 runs only some scenarios (3b needs 3a and 4).
import t, { type Test } from 'tap';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  BB,
  containerIPv4,
  createEngineNetns,
  destroyEngine,
  diffSnapshots,
  ensureBusyboxImage,
  listLinks,
  median,
  nsExec,
  nsExecOk,
  pingOk,
  pluginPost,
  runOk,
  runSleeper,
  sleep,
  snapshotHost,
  startDockerd,
  startEngine,
  startTsnet,
  stopDockerd,
  tsnetLogPath,
  tsnetStateDir,
  TSNET_CLI,
  waitFor,
  type Engine,
  type HostSnapshot,
  type RunResult,
  type TsnetHandle,
  type TsnetOptions,
} from './lib/index.js';
import {
  bootReconcile,
  checkMesh,
  collectedItems,
  containersOf,
  countStoreEndpoints,
  deletedLinks,
  dockerTsnetView,
  explain,
  fileSize,
  linkDetails,
  listening,
  logSince,
  parsePing,
  pinnedEngine,
  readStore,
  removeEverything,
  storeDigest,
  tsnetStatus,
  type Explanation,
} from './lib/resilience.js';
import { expectIdle, withDiagnostics } from './lib/scenario.js';

t.setTimeout(900_000);

const TS = ['-d', 'tsnet', '--ipam-driver', 'tsnet'];
/** Figures for the summary at the end (and the closing note of issue 4). */
const figures: Record<string, unknown> = {};

let E: Engine | undefined;
let RB: Engine | undefined;
let base: HostSnapshot | undefined;
/** tsnet serving Docker on <plugins>/tsnet.sock */
let ts: TsnetHandle | undefined;
/** a second tsnet on another socket name (scenario 4), invisible to Docker */
let alt: TsnetHandle | undefined;

const ms = (from: number) => Date.now() - from;

/** GET http://ADDR/ from the engine netns (the host): the body trimmed, '' when nothing answers. */
async function httpGet(e: Engine, addr: string): Promise<string> {
  const r = await nsExec(e, ['busybox', 'wget', '-q', '-O', '-', `http://${addr}/`], { timeoutMs: 10_000 });
  return r.code === 0 ? r.stdout.trim() : '';
}

/** TSE_RS_ONLY=1b,7 runs only those scenarios (plus setup and teardown), for working on one of them. */
const ONLY = process.env.TSE_RS_ONLY?.split(',').map((x) => x.trim()).filter(Boolean);

function scenario(name: string, fn: (t: Test) => Promise<void>, external?: string) {
  const id = name.split(/[ .:]/)[0] ?? name;
  if (ONLY && id !== 'teardown' && !ONLY.includes(id)) return t.test(name, { skip: `not in TSE_RS_ONLY=${ONLY.join(',')}` }, async () => {});
  // every scenario ends with the idempotence check: a reconcile right after plans nothing (after
  // `external` changes, once one pass has repaired them; see expectIdle)
  const body = async (tt: Test) => {
    await fn(tt);
    await expectIdle(tt, ts?.running ? ts.socketPath : undefined, 'tsnet', external);
  };
  return t.test(name, (tt) => withDiagnostics(tt, body, (tt) => {
    if (!E) return;
    tt.comment(`--- tail of ${tsnetLogPath(E)}:\n${ts?.logTail(40) ?? alt?.logTail(40) ?? '(tsnet not started)'}`);
    tt.comment(`--- tail of ${E.logPath}:\n${E.dockerdLogTail(20)}`);
  }));
}

/**
 * SIGKILL and wait for the exit. The harness' kill9() awaits only the (unref'd) child's exit
 * event; with nothing else pending, node would end the test process first: keep a timer alive.
 */
async function kill9(h: TsnetHandle) {
  const keep = setInterval(() => undefined, 1_000);
  try {
    return await h.kill9();
  } finally {
    clearInterval(keep);
  }
}

/** `docker run -d --init --name NAME --network NET [args] bb sleep 3600` (never throws). */
function runD(e: Engine, name: string, net: string, extra: readonly string[] = []): Promise<RunResult> {
  return e.docker(['run', '-d', '--init', '--name', name, '--network', net, ...extra, BB, 'sleep', '3600'], { timeoutMs: 240_000 });
}

/** tsnet's view vs Docker's view, relative to the base snapshot. */
async function explainNow(e: Engine): Promise<Explanation> {
  const [now, store, docker] = [await snapshotHost(e), await readStore(e), await dockerTsnetView(e)];
  return explain(base!, now, store, docker);
}

/** Polls until tsnet's store and the kernel are exactly what Docker's view explains. */
async function converge(e: Engine, timeoutMs = 60_000): Promise<{ ok: boolean; ms: number; first?: Explanation; last?: Explanation; polls: number }> {
  const t0 = Date.now();
  let first: Explanation | undefined;
  let last: Explanation | undefined;
  let polls = 0;
  for (;;) {
    try {
      last = await explainNow(e);
      first ??= last;
      polls++;
      if (!last.extra.length && !last.missing.length) return { ok: true, ms: ms(t0), first, last, polls };
    } catch {
      /* docker or a snapshot failed mid-change: try again */
    }
    if (Date.now() - t0 > timeoutMs) return { ok: false, ms: ms(t0), ...(first ? { first } : {}), ...(last ? { last } : {}), polls };
    await sleep(400);
  }
}

// Scenario 1b guards the late-release race: GC releases a lease while Docker still retries its
// own ReleaseAddress for it; the address must not go to a new container meanwhile.

/** tsnet's leased/released log lines for the duplicate addresses ("10.0.0.5: a, b"), from byte offset `off`. */
async function leaseHistory(off: number, duplicates: readonly string[]): Promise<string> {
  const addrs = new Set(duplicates.map((d) => d.split(':')[0]));
  return (await logSince(tsnetLogPath(E!), off))
    .filter((l) => addrs.has(String(l.address)) && /address (leased|released)/.test(String(l.msg)))
    .map((l) => `  ${l.time} ${l.reqId ?? l.component ?? ''} ${l.msg} ${l.address}`)
    .join('\n');
}

const short = (xs: readonly string[], n = 12) => (xs.length > n ? [...xs.slice(0, n), `… and ${xs.length - n} more`] : xs).join('\n  ');

// ------------------------------------------------------------------------------------------------

await t.test('setup: boot order (netns, tsnet, then dockerd), bb image, base snapshot, engine pinned', async (t) => {
  t.ok(existsSync(TSNET_CLI), `${TSNET_CLI} is built`);
  if (!existsSync(TSNET_CLI)) return;
  E = await createEngineNetns('rs');
  const t0 = Date.now();
  ts = await startTsnet(E);
  t.ok(ts.running, `tsnet listens before dockerd exists (pid ${ts.pid}, ${ms(t0)} ms)`);
  const t1 = Date.now();
  await startDockerd(E);
  t.comment(`dockerd ready ${ms(t1)} ms after tsnet`);
  await ensureBusyboxImage(E);
  const id = await E.dockerOk(['info', '-f', '{{.ID}}']);
  const pinned = await waitFor(async () => (await pinnedEngine(E!)) ?? '', { timeoutMs: 20_000, what: 'the engine ID in the store' }).catch(() => '');
  t.equal(pinned, id, `garbage collection pinned this engine (${id}) once dockerd answered`);
  // Whether a GC pass fell before dockerd answered depends on timing; scenario 4 checks the
  // "waits for Docker" behaviour deterministically against a socket that does not exist.
  base = await snapshotHost(E);
  t.same(base.storeFiles, [], 'no tsnet records yet');
  t.notOk([...base.iptables, ...base.ip6tables].some((l) => l.includes('TSNET')), 'no tsnet firewall chain without networks');
});

if (!E || !base || !ts) {
  t.fail('setup failed: the scenarios are not run');
  if (E) await destroyEngine(E);
} else {
  const e: Engine = E;
  const s0: HostSnapshot = base;
  const logPath = tsnetLogPath(e);
  t.teardown(async () => {
    if (RB) await destroyEngine(RB).catch((err) => process.stderr.write(`# destroy rb: ${String(err)}\n`));
    if (alt?.running) await alt.stop();
    await rm(join(e.etcDir, 'daemon.json'), { force: true });
    // with tsnet down, each `docker rm -f` would wait ~15 s per plugin call: bring it back first
    if (e.running && !ts?.running) ts = await startTsnet(e).catch(() => undefined);
    await destroyEngine(e);
    t.comment(`figures: ${JSON.stringify(figures, null, 1)}`);
  });

  const restartTsnet = async (opts: TsnetOptions = {}, how: 'stop' | 'kill9' = 'stop') => {
    if (ts?.running) await (how === 'kill9' ? kill9(ts) : ts.stop());
    ts = await startTsnet(e, opts);
    return ts;
  };

  // ---------------------------------------------------------------------------------------------
  await scenario('1. kill -9 in the middle of 50 parallel docker runs: no duplicates, no leaks', async (t) => {
    const before = await snapshotHost(e);
    t.same(diffSnapshots(s0, before), [], 'host equals the base snapshot before the scenario');
    await e.dockerOk(['network', 'create', ...TS, '--subnet', '10.40.0.0/24', 'k50']);
    const names = Array.from({ length: 50 }, (_, i) => `k50-${i}`);
    const t0 = Date.now();
    const runs = names.map((n) => runD(e, n, 'k50').then((r) => ({ n, r, at: Date.now() })));
    const atKill = await waitFor(async () => {
      const n = await countStoreEndpoints(e);
      return n >= 20 ? n : 0;
    }, { timeoutMs: 120_000, intervalMs: 50, what: '20 endpoint records' });
    const killAt = Date.now();
    await kill9(ts!);
    t.comment(`kill -9 ${killAt - t0} ms after the 50 runs started, with ${atKill} endpoint records in the store`);
    // Docker retries a plugin call for ~15 s, then rolls back with more calls that retry ~15 s
    // each: stay dead past both, so that calls in flight fail for good and their rollbacks do not
    // reach tsnet either (what they leave is garbage collection's job)
    await sleep(32_000);
    const off = await fileSize(logPath);
    ts = await startTsnet(e);
    const restartAt = Date.now();
    const results = await Promise.all(runs);
    const runsDoneAt = Date.now();
    const failed = results.filter((x) => x.r.code !== 0);
    t.comment(`50 docker runs: ${50 - failed.length} ok, ${failed.length} failed; the last returned ${runsDoneAt - restartAt} ms after the restart`);
    if (failed.length) t.comment(`a failure: ${failed[0]!.n}: ${failed[0]!.r.stderr.trim().split('\n').pop()}`);
    t.ok(failed.every((x) => /tsnet|plugin|connection refused|no such file/i.test(x.r.stderr)), 'every failed run failed because the plugin was unreachable');
    const conv = await converge(e, 90_000);
    const since = await logSince(logPath, off);
    const boot = bootReconcile(since);
    const gcItems = collectedItems(since);
    const gcTimes = since.filter((l) => l.msg === 'removed what Docker no longer knows').map((l) => Date.parse(String(l.time)) - restartAt);
    t.comment(`unexplained when the runs had returned: extra ${conv.first?.extra.length ?? '?'} [${short(conv.first?.extra ?? [], 8)}], missing ${conv.first?.missing.length ?? '?'} [${short(conv.first?.missing ?? [], 8)}]`);
    t.comment(`boot reconcile: ${JSON.stringify(boot && { ms: boot.ms, changes: boot.changes, failed: boot.failed, missing: boot.missing, linksDeleted: deletedLinks(since).length })}; garbage collection removed ${gcItems.length} items (${gcItems.map((i) => i.kind).join(' ')}) in passes ${gcTimes.join(', ')} ms after the restart`);
    t.ok(conv.ok, `store and kernel converge to Docker's view (${conv.ms} ms after the last run returned, ${runsDoneAt - restartAt + conv.ms} ms after the restart)`);
    if (!conv.ok) t.comment(`still unexplained: extra:\n  ${short(conv.last?.extra ?? [])}\nmissing:\n  ${short(conv.last?.missing ?? [])}`);
    const convergedAfterRestart = runsDoneAt - restartAt + conv.ms;
    const cs = await containersOf(e, 'k50', /^k50-/);
    const running = cs.filter((c) => c.running);
    t.ok(running.length >= 10, `${running.length} containers run (positive control: the runs before the kill succeeded)`);
    t.equal(running.length, 50 - failed.length, 'every successful run left a running container, every failed one none');
    const mesh = await checkMesh(e, running);
    t.same(mesh.duplicates, [], `no two running containers share an address (read inside ${mesh.addr.size} containers)`);
    if (mesh.duplicates.length) t.comment(`duplicate addresses: ${mesh.duplicates.join('; ')}; tsnet's lease history of them:\n${await leaseHistory(off, mesh.duplicates)}`);
    t.same(mesh.mismatches, [], "each address inside equals Docker's view");
    t.same(mesh.failed, [], `every running container reaches the first (${mesh.first}) and the last (${mesh.last}) started one`);
    if (mesh.failedFirstTry.length) t.comment(`pings that needed a retry: ${mesh.failedFirstTry.join(', ')}`);
    const x = await explainNow(e);
    t.same(x.extra, [], 'no veth, bridge, rule or store record that Docker does not explain (leaks)');
    t.same(x.missing, [], "nothing Docker's view needs is missing");
    const st = await tsnetStatus(e);
    t.same(storeDigest(st), storeDigest(await readStore(e)), '`tsnet status --json` shows the same records');
    t.equal(st.endpoints.length, running.length, `tsnet status: ${st.endpoints.length} endpoints for ${running.length} running containers`);
    // remove everything with tsnet up: the host must be back to the snapshot taken before
    const tr = Date.now();
    t.same(await removeEverything(e), [], `all containers and the network removed (${ms(tr)} ms)`);
    const after = await snapshotHost(e);
    const diff = diffSnapshots(before, after);
    t.same(diff, [], 'links, iptables, ip6tables and store equal the snapshot taken before');
    Object.assign(figures, {
      s1_runsFailed: failed.length,
      s1_running: running.length,
      s1_endpointsAtKill: atKill,
      s1_duplicates: mesh.duplicates.length,
      s1_unexplainedWhenRunsReturned: (conv.first?.extra.length ?? 0) + (conv.first?.missing.length ?? 0),
      s1_gcCollected: gcItems.length,
      s1_gcPassesMsAfterRestart: gcTimes,
      s1_bootReconcileMs: boot?.ms,
      s1_bootReconcileChanges: boot?.changes,
      s1_convergedMsAfterRunsReturned: conv.ms,
      s1_convergedMsAfterRestart: convergedAfterRestart,
      s1_leaksAfterConvergence: x.extra.length,
      s1_leaksAfterRemoval: diff.length,
    });
  });

  // ---------------------------------------------------------------------------------------------
  // The duplicate scenario 1 can hit, made deterministic: Docker asked for an address, then its
  // container start failed while tsnet was dead; Docker's rollback (ReleaseAddress) keeps retrying
  // for up to ~15 s and lands after tsnet is back. Here the first part is Docker's wire call sent
  // by the test, the late retry too, at most 15 s after tsnet came back; the containers are real.
  await scenario("1b. Docker's late ReleaseAddress (a retried rollback) after GC: no address handed out twice", async (t) => {
    await e.dockerOk(['network', 'create', ...TS, '--subnet', '10.45.0.0/24', 'late']);
    await runD(e, 'la0', 'late').then((r) => t.equal(r.code, 0, 'la0 runs'));
    const poolId = 'LocalDefault/10.45.0.0/24';
    const req = await pluginPost(ts!.socketPath, '/IpamDriver.RequestAddress', JSON.stringify({ PoolID: poolId, Address: '', Options: {} }));
    const x = ((JSON.parse(req.body) as { Address?: string }).Address ?? '').split('/')[0] ?? '';
    t.equal(req.status, 200, `Docker's RequestAddress (sent by the test) leased ${x}; its container then failed to start`);
    await kill9(ts!);
    ts = await startTsnet(e);
    const t0 = Date.now();
    const collected = await waitFor(async () => !(await readStore(e)).leases.some((l) => l.address === x), { timeoutMs: 12_000, intervalMs: 100, what: `GC to release ${x}` })
      .then(() => ms(t0), () => -1);
    t.comment(collected >= 0 ? `GC released ${x} ${collected} ms after tsnet came back` : `GC did not release ${x} within 12 s`);
    const r1 = await runD(e, 'lb1', 'late');
    const ip1 = r1.code === 0 ? await containerIPv4(e, 'lb1') : '';
    t.ok(ip1, `lb1 runs with ${ip1}`);
    // Docker's retry of the rollback arrives (Docker gives up after ~15 s: this one is in time)
    const lateAt = ms(t0);
    const rel = await pluginPost(ts!.socketPath, '/IpamDriver.ReleaseAddress', JSON.stringify({ PoolID: poolId, Address: x }));
    t.ok(rel.status === 200 && lateAt <= 15_000, `Docker's late ReleaseAddress ${x} answered ${rel.status}, ${lateAt} ms after tsnet came back (inside Docker's retry window)`);
    const kept = (await readStore(e)).leases.some((l) => l.address === ip1);
    t.ok(kept, `lb1's lease of ${ip1} survives the late release`);
    const r2 = await runD(e, 'lb2', 'late');
    const ip2 = r2.code === 0 ? await containerIPv4(e, 'lb2') : '';
    t.ok(ip2, `lb2 runs with ${ip2}`);
    t.not(ip2, ip1, `lb1 and lb2 have different addresses (${ip1}, ${ip2}, read inside them)`);
    const xp = await explainNow(e);
    t.same(xp.duplicates, [], "no address twice in Docker's view or tsnet's records");
    figures.s1b_duplicates = ip1 === ip2 ? 1 : 0;
    figures.s1b_gcReleasedMsAfterRestart = collected;
    t.same(await removeEverything(e), [], 'removed');
  });

  // ---------------------------------------------------------------------------------------------
  await scenario('6. 100 parallel docker runs on one network, and 10 x 10 on ten networks', async (t) => {
    await e.dockerOk(['network', 'create', ...TS, '--subnet', '10.60.0.0/24', 'c100']);
    let t0 = Date.now();
    const one = await Promise.all(Array.from({ length: 100 }, (_, i) => runD(e, `c100-${i}`, 'c100')));
    const oneMs = ms(t0);
    const oneFailed = one.filter((r) => r.code !== 0);
    t.same(oneFailed.map((r) => r.stderr.trim()), [], `100 parallel docker runs on one network succeed (${oneMs} ms, median ${median(one.map((r) => r.ms))} ms each)`);
    const cs = await containersOf(e, 'c100', /^c100-/);
    const mesh = await checkMesh(e, cs, 10);
    t.equal(mesh.addr.size, 100, '100 running containers');
    t.same(mesh.duplicates, [], 'all 100 addresses are distinct (read inside each container)');
    t.same(mesh.mismatches, [], "each address inside equals Docker's view");
    t.same(mesh.failed, [], `every container reaches the first (${mesh.first}) and the last (${mesh.last}) started one (${mesh.ms} ms)`);
    // restart with 100 endpoints: how long until tsnet serves and its view is Docker's again
    const off = await fileSize(logPath);
    t0 = Date.now();
    await restartTsnet({}, 'kill9');
    const readyMs = ms(t0);
    const conv = await converge(e, 30_000);
    const boot = await waitFor(async () => bootReconcile(await logSince(logPath, off)), { timeoutMs: 20_000, what: 'boot reconcile done' });
    t.equal(listening(await logSince(logPath, off))?.endpoints, 100, 'tsnet loaded 100 endpoints at start (the boot reconcile covers them)');
    t.equal(boot?.failed, 0, 'the boot reconcile failed nowhere');
    t.ok(conv.ok, `after kill -9 and restart with 100 endpoints: tsnet answers after ${readyMs} ms, boot reconcile took ${boot?.ms} ms, store and kernel match Docker after ${readyMs + conv.ms} ms`);
    const probe = await e.docker(['run', '--rm', '--network', 'c100', BB, 'ip', '-4', '-o', 'addr', 'show', 'dev', 'eth0']);
    const probeIp = /\binet (\d+\.\d+\.\d+\.\d+)\//.exec(probe.stdout)?.[1] ?? '';
    t.ok(probeIp && ![...mesh.addr.values()].includes(probeIp), `after the restart a new container gets a free address (${probeIp || probe.stderr.trim()})`);
    let tr = Date.now();
    t.same(await removeEverything(e), [], `100 containers and the network removed (${ms(tr)} ms)`);

    // 10 networks x 10 containers, all 100 runs at once
    for (let i = 0; i < 10; i++) await e.dockerOk(['network', 'create', ...TS, '--subnet', `10.61.${i}.0/24`, `m${i}`]);
    t0 = Date.now();
    const ten = await Promise.all(Array.from({ length: 100 }, (_, k) => runD(e, `m${k % 10}-${Math.floor(k / 10)}`, `m${k % 10}`)));
    const tenMs = ms(t0);
    t.same(ten.filter((r) => r.code !== 0).map((r) => r.stderr.trim()), [], `100 parallel docker runs across 10 networks succeed (${tenMs} ms)`);
    const problems: string[] = [];
    const all = new Map<string, string>();
    let tenMeshMs = 0;
    for (let i = 0; i < 10; i++) {
      const ci = await containersOf(e, `m${i}`, new RegExp(`^m${i}-`));
      const m = await checkMesh(e, ci, 10);
      tenMeshMs += m.ms;
      if (m.addr.size !== 10) problems.push(`m${i}: ${m.addr.size} running containers`);
      problems.push(...m.duplicates.map((d) => `m${i} duplicate ${d}`), ...m.mismatches.map((d) => `m${i} ${d}`), ...m.failed.map((f) => `m${i} unreachable ${f}`));
      for (const [c, ip] of m.addr) {
        if (!ip.startsWith(`10.61.${i}.`)) problems.push(`${c} has ${ip}, outside 10.61.${i}.0/24`);
        all.set(c, ip);
      }
    }
    t.same(problems, [], `10 networks x 10: distinct addresses in each, every container reaches its network's first and last started one (${all.size} containers, ${tenMeshMs} ms)`);
    t.equal(new Set(all.values()).size, 100, '100 distinct addresses across the ten networks');
    const x = await explainNow(e);
    t.same([...x.extra, ...x.missing], [], "store and kernel are exactly Docker's view (10 bridges, 100 veths, 10 rules, 10 pools, 110 leases)");
    t.same(x.duplicates, [], "no address twice in Docker's view or tsnet's records");
    tr = Date.now();
    t.same(await removeEverything(e), [], `everything removed (${ms(tr)} ms)`);
    t.same(diffSnapshots(s0, await snapshotHost(e)), [], 'host back to the base snapshot');
    Object.assign(figures, {
      s6_oneNetwork100Ms: oneMs,
      s6_oneNetworkFailed: oneFailed.length,
      s6_duplicates: mesh.duplicates.length,
      s6_restart100ReadyMs: readyMs,
      s6_restart100BootReconcileMs: boot?.ms,
      s6_restart100ConvergedMs: readyMs + conv.ms,
      s6_tenNetworks100Ms: tenMs,
      s6_tenNetworksProblems: problems.length,
    });
    t.comment(`100 parallel runs on one network: ${oneMs} ms; across 10 networks: ${tenMs} ms (all at once, no waves)`);
  });

  // ---------------------------------------------------------------------------------------------
  await scenario('5. GC (every second) never removes what Docker is in the middle of creating', async (t) => {
    await e.dockerOk(['network', 'create', ...TS, '--subnet', '10.55.0.0/24', 'race']);
    // Positive control: an orphan lease (a crash after RequestAddress's store write leaves one)
    // must be collected, which shows that GC runs with the 1 s interval.
    await ts!.stop();
    const poolId = 'LocalDefault/10.55.0.0/24';
    const orphan = '10.55.0.250';
    await writeFile(
      join(tsnetStateDir(e), 'store', 'leases', `${encodeURIComponent(`${poolId}#${orphan}`)}.json`),
      JSON.stringify({ poolId, address: orphan, kind: 'endpoint', createdAt: new Date().toISOString() }),
    );
    // dockerd --debug (reloaded with SIGHUP) logs every API call: GC's unversioned GET /info counts its passes
    await writeFile(join(e.etcDir, 'daemon.json'), '{"debug": true}\n');
    process.kill(e.dockerdPid!, 'SIGHUP');
    const off = await fileSize(logPath);
    ts = await startTsnet(e, { env: { TSNET_GC_INTERVAL: '1' } });
    const t0 = Date.now();
    const gone = await waitFor(async () => !(await readStore(e)).leases.some((l) => l.address === orphan), { timeoutMs: 20_000, what: 'the orphan lease collected' }).catch(() => false);
    t.ok(gone, `the planted orphan lease was collected after ${ms(t0)} ms (GC runs)`);
    const dOff = await fileSize(e.logPath);
    // ~20 s of parallel creation: 8 workers start sleepers, 2 run --rm containers (create + delete)
    const until = Date.now() + 20_000;
    const results: Array<{ name: string; r: RunResult }> = [];
    let seq = 0;
    const worker = async (w: number) => {
      while (Date.now() < until) {
        const name = `race-${w}-${seq++}`;
        const r = w < 8 ? await runD(e, name, 'race') : await e.docker(['run', '--rm', '--name', name, '--network', 'race', BB, 'true']);
        results.push({ name, r });
      }
    };
    await Promise.all(Array.from({ length: 10 }, (_, w) => worker(w)));
    const passes = (await readFile(e.logPath)).subarray(dOff).toString().split('\n').filter((l) => /Calling GET \/info"/.test(l)).length;
    await writeFile(join(e.etcDir, 'daemon.json'), '{}\n');
    process.kill(e.dockerdPid!, 'SIGHUP');
    const failed = results.filter((x) => x.r.code !== 0);
    t.same(failed.map((x) => `${x.name}: ${x.r.stderr.trim()}`), [], `${results.length} docker runs in 20 s, none failed`);
    t.ok(passes >= 10, `garbage collection ran ${passes} passes during the 20 s (dockerd saw GC's GET /info)`);
    await sleep(2_500); // two more passes: a wrong verdict on a just-created endpoint would be carried out now
    const items = collectedItems(await logSince(logPath, off));
    const wrongful = items.filter((i) => !(i.kind === 'lease' && i.address === orphan));
    t.same(wrongful, [], `GC collected nothing but the planted lease (${items.length} item(s))`);
    const cs = await containersOf(e, 'race', /^race-/);
    const running = cs.filter((c) => c.running);
    t.equal(running.length, results.filter((x) => /^race-[0-7]-/.test(x.name)).length, `${running.length} sleepers run`);
    const store = await readStore(e);
    const links = await linkDetails(e);
    const lost: string[] = [];
    const netId = await e.dockerOk(['network', 'inspect', '-f', '{{.Id}}', 'race']);
    const bridge = `tsbr-${netId.slice(0, 10)}`;
    for (const c of running) {
      if (!store.endpoints.some((x) => x.id === c.endpointId)) lost.push(`${c.name}: no endpoint record`);
      if (!store.leases.some((l) => l.address === c.ipv4)) lost.push(`${c.name}: no lease for ${c.ipv4}`);
      if (links.get(`tsv${c.endpointId.slice(0, 12)}`)?.master !== bridge) lost.push(`${c.name}: veth tsv${c.endpointId.slice(0, 12)} not on ${bridge}`);
    }
    t.same(lost, [], 'every running container still has its endpoint record, lease and veth');
    const mesh = await checkMesh(e, running, 10);
    t.same(mesh.duplicates, [], 'distinct addresses');
    t.same(mesh.failed, [], `every container reaches the first and the last started one (${mesh.addr.size} containers)`);
    const x = await explainNow(e);
    t.same([...x.extra, ...x.missing], [], "store and kernel are exactly Docker's view");
    t.same(x.duplicates, [], "no address twice in Docker's view or tsnet's records");
    t.same(await removeEverything(e), [], 'removed');
    await rm(join(e.etcDir, 'daemon.json'), { force: true });
    await restartTsnet(); // back to the harness' default interval (2 s)
    Object.assign(figures, { s5_runs: results.length, s5_gcPasses: passes, s5_wrongfulCollections: wrongful.length, s5_lost: lost.length });
  });

  // ---------------------------------------------------------------------------------------------
  await scenario('2. a ping between two containers loses nothing while tsnet is stopped for 10 s', async (t) => {
    await e.dockerOk(['network', 'create', ...TS, '--subnet', '10.20.0.0/24', 'keep']);
    await runSleeper(e, 'k1', ['--network', 'keep']);
    await runSleeper(e, 'k2', ['--network', 'keep']);
    const ip2 = await containerIPv4(e, 'k2');
    t.ok(await pingOk(e, 'k1', ip2), `k1 reaches k2 (${ip2})`);
    // negative control: the loss counter does count losses
    const neg = parsePing((await e.docker(['exec', 'k1', 'ping', '-c3', '-i', '0.2', '-W1', '10.20.0.222'])).stdout);
    t.same(neg, { sent: 3, received: 0 }, 'control: a ping to an unused address counts 3 sent, 0 received');
    const pinger = e.docker(['exec', 'k1', 'ping', '-c', '70', '-i', '0.2', '-W', '1', ip2], { timeoutMs: 60_000 });
    await sleep(1_000);
    const t0 = Date.now();
    await ts!.stop();
    t.notOk(existsSync(ts!.socketPath), 'tsnet is down (socket gone)');
    await sleep(10_000);
    const downMs = ms(t0);
    ts = await startTsnet(e);
    const r = await pinger;
    const st = parsePing(r.stdout);
    t.ok(st && st.sent >= 65, `the ping ran through the outage (${st?.sent} sent over ~14 s; tsnet down for ${downMs} ms)`);
    t.equal(st ? st.sent - st.received : -1, 0, `no packet lost (${st?.received}/${st?.sent})`);
    t.ok(await pingOk(e, 'k2', 'k1'), 'k2 reaches k1 by name after the restart');
    figures.s2_lostPings = st ? st.sent - st.received : 'n/a';
    figures.s2_pingsSent = st?.sent;
    figures.s2_downMs = downMs;
  });

  // ---------------------------------------------------------------------------------------------
  // 3 and 4 share the outage: containers are removed while tsnet is down (Docker retries each
  // plugin call ~15 s, then forgets the endpoint); meanwhile a second tsnet on another socket (Docker
  // does not see it) runs GC against a missing socket, then against another engine: it must
  // collect nothing. Then tsnet comes back on the right engine and must collect the orphans.
  let removed: Array<{ name: string; ip: string; endpointId: string }> = [];
  let storeBefore: string[] = [];
  await scenario('3a. containers removed while tsnet is down (setup of 3 and 4)', async (t) => {
    const rbStart = startEngine('rb').then((x) => (RB = x));
    await e.dockerOk(['network', 'create', ...TS, '--subnet', '10.30.0.0/24', 'gone']);
    for (const n of ['g1', 'g2', 'g3', 'gk']) await runSleeper(e, n, ['--network', 'gone']);
    const cs = await containersOf(e, 'gone', /^g[123k]$/);
    removed = cs.filter((c) => c.name !== 'gk').map((c) => ({ name: c.name, ip: c.ipv4, endpointId: c.endpointId }));
    t.equal(removed.length, 3, `g1..g3 at ${removed.map((r) => r.ip).join(' ')}`);
    // control: an address still leased cannot be taken with --ip
    const taken = await e.docker(['run', '--name', 'gtaken', '--network', 'gone', '--ip', removed[0]!.ip, BB, 'true']);
    t.not(taken.code, 0, `control: --ip ${removed[0]!.ip} fails while g1 holds it (${taken.stderr.split('\n').find((l) => /in use/.test(l))?.trim() ?? taken.stderr.trim()})`);
    await e.docker(['rm', '-f', 'gtaken']);
    await rbStart;
    t.ok(RB?.running, 'a second engine rb runs (for scenario 4)');
    storeBefore = storeDigest(await readStore(e));
  });

  const rmDone: { p?: Promise<RunResult[]>; t0?: number } = {};
  await scenario('4. GC never collects against a missing socket or another engine', async (t) => {
    if (!RB || removed.length !== 3) {
      t.fail('3a did not set up');
      return;
    }
    const gk = (await containersOf(e, 'gone', /^gk$/))[0];
    const hostEnds = [...removed.map((r) => r.endpointId), gk?.endpointId ?? 'gk?'].map((id) => `tsv${id.slice(0, 12)}`);
    const linksBefore = await listLinks(e);
    await ts!.stop();
    rmDone.t0 = Date.now();
    rmDone.p = Promise.all(removed.map((r) => e.docker(['rm', '-f', r.name], { timeoutMs: 180_000 })));
    // (a) a Docker host socket that does not exist
    const nowhere = `unix://${e.stateDir}/no-such-docker.sock`;
    let off = await fileSize(logPath);
    const offA = off;
    alt = await startTsnet(e, { socketName: 'tsnet-gc.sock', env: { DOCKER_HOST: nowhere } });
    await sleep(7_000);
    let lines = await logSince(logPath, off);
    const waits = lines.filter((l) => l.msg === 'garbage collection waits for Docker');
    t.ok(waits.length >= 2, `GC said ${waits.length} times that it waits for Docker: "${String(waits[0]?.reason)}"`);
    t.match(String(waits[0]?.reason ?? ''), /ENOENT|no-such-docker/, 'the reason names the missing socket');
    t.same(collectedItems(lines), [], 'nothing collected');
    t.same(storeDigest(await readStore(e)), storeBefore, 'networks, endpoints, pools and leases in the store unchanged');
    await alt.stop();
    // (b) another engine (rb) after the store pinned rs
    const rsId = await e.dockerOk(['info', '-f', '{{.ID}}']);
    const rbId = await RB.dockerOk(['info', '-f', '{{.ID}}']);
    t.not(rbId, rsId, 'rb is another engine');
    off = await fileSize(logPath);
    alt = await startTsnet(e, { socketName: 'tsnet-gc.sock', env: { DOCKER_HOST: RB.host } });
    const t1 = Date.now();
    // meanwhile Docker gives up on g1..g3: wait for that, so the orphans exist in rs's view too
    const rms = await rmDone.p;
    const rmMs = ms(rmDone.t0);
    await sleep(Math.max(0, 7_000 - ms(t1)));
    lines = await logSince(logPath, off);
    const refused = lines.filter((l) => typeof l.msg === 'string' && l.msg.startsWith('garbage collection refused'));
    t.ok(refused.length >= 2, `GC refused ${refused.length} times over ${ms(t1)} ms: "${String(refused[0]?.msg)}"`);
    t.equal(refused[0]?.stored, rsId, 'the log names the pinned engine (rs)');
    t.equal(refused[0]?.seen, rbId, 'and the engine it found (rb)');
    t.same(collectedItems(lines), [], 'nothing collected');
    t.same(storeDigest(await readStore(e)), storeBefore, 'store unchanged (although rb knows none of these networks)');
    t.equal(await pinnedEngine(e), rsId, 'the pinned engine is still rs');
    await alt.stop();
    alt = undefined;
    const deletions = (await logSince(logPath, offA)).filter((l) => /deleted|released|pruned|removed/.test(String(l.msg)));
    t.same(deletions.map((l) => l.msg), [], 'neither tsnet instance deleted a link or a rule, or released anything');
    const links = await linkDetails(e);
    t.same(hostEnds.filter((v) => !links.has(v)), [], `the veths of g1..g3 and gk are all still there (${hostEnds.join(' ')})`);
    t.same(linksBefore.filter((l) => !/^(tsc|eth)/.test(l.split(' ')[0] ?? '')).filter((l) => !(links.has(l.split(' ')[0] ?? ''))), [], 'no link that existed before the outage is gone (Docker only moved container ends back)');
    t.ok(rms.every((r) => r.code === 0), `docker rm -f of g1..g3 succeeded without the plugin (${rmMs} ms, in parallel)`);
    figures.s4_collectedAgainstWrongEngine = 0;
    figures.s3_rmWhileDownMs = rmMs;
  });

  await scenario('3b. after tsnet is back and GC has run, the removed containers\' addresses are free', async (t) => {
    if (removed.length !== 3 || !rmDone.p) {
      t.fail('3a/4 did not run');
      return;
    }
    const ps = await e.dockerOk(['ps', '-a', '--format', '{{.Names}}']);
    t.notOk(removed.some((r) => ps.split('\n').includes(r.name)), 'Docker has forgotten g1..g3');
    let store = await readStore(e);
    const orphans = removed.filter((r) => store.endpoints.some((x) => x.id === r.endpointId) && store.leases.some((l) => l.address === r.ip));
    t.equal(orphans.length, 3, 'precondition: the store still holds their endpoints and leases (tsnet never heard of the removal)');
    const links = await linkDetails(e);
    const veths = removed.map((r) => `tsv${r.endpointId.slice(0, 12)}`);
    t.ok(veths.every((v) => links.has(v)), `precondition: their veths are still there (${veths.join(' ')})`);
    const off = await fileSize(logPath);
    const t0 = Date.now();
    ts = await startTsnet(e);
    const conv = await converge(e, 30_000);
    const convMs = ms(t0);
    t.ok(conv.ok, `store and kernel match Docker's view ${convMs} ms after tsnet started`);
    const items = collectedItems(await logSince(logPath, off));
    t.equal(items.filter((i) => i.kind === 'endpoint').length, 3, 'GC removed the three endpoints');
    t.equal(items.filter((i) => i.kind === 'lease').length, 3, 'and released the three addresses');
    store = await readStore(e);
    t.same(removed.filter((r) => store.endpoints.some((x) => x.id === r.endpointId)).map((r) => r.name), [], 'no endpoint record left for g1..g3');
    t.same(removed.filter((r) => store.leases.some((l) => l.address === r.ip)).map((r) => r.name), [], 'no lease left for their addresses');
    const after = await linkDetails(e);
    t.same(veths.filter((v) => after.has(v)), [], 'their veths are gone');
    t.same([...after.keys()].filter((n) => removed.some((r) => n === `tsc${r.endpointId.slice(0, 12)}`)), [], 'so are the container ends');
    for (const r of removed) {
      const n = `${r.name}b`;
      const res = await runD(e, n, 'gone', ['--ip', r.ip]);
      t.equal(res.code, 0, `a new container with --ip ${r.ip} starts ${res.code ? res.stderr.trim() : ''}`);
      if (res.code === 0) {
        t.equal(await containerIPv4(e, n), r.ip, `${n} has ${r.ip}`);
        t.ok(await pingOk(e, n, 'gk'), `${n} reaches gk`);
      }
    }
    t.same(await removeEverything(e), [], 'cleanup: all containers and networks removed');
    await destroyEngine(RB!);
    RB = undefined;
    Object.assign(figures, { s3_convergedMsAfterRestart: convMs, s3_gcCollected: items.length });
  });

  // ---------------------------------------------------------------------------------------------
  await scenario('8. boot reconcile deletes tsnet-tagged leftovers and nothing else', async (t) => {
    await e.dockerOk(['network', 'create', ...TS, '--subnet', '10.80.0.0/24', 'known']);
    await runSleeper(e, 'n1', ['--network', 'known']);
    await runSleeper(e, 'n2', ['--network', 'known']);
    const knownId = await e.dockerOk(['network', 'inspect', '-f', '{{.Id}}', 'known']);
    const knownBr = `tsbr-${knownId.slice(0, 10)}`;
    await ts!.stop();
    const hex = () => randomBytes(32).toString('hex');
    const netId = hex();
    const ep1 = hex();
    const ep2 = hex();
    const orphanBr = `tsbr-${netId.slice(0, 10)}`;
    const v1 = `tsv${ep1.slice(0, 12)}`;
    const v2 = `tsv${ep2.slice(0, 12)}`;
    const ip = (args: string) => nsExecOk(e, ['ip', ...args.split(' ')]);
    await ip(`link add ${orphanBr} type bridge`);
    await ip(`link set dev ${orphanBr} alias tsnet:net:${netId}`);
    await ip(`link add ${v1} type veth peer name tsc${ep1.slice(0, 12)}`);
    await ip(`link set dev ${v1} alias tsnet:ep:${ep1} master ${knownBr} up`); // an orphan on a kept bridge
    await ip(`link add ${v2} type veth peer name tsc${ep2.slice(0, 12)}`);
    await ip(`link set dev ${v2} alias tsnet:ep:${ep2} master ${orphanBr}`);
    await ip('link add rsforeign0 type bridge');
    await ip('link add rsfa0 type veth peer name rsfb0');
    await ip('link set dev rsfa0 alias other:owner:1 master rsforeign0');
    const tag = `tsnet:net:${netId.slice(0, 12)}`;
    const epTag = `tsnet:ep:${ep2.slice(0, 12)}`;
    // leftovers in tsnet's own sets and chains, and foreign objects next to them
    await nsExecOk(e, ['ipset', 'add', 'tsnet-src4', `10.99.0.0/24,${orphanBr}`, 'comment', tag]);
    await nsExecOk(e, ['ipset', 'add', 'tsnet-masq4', '10.99.0.0/24', 'comment', tag]);
    await nsExecOk(e, ['ipset', 'create', 'rsforeign', 'hash:net']);
    await nsExecOk(e, ['ipset', 'add', 'rsforeign', '10.98.0.0/24']);
    for (const bin of ['iptables', 'ip6tables']) {
      await nsExecOk(e, [bin, '-w', '-A', 'TSNET-FROM', '-i', orphanBr, '-m', 'comment', '--comment', tag, '-j', 'ACCEPT']);
      await nsExecOk(e, [bin, '-w', '-A', 'FORWARD', '-i', 'rsforeign0', '-o', 'rsforeign0', '-m', 'comment', '--comment', 'not-tsnet', '-j', 'ACCEPT']);
    }
    await nsExecOk(e, ['iptables', '-w', '-t', 'nat', '-A', 'TSNET-DNAT', '-p', 'tcp', '-m', 'tcp', '--dport', '8777', '-m', 'comment', '--comment', epTag, '-j', 'DNAT', '--to-destination', '10.99.0.2:80']);
    const planted = await linkDetails(e);
    t.ok([orphanBr, v1, v2, 'rsforeign0', 'rsfa0'].every((n) => planted.has(n)), 'control: the leftovers and the foreign links exist before tsnet starts');
    t.ok((await nsExecOk(e, ['ipset', 'save'])).includes(tag), 'control: the leftover ipset entries exist before tsnet starts');
    const off = await fileSize(logPath);
    ts = await startTsnet(e);
    await waitFor(async () => bootReconcile(await logSince(logPath, off)), { timeoutMs: 10_000, what: 'boot reconcile' });
    const bootLines = await logSince(logPath, off);
    const boot = bootReconcile(bootLines);
    const orphans = deletedLinks(bootLines);
    t.same(orphans.sort(), [orphanBr, v1, v2].sort(), `boot reconcile removed the 3 orphan links (${boot?.changes} changes in ${boot?.ms} ms)`);
    const links = await linkDetails(e);
    t.same([orphanBr, v1, v2, `tsc${ep1.slice(0, 12)}`, `tsc${ep2.slice(0, 12)}`].filter((n) => links.has(n)), [], 'the tagged bridge and veths (both ends) are gone');
    t.ok(links.has('rsforeign0') && links.get('rsfa0')?.alias === 'other:owner:1', 'the foreign bridge and veth (alias other:owner:1) stay');
    for (const bin of ['iptables', 'ip6tables']) {
      const rules = await nsExecOk(e, [bin, '-w', '-S']);
      t.notOk(rules.includes(tag), `${bin}: the rule planted in tsnet's chain is gone (the chain is rewritten whole)`);
      t.ok(rules.includes('not-tsnet'), `${bin}: the foreign rule in FORWARD stays`);
    }
    t.notOk((await nsExecOk(e, ['iptables', '-w', '-t', 'nat', '-S'])).includes(epTag), 'the DNAT rule of an unknown endpoint is gone');
    const sets = await nsExecOk(e, ['ipset', 'save']);
    t.notOk(sets.includes(tag), 'the ipset entries of the unknown network are gone');
    t.ok(sets.includes(`tsnet:net:${knownId.slice(0, 12)}`), "the known network's ipset entries stay");
    t.ok(sets.includes('add rsforeign 10.98.0.0/24'), 'a foreign ipset and its entry stay');
    t.ok(await pingOk(e, 'n1', 'n2'), 'n1 reaches n2 on the known network');
    await runSleeper(e, 'n3', ['--network', 'known']);
    t.ok(await pingOk(e, 'n3', 'n1'), 'a new container n3 on the known network reaches n1');
    for (const bin of ['iptables', 'ip6tables']) {
      await nsExecOk(e, [bin, '-w', '-D', 'FORWARD', '-i', 'rsforeign0', '-o', 'rsforeign0', '-m', 'comment', '--comment', 'not-tsnet', '-j', 'ACCEPT']);
    }
    await ip('link del rsfa0');
    await ip('link del rsforeign0');
    await nsExecOk(e, ['ipset', 'destroy', 'rsforeign']);
    figures.s8_orphanLinksRemoved = orphans.length;
  });

  // ---------------------------------------------------------------------------------------------
  await scenario('7. simulated host reboot (netns destroyed, tsnet then dockerd) and a dockerd restart', async (t) => {
    await e.dockerOk(['network', 'create', ...TS, '--subnet', '10.70.0.0/24', 'boot']);
    await runSleeper(e, 'ra1', ['--network', 'boot', '--restart', 'always']);
    await runSleeper(e, 'ra2', ['--network', 'boot', '--restart', 'always']);
    await e.dockerOk(['run', '-d', '--name', 'rp', '--network', 'boot', '--restart', 'always', '-p', '8085:80', BB, 'sh', '-c', 'mkdir -p /w && echo hello-rp > /w/index.html && exec httpd -f -p 80 -h /w']);
    t.ok(await pingOk(e, 'ra1', 'ra2'), 'before: ra1 reaches ra2');
    const published = () => waitFor(async () => (await httpGet(e, '127.0.0.1:8085')) === 'hello-rp', { timeoutMs: 30_000, intervalMs: 300, what: 'rp on 127.0.0.1:8085' }).then(() => true, () => false);
    t.ok(await published(), 'before: the published port 8085 of rp answers on the host');
    const bootId = await e.dockerOk(['network', 'inspect', '-f', '{{.Id}}', 'boot']);
    // shutdown in reverse boot order, then the namespace goes with everything in it
    const t0 = Date.now();
    await stopDockerd(e, { keepNetns: true });
    await ts!.stop();
    await runOk('ip', ['netns', 'del', e.netns]);
    t.notOk(existsSync(e.netnsPath), 'the engine netns is deleted');
    await runOk('ip', ['netns', 'add', e.netns]);
    await runOk('ip', ['-n', e.netns, 'link', 'set', 'lo', 'up']);
    t.same(await listLinks(e), ['lo - -'], 'the new netns has nothing but lo (every link, route, rule is gone)');
    t.notOk((await nsExecOk(e, ['iptables-save'])).includes('TSNET'), 'and no tsnet rules');
    const off = await fileSize(logPath);
    const t1 = Date.now();
    ts = await startTsnet(e);
    const tsReady = ms(t1);
    const boot = await waitFor(async () => bootReconcile(await logSince(logPath, off)), { timeoutMs: 20_000, what: 'boot reconcile done' });
    const before = await linkDetails(e);
    t.equal(before.get(`tsbr-${bootId.slice(0, 10)}`)?.kind, 'bridge', 'tsnet re-created the bridge before dockerd started');
    const t2 = Date.now();
    await startDockerd(e);
    const dockerdMs = ms(t2);
    const back = await waitFor(async () => {
      const st = await e.dockerOk(['inspect', '-f', '{{.State.Running}}', 'ra1', 'ra2']);
      return st === 'true\ntrue' && (await pingOk(e, 'ra1', 'ra2', { waitSec: 1 })) && (await pingOk(e, 'ra2', 'ra1', { waitSec: 1 }));
    }, { timeoutMs: 60_000, intervalMs: 300, what: 'ra1 and ra2 back and reaching each other' }).catch(() => false);
    const rebootMs = ms(t0);
    t.ok(back, `after the reboot the --restart always containers are back and reach each other (tsnet ready ${tsReady} ms, boot reconcile ${boot?.ms} ms, dockerd ${dockerdMs} ms, ${ms(t2)} ms from dockerd start to connectivity)`);
    t.ok(await published(), 'after the reboot the published port 8085 of rp answers again');
    const conv = await converge(e, 30_000);
    t.ok(conv.ok, `store and kernel match Docker's view after the reboot${conv.ok ? '' : `: ${short([...(conv.last?.extra ?? []), ...(conv.last?.missing ?? [])])}`}`);
    // dockerd restart while tsnet keeps running
    const t3 = Date.now();
    await stopDockerd(e, { keepNetns: true });
    const t4 = Date.now();
    await startDockerd(e);
    const back2 = await waitFor(async () => {
      const st = await e.dockerOk(['inspect', '-f', '{{.State.Running}}', 'ra1', 'ra2']);
      return st === 'true\ntrue' && (await pingOk(e, 'ra1', 'ra2', { waitSec: 1 }));
    }, { timeoutMs: 60_000, intervalMs: 300, what: 'ra1 and ra2 back after the dockerd restart' }).catch(() => false);
    t.ok(back2, `after a dockerd restart (tsnet running) they are back and connected (${ms(t4)} ms from dockerd start, ${ms(t3)} ms in all)`);
    t.ok(ts!.running, 'tsnet kept running');
    t.ok(await published(), 'after the dockerd restart the published port 8085 of rp answers again');
    const conv2 = await converge(e, 30_000);
    t.ok(conv2.ok, "store and kernel match Docker's view after the dockerd restart");
    Object.assign(figures, {
      s7_rebootTsnetReadyMs: tsReady,
      s7_rebootBootReconcileMs: boot?.ms,
      s7_rebootDockerdReadyMs: dockerdMs,
      s7_rebootToConnectivityMs: rebootMs,
      s7_dockerdRestartToConnectivityMs: ms(t4),
    });
  }, "a dockerd restart (Docker rewrites its iptables rules as it starts)");

  // ---------------------------------------------------------------------------------------------
  await scenario('teardown: everything removed, host back to the base snapshot', async (t) => {
    t.same(await removeEverything(e), [], 'all containers and networks removed');
    await expectIdle(t, ts!.socketPath);
    const exit = await ts!.stop();
    t.same(exit, { code: 0, signal: null }, 'tsnet exits 0 on SIGTERM');
    const now = await snapshotHost(e);
    t.same(diffSnapshots(s0, now), [], 'links, iptables, ip6tables and store equal the base snapshot (even after the reboot)');
  });
}
