// Self-test of the e2e harness on Docker's own bridge driver (no tsnet needed): a private engine
// starts, imports bb, runs and pings containers; snapshots notice changes and come back equal after
// Docker cleaned up; dockerd restarts in the same netns; destroyEngine leaves nothing behind.
import t from 'tap';
import {
  containerIPv4,
  destroyEngine,
  diffSnapshots,
  ensureBusyboxImage,
  nsExecOk,
  ping,
  removeAllContainersAndNetworks,
  runOk,
  runSleeper,
  snapshotHost,
  startDockerd,
  startEngine,
  stopDockerd,
  tracked,
  waitFor,
  type Engine,
  type HostSnapshot,
} from './lib/index.js';

const NAME = 'hx';

async function rootLinks(): Promise<string[]> {
  const out = (await runOk('ip', ['-j', 'link', 'show'])).stdout;
  return (JSON.parse(out) as { ifname: string }[]).map((l) => l.ifname).sort();
}
async function netnsList(): Promise<string[]> {
  return (await runOk('ip', ['netns', 'list'])).stdout
    .split('\n')
    .filter(Boolean)
    .map((l) => l.split(' ')[0]!);
}
async function procsOf(name: string): Promise<string[]> {
  const r = await runOk('ps', ['-eo', 'pid=,args=']);
  return r.stdout.split('\n').filter((l) => l.includes(`/tmp/tse/${name}/`));
}

const rootBefore = await rootLinks();
let E: Engine | undefined;
let base: HostSnapshot | undefined;

await t.test('engine starts in its own netns and imports bb', async (t) => {
  const t0 = Date.now();
  E = await startEngine(NAME);
  t.comment(`dockerd ready in ${Date.now() - t0} ms (pid ${E.dockerdPid})`);
  t.ok(E.running, 'dockerd is running');
  t.ok((await netnsList()).includes('tse-hx'), 'netns tse-hx exists');
  const ver = await E.dockerOk(['version', '--format', '{{.Server.Version}}']);
  t.match(ver, /^\d+\.\d+/, `server version ${ver}`);
  const hostname = await E.dockerOk(['info', '--format', '{{.Name}}']);
  t.equal(hostname, 'tse-hx', 'engine has its own UTS namespace');
  await ensureBusyboxImage(E);
  t.equal(await E.dockerOk(['run', '--rm', 'bb', 'echo', 'hi']), 'hi', 'bb runs');
  base = await snapshotHost(E);
  t.ok(base.links.some((l) => l.startsWith('docker0 bridge')), 'docker0 is in the engine netns');
  t.ok(base.iptables.some((l) => l === ':DOCKER - [0:0]'), 'Docker chains in the engine netns iptables');
  t.notOk((await rootLinks()).includes('docker0') && !rootBefore.includes('docker0'), 'no docker0 in the root netns');
});

if (!E || !base) {
  t.fail('engine did not start; skipping the rest');
} else {
  const e = E;
  const s0 = base;
  t.teardown(() => destroyEngine(e));

  await t.test('bridge network: run, ping by IP and name, snapshot sees it', async (t) => {
    await e.dockerOk(['network', 'create', '--subnet', '10.9.0.0/24', 'dnet']);
    await runSleeper(e, 'a1', ['--network', 'dnet']);
    await runSleeper(e, 'a2', ['--network', 'dnet']);
    t.equal(await containerIPv4(e, 'a1'), '10.9.0.2', 'a1 got 10.9.0.2');
    const ip2 = await containerIPv4(e, 'a2');
    t.equal(ip2, '10.9.0.3', 'a2 got 10.9.0.3');
    t.equal((await ping(e, 'a1', ip2)).code, 0, 'a1 pings a2 by IP');
    t.equal((await ping(e, 'a2', 'a1')).code, 0, 'a2 pings a1 by name');
    t.not((await ping(e, 'a1', '10.9.0.77', { waitSec: 1 })).code, 0, 'ping to a free address fails (negative control)');
    const s1 = await snapshotHost(e);
    const d = diffSnapshots(s0, s1);
    t.ok(d.some((l) => / \+ br-\w+ bridge -/.test(l)), 'snapshot diff shows the new bridge');
    t.ok(d.some((l) => /\+ veth\w+ veth br-/.test(l)), 'snapshot diff shows the veths');
    t.ok(d.some((l) => l.includes('br-') && l.includes('-A DOCKER-ISOLATION')), 'snapshot diff shows iptables rules');
    const problems = await removeAllContainersAndNetworks(e);
    t.same(problems, [], 'everything removed');
    const s2 = await snapshotHost(e);
    t.same(diffSnapshots(s0, s2), [], 'snapshot equal to the base after removal');
  });

  await t.test('dockerd restarts in the same netns', async (t) => {
    await runSleeper(e, 'r1', ['--restart', 'always']);
    await stopDockerd(e, { keepNetns: true });
    t.notOk(e.running, 'dockerd stopped');
    t.same(await procsOf(NAME), [], 'no dockerd/containerd/shim left after stop');
    t.ok((await netnsList()).includes('tse-hx'), 'netns kept');
    await startDockerd(e);
    t.ok(e.running, 'dockerd running again');
    const st = await waitFor(
      async () => (await e.dockerOk(['inspect', '-f', '{{.State.Running}}', 'r1'])) === 'true',
      { timeoutMs: 15_000, what: 'r1 restarted' },
    );
    t.ok(st, 'restart-always container is back');
    t.match(await nsExecOk(e, ['ip', '-o', 'link', 'show', 'docker0']), /docker0/, 'nsExec sees docker0');
    await e.dockerOk(['rm', '-f', 'r1']);
  });

  await t.test('destroyEngine leaves nothing behind', async (t) => {
    await runSleeper(e, 'z1'); // a running container at destroy time
    await destroyEngine(e);
    t.same(await procsOf(NAME), [], 'no processes refer to /tmp/tse/hx');
    t.notOk((await netnsList()).includes('tse-hx'), 'netns gone');
    // (other projects' tests may add links to the root netns meanwhile: look for ours only)
    const added = (await rootLinks()).filter((l) => !rootBefore.includes(l) && /^(veth|br-|docker|ts)/.test(l));
    t.same(added, [], 'no docker/veth/tsnet links left in the root netns');
    t.same(
      tracked().filter((x) => x.includes(NAME)),
      [],
      'nothing left in the cleanup registry',
    );
    const r = await runOk('sh', ['-c', 'test -e /tmp/tse/hx && echo present || echo absent']);
    t.equal(r.stdout.trim(), 'absent', 'state dir removed');
  });
}
