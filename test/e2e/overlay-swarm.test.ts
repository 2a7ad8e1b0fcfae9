// tsnet as a Swarm overlay, end to end: three private engines in their own namespaces joined by an
// underlay (test/e2e/lib/underlay.ts), a swarm across them, the managed plugin built once with
// plugin/build.sh and installed on each as tsnet-swarm:latest with TSNET_SCOPE=global, as
// docs/overlay.md tells users. The scenarios run in order on one cluster and build on each other.
// Run (as root, under the machine-wide e2e lock; after npx tsc -p tsconfig.json):
//   flock /tmp/tsnet-e2e.lock npx tap run --reporter=terse --timeout=900 test/e2e/overlay-swarm.test.ts
import t, { type Test } from 'tap';
import { existsSync } from 'node:fs';
import { createEngineNetns, destroyEngine, ensureBusyboxImage, nsExec, nsExecOk, startDockerd, stopDockerd, type Engine } from './lib/engine.js';
import { BB } from './lib/containers.js';
import { pluginLines, removeAllPlugins } from './lib/plugin.js';
import { TSNET_CLI } from './lib/tsnet.js';
import { waitFor } from './lib/wait.js';
import { expectIdle, withDiagnostics } from './lib/scenario.js';
import { pluginSocketPath } from './lib/plugin.js';
import { REPO_ROOT } from './lib/tsnet.js';
import { join } from 'node:path';
import { runOk } from './lib/proc.js';
import { createOutside, createUnderlay, type Underlay } from './lib/underlay.js';
import { installPlugin, pluginCall, runningTasks, swarmInit, swarmJoin, waitReady, type SwarmNode } from './lib/swarm.js';

t.setTimeout(900_000);
const T0 = Date.now();
const P = 'tsnet-swarm:latest';
const OUTSIDE_IP = '10.251.0.100';
const HTTPD = 'mkdir -p /w && hostname > /w/index.html && exec httpd -f -p 80 -h /w';
/** Sends tsnet's VXLAN-wrapped gratuitous ARP from one address to a node, as any host could. */
const SEND_VXLAN = join(REPO_ROOT, 'test', 'integration', 'fixtures', 'send-vxlan.mjs');

let U: Underlay | undefined;
let OUT: Engine | undefined;
const nodes: SwarmNode[] = [];
let blocked: string | undefined;
let vxlan = '';

const [A, B, C] = [0, 1, 2].map((i) => () => nodes[i] as SwarmNode) as [() => SwarmNode, () => SwarmNode, () => SwarmNode];

/** Every scenario ends with the idempotence check on each running node: a dry-run reconcile plans nothing. */
async function idleEverywhere(t: Test, external?: string): Promise<void> {
  for (const n of nodes) {
    const passing = t.passing();
    await expectIdle(t, n.e.running && n.pluginId ? pluginSocketPath(n.e, n.pluginId) : undefined, `tsnet on ${n.e.name}`, external);
    if (passing && !t.passing()) t.comment(`--- ${n.e.name}'s built-in chains, where tsnet's jumps live:\n${await builtinChains(n.e)}`);
  }
}

/** The rules of the built-in chains tsnet jumps from (and DOCKER-USER), as iptables-save prints them. */
async function builtinChains(e: Engine): Promise<string> {
  const out: string[] = [];
  for (const tool of ['iptables-save', 'ip6tables-save']) {
    const r = await nsExec(e, [tool]);
    out.push(`${tool}:`, ...r.stdout.split('\n').filter((l) => /^\*|^-A (FORWARD|DOCKER-USER|PREROUTING|OUTPUT|POSTROUTING) /.test(l)));
  }
  return out.join('\n');
}

/**
 * `external` names what Docker changed on the hosts behind tsnet's back in the scenario (its own
 * iptables rules): tsnet may then have a repair to make (scenario.ts, expectIdle).
 */
function scenario(name: string, fn: (t: Test) => Promise<void>, external?: string) {
  const body = async (tt: Test) => {
    await fn(tt);
    await idleEverywhere(tt, external);
  };
  return t.test(name, blocked ? { skip: `not run: ${blocked}` } : {}, (tt) => withDiagnostics(tt, body, (tt) => {
    for (const n of nodes) {
      if (n.pluginId) tt.comment(`--- plugin on ${n.e.name}:\n${pluginLines(n.e, n.pluginId).slice(-12).map((l) => `[${l.level}] ${l.text.slice(0, 400)}`).join('\n')}`);
      tt.comment(`--- dockerd ${n.e.name}:\n${n.e.dockerdLogTail(8)}`);
    }
  }));
}

/** GET http://HOST/ from a container (busybox nc); the body, '' when nothing answers. */
async function httpFrom(e: Engine, from: string, host: string): Promise<string> {
  const r = await e.docker(['exec', from, 'sh', '-c', `printf 'GET / HTTP/1.0\\r\\n\\r\\n' | timeout 5 nc -w 2 ${host} 80`], { timeoutMs: 20_000 });
  return r.code === 0 ? r.stdout.split('\r\n\r\n').slice(1).join('').trim() : '';
}

const pingFrom = async (e: Engine, from: string, target: string, size?: number) =>
  (await e.docker(['exec', from, 'ping', '-c1', '-W2', ...(size ? ['-s', String(size)] : []), target], { timeoutMs: 20_000 })).code === 0;

/** Each running container of `service` on every node: its IP on `net`, its MAC, where it runs. */
async function taskContainers(service: string, net: string): Promise<Array<{ n: SwarmNode; id: string; ip: string; mac: string }>> {
  const out: Array<{ n: SwarmNode; id: string; ip: string; mac: string }> = [];
  for (const n of nodes) {
    if (!n.e.running) continue;
    const ids = (await n.e.dockerOk(['ps', '-q', '--filter', `label=com.docker.swarm.service.name=${service}`])).split('\n').filter(Boolean);
    for (const id of ids) {
      const [ip, mac] = (await n.e.dockerOk(['inspect', '-f', `{{(index .NetworkSettings.Networks "${net}").IPAddress}} {{(index .NetworkSettings.Networks "${net}").MacAddress}}`, id])).split(' ');
      out.push({ n, id: id.slice(0, 12), ip: ip ?? '', mac: mac ?? '' });
    }
  }
  return out;
}

/** tsnet's links in a node's namespace. */
async function tsnetLinks(e: Engine): Promise<string[]> {
  return (await nsExecOk(e, ['ip', '-o', 'link', 'show'])).split('\n').flatMap((l) => {
    const m = /^\d+: (ts(?:br-|vx-|v|c|m)[^:@]*)/.exec(l);
    return m?.[1] ? [m[1]] : [];
  });
}

/** The vxlan device's entries toward remote hosts (learned and static), as `mac dst`. */
async function remoteEntries(e: Engine): Promise<Array<{ mac: string; dst: string; state: string }>> {
  const r = await nsExec(e, ['bridge', '-j', 'fdb', 'show', 'dev', vxlan]);
  if (r.code !== 0) return [];
  return (JSON.parse(r.stdout) as Array<{ mac: string; dst?: string; state?: string }>).flatMap((x) => (x.dst ? [{ mac: x.mac, dst: x.dst, state: x.state ?? '' }] : []));
}

/** Everything of tsnet's a node's firewall and ipsets hold. */
async function tsnetFirewall(e: Engine): Promise<string[]> {
  const rules = (await nsExecOk(e, ['iptables-save'])).split('\n').filter((l) => /TSNET|tsnet/.test(l));
  const sets = (await nsExecOk(e, ['ipset', 'list', '-n'])).split('\n').filter(Boolean);
  return [...rules, ...sets];
}

await t.test('setup: underlay, three engines, the plugin on each, a swarm', async (t) => {
  blocked = 'the cluster could not be set up';
  t.ok(existsSync(TSNET_CLI), 'tsnet is built');
  U = await createUnderlay('ovul');
  for (const [i, name] of ['ova', 'ovb', 'ovc'].entries()) {
    const e = await createEngineNetns(name);
    const ip = `10.251.0.${i + 1}`;
    await U.attach(e, ip);
    nodes.push({ e, ip });
  }
  // the three dockerds start and import bb side by side (each waits on its own socket)
  await Promise.all(nodes.map(async (n) => {
    await startDockerd(n.e);
    await ensureBusyboxImage(n.e);
  }));
  OUT = await createOutside('ovout', U, OUTSIDE_IP, 'outside');
  const t1 = Date.now();
  const facts = await installPlugin(nodes, P, (n) => [
    'TSNET_SCOPE=global', `state.source=${n.e.stateDir}/tsnet-state`, 'TSNET_LOG_LEVEL=debug', 'TSNET_GC_INTERVAL=5',
    `docker-socket.source=${n.e.sockPath}`, 'DOCKER_HOST=unix:///var/run/docker.sock',
  ]);
  t.comment(`plugin built (${facts.assemble_ms} ms) and installed on 3 engines in ${Date.now() - t1} ms`);
  t.same(await pluginCall(A(), 'NetworkDriver.GetCapabilities', {}), { Scope: 'global', ConnectivityScope: 'global' }, 'TSNET_SCOPE=global: a multi-host driver');
  const token = await swarmInit(A());
  await swarmJoin(B(), A(), token);
  await swarmJoin(C(), A(), token);
  await waitReady(A(), 3);
  blocked = undefined;
  t.comment(`cluster up in ${Date.now() - T0} ms`);
});

t.teardown(async () => {
  for (const n of nodes) {
    if (n.e.running) {
      await n.e.docker(['service', 'rm', 'web', 'web2', 'vip', 'pub'], { timeoutMs: 30_000 }).catch(() => undefined);
      await removeAllPlugins(n.e).catch(() => undefined);
    }
  }
  for (const n of nodes) await destroyEngine(n.e).catch(() => undefined);
  if (OUT) await destroyEngine(OUT).catch(() => undefined);
  await U?.destroy().catch(() => undefined);
  t.comment(`overlay-swarm e2e took ${Math.round((Date.now() - T0) / 1000)} s`);
});

await scenario('a tsnet network and a native overlay, created on the manager', async (t) => {
  blocked = 'the networks could not be created';
  await A().e.dockerOk(['network', 'create', '-d', P, '--attachable', '--subnet', '10.210.0.0/24', 'ov']);
  await A().e.dockerOk(['network', 'create', '-d', 'overlay', '--attachable', '--subnet', '10.211.0.0/24', 'nat']);
  t.equal(await A().e.dockerOk(['network', 'inspect', '-f', '{{.Scope}}', 'ov']), 'swarm', 'a swarm-scoped network');
  const id = await A().e.dockerOk(['network', 'inspect', '-f', '{{.Id}}', 'ov']);
  vxlan = `tsvx-${id.toLowerCase().slice(0, 10)}`;
  const options = JSON.parse(await waitFor(async () => {
    const o = await A().e.dockerOk(['network', 'inspect', '-f', '{{json .Options}}', 'ov']);
    return o.includes('tsnet.vni') ? o : '';
  }, { timeoutMs: 20_000, what: "the leader's allocation in the network's options" })) as Record<string, string>;
  t.same(options, { 'tsnet.mode': 'overlay', 'tsnet.vni': '256', 'tsnet.vxlan-port': '4789' }, 'the leader allocated VNI 256 (below Docker\'s 4096) and Swarm keeps it');
  blocked = undefined;
});

await scenario('a dnsrr service on every node: an attachable container reaches each task by IP, by tasks.web and over HTTP, at full MTU', async (t) => {
  blocked = 'the service did not run';
  await A().e.dockerOk(['service', 'create', '-d', '--name', 'web', '--mode', 'global', '--endpoint-mode', 'dnsrr', '--network', 'ov', '--init', '--no-resolve-image', BB, 'sh', '-c', HTTPD]);
  await waitFor(async () => (await runningTasks(A(), 'web')).length === 3, { timeoutMs: 90_000, intervalMs: 1000, what: 'web running on 3 nodes' });
  await A().e.dockerOk(['run', '-d', '--init', '--name', 'probe', '--network', 'ov', BB, 'sleep', '3600']);
  blocked = undefined;
  const tasks = await taskContainers('web', 'ov');
  t.same(tasks.map((x) => x.n.e.name).sort(), ['ova', 'ovb', 'ovc'], 'one task per node');
  for (const task of tasks) {
    t.ok(await waitFor(() => pingFrom(A().e, 'probe', task.ip), { timeoutMs: 10_000, what: `ping ${task.ip}` }), `ping ${task.ip} on ${task.n.e.name}`);
    t.equal(await httpFrom(A().e, 'probe', task.ip), task.id, `HTTP from the task on ${task.n.e.name}`);
  }
  const names = (await A().e.dockerOk(['exec', 'probe', 'nslookup', 'tasks.web', '127.0.0.11'])).match(/10\.210\.0\.\d+/g) ?? [];
  t.same([...new Set(names)].sort(), tasks.map((x) => x.ip).sort(), 'tasks.web resolves to every task (Docker\'s DNS across nodes)');
  t.ok(await pingFrom(A().e, 'probe', 'tasks.web'), 'ping tasks.web');
  t.equal(await A().e.dockerOk(['exec', 'probe', 'cat', '/sys/class/net/eth0/mtu']), '1450', 'eth0 MTU: underlay 1500 - 50');
  for (const task of tasks.filter((x) => x.n !== A())) t.ok(await pingFrom(A().e, 'probe', task.ip, 1422), `1422 bytes of payload to ${task.n.e.name} (a full 1450 packet)`);
  t.match(await A().e.dockerOk(['exec', 'probe', 'ip', 'route']), /^default via \S+ dev eth1/m, 'egress through docker_gwbridge (eth1): Join gave no gateway');
}, "the nodes' first tasks (Docker makes docker_gwbridge for them and puts its MASQUERADE rule first in nat POSTROUTING, ahead of tsnet's jump)");

await scenario('a VIP-mode service is named in a warning: only dnsrr works on plugin networks', async (t) => {
  const mark = pluginLines(A().e, A().pluginId as string).length;
  await A().e.dockerOk(['service', 'create', '-d', '--name', 'vip', '--network', 'ov', '--init', '--no-resolve-image', BB, 'sleep', '3600']);
  const line = await waitFor(() => pluginLines(A().e, A().pluginId as string).slice(mark).find((l) => /service vip uses a VIP.*--endpoint-mode dnsrr/.test(l.text)),
    { timeoutMs: 30_000, intervalMs: 1000, what: 'the VIP warning' });
  t.equal(line.json?.level, 40, 'logged as a warning');
  await A().e.dockerOk(['service', 'rm', 'vip']);
});

await scenario("tsnet status on the manager: the network's VNI, VXLAN device and port, and the other nodes as peers with their last contact", async (t) => {
  const args = ['status', '--state-dir', `${A().e.stateDir}/tsnet-state`, '--socket', pluginSocketPath(A().e, A().pluginId as string)];
  const model = JSON.parse((await runOk(process.execPath, [TSNET_CLI, ...args, '--json'], { timeoutMs: 60_000 })).stdout) as {
    networks: Array<{ mode: string; spec: { vni?: number; port?: number; vxlan?: string } }>;
    peers?: { from: string; self?: string; peers: Array<{ address: string; source: string; lastContact?: string }> };
  };
  t.match(model.networks.find((n) => n.mode === 'overlay')?.spec, { vni: 256, port: 4789, vxlan }, 'the overlay network with its VNI, port and VXLAN device');
  t.equal(model.peers?.from, 'daemon', "the running daemon's book");
  t.equal(model.peers?.self, A().ip, "this node's address, from DiscoverNew with Self");
  t.same(model.peers?.peers.map((p) => p.address), [B().ip, C().ip], 'the other two nodes are its peers');
  for (const p of model.peers?.peers ?? []) {
    t.ok(['discovery', 'docker'].includes(p.source), `${p.address}: known from ${p.source}`);
    t.ok(p.lastContact && Date.now() - Date.parse(p.lastContact) < 5 * 60_000, `${p.address}: last contact ${p.lastContact}, within this run`);
  }
  const text = (await runOk(process.execPath, [TSNET_CLI, ...args], { timeoutMs: 60_000 })).stdout;
  t.match(text, new RegExp(`swarm peers: 2 \\(the daemon now\\)\\n  this node  ${A().ip.replace(/\./g, '\\.')}`), 'the text form says the same');
  t.comment(text);
});

await scenario('egress: the attachable container reaches the outside namespace', async (t) => {
  t.equal(await httpFrom(A().e, 'probe', OUTSIDE_IP), 'outside', 'HTTP to a host beyond the cluster, NATed by docker_gwbridge');
});

await scenario('VXLAN from a host that is not a node is dropped; the same packet from a node is taken', async (t) => {
  // The outside namespace sits on the underlay like a hostile machine on the hosts' LAN. It sends
  // the network's port and VNI a frame claiming a MAC; node B sends the same kind of frame (the
  // positive control on the same path). A's VXLAN device learns a MAC only from what reached it.
  const send = (from: Engine, src: string, mac: string, ip: string) => nsExecOk(from, [process.execPath, SEND_VXLAN, src, A().ip, '4789', '256', mac, ip]);
  await send(OUT as Engine, OUTSIDE_IP, '02:42:0a:d2:00:fe', '10.210.0.254');
  await send(B().e, B().ip, '02:42:0a:d2:00:fd', '10.210.0.253');
  const learnt = await waitFor(async () => {
    const entries = await remoteEntries(A().e);
    return entries.some((x) => x.mac === '02:42:0a:d2:00:fd') ? entries : undefined;
  }, { timeoutMs: 5_000, intervalMs: 100, what: "A to learn the control frame's MAC" });
  t.equal(learnt.find((x) => x.mac === '02:42:0a:d2:00:fd')?.dst, B().ip, 'control: the frame from node B was taken (A learnt its MAC behind B)');
  t.notOk(learnt.some((x) => x.mac === '02:42:0a:d2:00:fe' || x.dst === OUTSIDE_IP), 'the frame from the outside host was dropped before the VXLAN device saw it');
  const drops = (await nsExecOk(A().e, ['iptables', '-w', '-nvxL', 'TSNET-INPUT'])).split('\n').filter((l) => /DROP/.test(l) && /udp/.test(l));
  t.ok(drops.some((l) => Number(l.trim().split(/\s+/)[0]) >= 1), `TSNET-INPUT counted the drop:\n${drops.join('\n')}`);
});

await scenario('an --internal network with tsnet IPAM: its containers reach each other across nodes, nothing beyond, nothing of another network', async (t) => {
  await A().e.dockerOk(['network', 'create', '-d', P, '--ipam-driver', P, '--attachable', '--internal', '--subnet', '10.212.0.0/24', 'iov']);
  await A().e.dockerOk(['run', '-d', '--init', '--name', 'ia', '--cap-add', 'NET_ADMIN', '--network', 'iov', BB, 'sleep', '3600']);
  await B().e.dockerOk(['run', '-d', '--init', '--name', 'ib', '--network', 'iov', BB, 'sh', '-c', HTTPD]);
  const ib = await B().e.dockerOk(['inspect', '-f', '{{(index .NetworkSettings.Networks "iov").IPAddress}}', 'ib']);
  t.match(ib, /^10\.212\.0\.\d+$/, `tsnet's IPAM gave ib ${ib}`);
  t.ok(await waitFor(() => pingFrom(A().e, 'ia', ib), { timeoutMs: 10_000, what: `ia to reach ${ib}` }), 'A → B on the internal network');
  t.equal(await httpFrom(A().e, 'ia', ib), (await B().e.dockerOk(['inspect', '-f', '{{.Config.Hostname}}', 'ib'])), 'and over HTTP');
  t.notMatch(await A().e.dockerOk(['exec', 'ia', 'ip', 'route']), /^default/m, '--internal: no default route (no docker_gwbridge)');
  // Forged routes: the container (NET_ADMIN) points the outside and the other network at its eth0.
  // Controls on the same targets: probe on ov reaches both.
  const webA = (await taskContainers('web', 'ov')).find((x) => x.n === A()) as { ip: string };
  await A().e.dockerOk(['exec', 'ia', 'ip', 'route', 'add', '10.210.0.0/24', 'dev', 'eth0']);
  await A().e.dockerOk(['exec', 'ia', 'ip', 'route', 'add', 'default', 'dev', 'eth0']);
  t.ok(await pingFrom(A().e, 'probe', webA.ip), `control: probe on ov reaches the web task ${webA.ip} on A`);
  t.notOk(await pingFrom(A().e, 'ia', webA.ip), 'ia on iov does not, even with a route of its own');
  t.equal(await httpFrom(A().e, 'probe', OUTSIDE_IP), 'outside', 'control: probe reaches the outside');
  t.equal(await httpFrom(A().e, 'ia', OUTSIDE_IP), '', 'ia does not, even with a default route of its own');
});

await scenario('--publish mode=host: a dnsrr service on the overlay answers on its node\'s address', async (t) => {
  await A().e.dockerOk(['service', 'create', '-d', '--name', 'pub', '--endpoint-mode', 'dnsrr', '--network', 'ov', '--publish', 'mode=host,published=8080,target=80',
    '--constraint', `node.hostname==${B().e.netns}`, '--init', '--no-resolve-image', BB, 'sh', '-c', HTTPD]);
  await waitFor(async () => (await runningTasks(A(), 'pub')).length === 1, { timeoutMs: 60_000, intervalMs: 1000, what: 'pub running on B' });
  const [task] = await taskContainers('pub', 'ov');
  t.equal(task?.n, B(), 'the task runs on B');
  const body = await waitFor(async () => {
    const r = await nsExec(OUT as Engine, ['sh', '-c', `printf 'GET / HTTP/1.0\\r\\n\\r\\n' | timeout 5 busybox nc -w 2 ${B().ip} 8080`], { timeoutMs: 20_000 });
    const b = r.code === 0 ? r.stdout.split('\r\n\r\n').slice(1).join('').trim() : '';
    return b || undefined;
  }, { timeoutMs: 15_000, intervalMs: 500, what: `HTTP on ${B().ip}:8080 from outside` });
  t.equal(body, task?.id, `the outside host fetched from the task through ${B().ip}:8080`);
  await A().e.dockerOk(['service', 'rm', 'pub']);
});

await scenario("Docker's overlay on the same engines at the same time", async (t) => {
  await A().e.dockerOk(['run', '-d', '--init', '--name', 'na', '--network', 'nat', BB, 'sleep', '3600']);
  await B().e.dockerOk(['run', '-d', '--init', '--name', 'nb', '--network', 'nat', BB, 'sleep', '3600']);
  const nb = await B().e.dockerOk(['inspect', '-f', '{{(index .NetworkSettings.Networks "nat").IPAddress}}', 'nb']);
  t.ok(await waitFor(() => pingFrom(A().e, 'na', nb), { timeoutMs: 15_000, what: 'native overlay ping' }), 'native overlay A → B');
  const webB = (await taskContainers('web', 'ov')).find((x) => x.n === B());
  t.ok(webB && (await pingFrom(A().e, 'probe', webB.ip)), 'and the tsnet overlay A → B meanwhile (both on UDP 4789)');
});

await scenario('scaling up and down leaves no stale forwarding entries', async (t) => {
  await A().e.dockerOk(['service', 'create', '-d', '--name', 'web2', '--replicas', '6', '--endpoint-mode', 'dnsrr', '--network', 'ov', '--init', '--no-resolve-image', BB, 'sh', '-c', HTTPD]);
  await waitFor(async () => (await runningTasks(A(), 'web2')).length === 6, { timeoutMs: 90_000, intervalMs: 1000, what: 'web2 at 6 replicas' });
  const before = await taskContainers('web2', 'ov');
  for (const x of before) t.ok(await waitFor(() => pingFrom(A().e, 'probe', x.ip), { timeoutMs: 10_000, what: `ping ${x.ip}` }), `web2 task ${x.ip} on ${x.n.e.name} answers`)
  await A().e.dockerOk(['service', 'scale', '-d', 'web2=1']);
  await waitFor(async () => (await taskContainers('web2', 'ov')).length === 1, { timeoutMs: 60_000, intervalMs: 1000, what: 'web2 down to 1 container' });
  const live = new Set([...(await taskContainers('web', 'ov')), ...(await taskContainers('web2', 'ov'))].map((x) => x.mac));
  const gone = before.map((x) => x.mac).filter((m) => !live.has(m));
  t.ok(gone.length >= 5, `${gone.length} MACs went`);
  for (const n of nodes) {
    // A removed task's macvlan child comes back to the host when its container goes, and DeleteEndpoint removes it.
    const left = (await nsExecOk(n.e, ['ip', '-o', 'link', 'show', 'type', 'macvlan'])).split('\n').map((l) => /link\/ether (\S+)/.exec(l)?.[1]);
    t.same(left.filter((m) => gone.includes(m as string)), [], `${n.e.name}: no link of a removed task`);
  }
  const t0 = Date.now();
  await waitFor(async () => {
    for (const n of nodes) if ((await remoteEntries(n.e)).some((x) => gone.includes(x.mac))) return false;
    return true;
  }, { timeoutMs: 60_000, intervalMs: 1000, what: 'learned entries of removed tasks to age out' });
  t.pass(`no node has an entry toward a removed task any more (${Date.now() - t0} ms after the scale-down; learned entries age in 30 s)`);
});

await scenario('plugin restart on one node: running containers keep working, nothing leaks, new tasks work', async (t) => {
  const b = B();
  const webB = (await taskContainers('web', 'ov')).find((x) => x.n === b) as { ip: string };
  const links = await tsnetLinks(b.e);
  const fw = await tsnetFirewall(b.e);
  const t0 = Date.now();
  await b.e.dockerOk(['plugin', 'disable', '-f', P], { timeoutMs: 60_000 });
  t.ok(await pingFrom(A().e, 'probe', webB.ip), 'while the plugin is down, the kernel keeps forwarding');
  await b.e.dockerOk(['plugin', 'enable', P], { timeoutMs: 60_000 });
  t.ok(await waitFor(() => pingFrom(A().e, 'probe', webB.ip), { timeoutMs: 30_000, what: 'ping after the restart' }), `reachable ${Date.now() - t0} ms after the disable`);
  const dry = await waitFor(() => pluginCall(b, 'Tsnet.Reconcile', { DryRun: true }).catch(() => undefined), { timeoutMs: 30_000, what: 'the restarted plugin to answer' });
  t.same(dry.Changes, [], 'the restarted plugin plans nothing: its kernel objects were all there');
  t.same((await tsnetLinks(b.e)).sort(), links.sort(), 'the same links');
  t.same((await tsnetFirewall(b.e)).sort(), fw.sort(), 'the same rules and sets');
  await A().e.dockerOk(['service', 'scale', '-d', 'web2=4']);
  await waitFor(async () => (await runningTasks(A(), 'web2')).length === 4, { timeoutMs: 60_000, intervalMs: 1000, what: 'web2 at 4' });
  for (const x of await taskContainers('web2', 'ov')) {
    t.ok(await waitFor(() => pingFrom(A().e, 'probe', x.ip), { timeoutMs: 10_000, what: `ping ${x.ip}` }), `new task ${x.ip} on ${x.n.e.name} answers`);
  }
});

await scenario("an engine stops: the others keep their traffic, its entries go, its tasks move and answer", async (t) => {
  const c = C();
  const webB = (await taskContainers('web', 'ov')).find((x) => x.n === B()) as { ip: string };
  t.ok((await remoteEntries(A().e)).some((x) => x.dst === c.ip), `A floods to ${c.ip} before`);
  const t0 = Date.now();
  await stopDockerd(c.e, { keepNetns: true });
  const stopped = Date.now();
  await waitFor(async () => !(await remoteEntries(A().e)).some((x) => x.dst === c.ip), { timeoutMs: 60_000, intervalMs: 200, what: `A's entries toward ${c.ip} to go` });
  t.pass(`A's entries toward the stopped node went ${Date.now() - stopped} ms after dockerd exited (${stopped - t0} ms to stop it)`);
  t.ok(await pingFrom(A().e, 'probe', webB.ip), 'A still reaches B');
  await waitFor(async () => {
    const tasks = await runningTasks(A(), 'web2');
    return tasks.length === 4 && tasks.every((x) => x.node !== 'tse-ovc');
  }, { timeoutMs: 120_000, intervalMs: 1000, what: "web2's tasks to leave the stopped node" });
  for (const x of await taskContainers('web2', 'ov')) {
    t.ok(await waitFor(() => pingFrom(A().e, 'probe', x.ip), { timeoutMs: 15_000, what: `ping ${x.ip}` }), `task ${x.ip} on ${x.n.e.name} answers`);
  }
});

await scenario('the engine comes back; removing everything leaves no tsnet object on any node', async (t) => {
  await startDockerd(C().e);
  await waitReady(A(), 3, 90_000);
  await A().e.dockerOk(['service', 'rm', 'web', 'web2']);
  await A().e.dockerOk(['rm', '-f', 'probe', 'na', 'ia']);
  await B().e.dockerOk(['rm', '-f', 'nb', 'ib']);
  for (const net of ['ov', 'nat', 'iov']) {
    await waitFor(async () => {
      const r = await A().e.docker(['network', 'rm', net]);
      return r.code === 0 || /No such network|not found/i.test(r.stderr);
    }, { timeoutMs: 60_000, intervalMs: 2000, what: `network ${net} to be removable` });
  }
  for (const n of nodes) {
    const left = await waitFor(async () => {
      const all = [...(await tsnetLinks(n.e)), ...(await tsnetFirewall(n.e))];
      return all.length === 0 ? 'none' : undefined;
    }, { timeoutMs: 60_000, intervalMs: 1000, what: `${n.e.name} to hold no tsnet object` }).catch((err: unknown) => String(err));
    t.equal(left, 'none', `${n.e.name}: no tsnet link, rule or set`);
  }
});
