// A physical LAN made of network namespaces, for macvlan tests and the macvlan bench:
//
//   engine netns                 tsmv-lan (the LAN's switches and router)       tsmv-host
//   lan10 ──veth── up10 ─ seg10 (bridge, 192.168.10.1/24, fd00:10::1/64) ─ h10 ──veth── eth0 192.168.10.50
//   lan20 ──veth── up20 ─ seg20 (bridge, 192.168.20.1/24, fd00:20::1/64)
//
// seg10 and seg20 stand in for VLAN 10 and VLAN 20 of a trunk (this kernel cannot tag); the LAN
// namespace routes between them like the LAN's router. lan10 and lan20 are the parents macvlan
// networks take. tsmv-host is a machine on segment 10.
//
// Cleanup as in outside.ts: a sentinel process registered with the harness, and a detached
// watcher that deletes both namespaces (taking the veth pairs along) when the sentinel or the test
// process goes, however that happens.
import { spawn } from 'node:child_process';
import { track } from './cleanup.js';
import type { Engine } from './engine.js';
import { removeNetns } from './outside.js';
import { run, runOk, sysEnv, type RunResult } from './proc.js';

export const LAN_NS = 'tsmv-lan';
export const LAN_HOST_NS = 'tsmv-host';
export const nsPathOf = (ns: string) => `/run/netns/${ns}`;

export interface Segment {
  /** the parent interface in the engine's netns */
  parent: string;
  bridge: string;
  /** the LAN side of the veth pair */
  uplink: string;
  subnet: string;
  router: string;
  subnet6: string;
  router6: string;
}

export const SEGMENTS: readonly Segment[] = [
  { parent: 'lan10', bridge: 'seg10', uplink: 'up10', subnet: '192.168.10.0/24', router: '192.168.10.1', subnet6: 'fd00:10::/64', router6: 'fd00:10::1' },
  { parent: 'lan20', bridge: 'seg20', uplink: 'up20', subnet: '192.168.20.0/24', router: '192.168.20.1', subnet6: 'fd00:20::/64', router6: 'fd00:20::1' },
];
export const LAN_HOST_IP = '192.168.10.50';
export const LAN_HOST_IP6 = 'fd00:10::50';

const WATCHER_SH = `
t=$1 s=$2; shift 2
up() { [ -e /proc/$1 ] && [ "$(awk '{print $3}' /proc/$1/stat 2>/dev/null)" != Z ]; }
while up "$t" && up "$s"; do sleep 0.3; done
for ns in "$@"; do
  for p in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$p" 2>/dev/null; done
  ip netns del "$ns" 2>/dev/null
done
exit 0
`;

export interface Lan {
  /** `ip ARGS` in the LAN namespace / on the LAN host / in the engine's netns (throw on failure) */
  lan(args: readonly string[]): Promise<RunResult>;
  host(args: readonly string[]): Promise<RunResult>;
  engine(args: readonly string[]): Promise<RunResult>;
  /** argv in a namespace (nsenter --net), never throws */
  inNs(ns: string, argv: readonly string[], timeoutMs?: number): Promise<RunResult>;
  /** the router forwards between the segments (on at creation) */
  routing(on: boolean): Promise<void>;
  destroy(): Promise<void>;
}

/** Builds the LAN for engine `e` (leftovers of an earlier run are removed first). */
export async function createLan(e: Engine): Promise<Lan> {
  for (const ns of [LAN_NS, LAN_HOST_NS]) await removeNetns(ns);
  for (const s of SEGMENTS) await run('ip', ['-n', e.netns, 'link', 'del', s.parent]);
  const sentinel = spawn('sleep', ['86400'], { detached: true, stdio: 'ignore', env: sysEnv() });
  const spid = sentinel.pid;
  if (!spid) throw new Error('could not spawn the sentinel of the LAN namespaces');
  sentinel.unref();
  const untrack = track({ kind: 'pid', pid: spid, what: `sentinel of netns ${LAN_NS}, ${LAN_HOST_NS}` });
  const watcher = spawn('setsid', ['/bin/bash', '-c', WATCHER_SH, 'watcher', String(process.pid), String(spid), LAN_NS, LAN_HOST_NS], {
    detached: true, stdio: 'ignore', env: sysEnv(),
  });
  watcher.on('error', () => {});
  watcher.unref();
  const destroy = async () => {
    for (const ns of [LAN_HOST_NS, LAN_NS]) await removeNetns(ns);
    try {
      process.kill(spid, 'SIGKILL');
    } catch {
      /* gone */
    }
    untrack();
  };
  const ip = (ns: string) => (args: readonly string[]) => runOk('ip', ['-n', ns, ...args]);
  const lan = ip(LAN_NS);
  const host = ip(LAN_HOST_NS);
  const engine = ip(e.netns);
  const inNs = (ns: string, argv: readonly string[], timeoutMs = 20_000) => run('nsenter', [`--net=${nsPathOf(ns)}`, '--', ...argv], { timeoutMs });
  const sysctl = async (ns: string, key: string, value: string) => {
    const r = await inNs(ns, ['sysctl', '-qw', `${key}=${value}`]);
    if (r.code !== 0) throw new Error(`sysctl ${key}=${value} in ${ns}: ${r.stderr.trim()}`);
  };
  try {
    await runOk('ip', ['netns', 'add', LAN_NS]);
    await runOk('ip', ['netns', 'add', LAN_HOST_NS]);
    for (const ns of [LAN_NS, LAN_HOST_NS]) await ip(ns)(['link', 'set', 'lo', 'up']);
    for (const s of SEGMENTS) {
      const len = s.subnet.split('/')[1];
      await lan(['link', 'add', s.bridge, 'type', 'bridge']);
      await lan(['addr', 'add', `${s.router}/${len}`, 'dev', s.bridge]);
      await lan(['-6', 'addr', 'add', `${s.router6}/64`, 'dev', s.bridge, 'nodad']);
      await lan(['link', 'set', s.bridge, 'up']);
      await engine(['link', 'add', s.parent, 'type', 'veth', 'peer', 'name', s.uplink, 'netns', LAN_NS]);
      await lan(['link', 'set', s.uplink, 'master', s.bridge, 'up']);
      await engine(['link', 'set', s.parent, 'up']);
    }
    const seg10 = SEGMENTS[0]!;
    await host(['link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'h10', 'netns', LAN_NS]);
    await lan(['link', 'set', 'h10', 'master', seg10.bridge, 'up']);
    await host(['addr', 'add', `${LAN_HOST_IP}/24`, 'dev', 'eth0']);
    await host(['-6', 'addr', 'add', `${LAN_HOST_IP6}/64`, 'dev', 'eth0', 'nodad']);
    await host(['link', 'set', 'eth0', 'up']);
    await host(['route', 'add', 'default', 'via', seg10.router]);
    await host(['-6', 'route', 'add', 'default', 'via', seg10.router6]);
  } catch (err) {
    await destroy();
    throw err;
  }
  const routing = async (on: boolean) => {
    await sysctl(LAN_NS, 'net.ipv4.ip_forward', on ? '1' : '0');
    await sysctl(LAN_NS, 'net.ipv6.conf.all.forwarding', on ? '1' : '0');
  };
  await routing(true);
  return { lan, host, engine, inNs, routing, destroy };
}

/** What a parent interface looks like from the engine's netns, for before/after comparisons. */
export async function parentState(e: Engine, name: string): Promise<string> {
  const r = await runOk('ip', ['-n', e.netns, '-j', '-d', 'link', 'show', name]);
  const [l] = JSON.parse(r.stdout) as Array<Record<string, unknown>>;
  if (!l) return '(gone)';
  // Counters and the operational state of a veth follow traffic, not configuration.
  const { stats64: _s, operstate: _o, ...rest } = l;
  const uppers = (await runOk('ip', ['-n', e.netns, '-j', 'link', 'show'])).stdout;
  const children = (JSON.parse(uppers) as Array<{ ifname: string; link?: string }>).filter((x) => x.link === name).map((x) => x.ifname);
  return JSON.stringify({ ...rest, children });
}
