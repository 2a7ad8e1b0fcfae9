// The "outside machine" of the network-edge e2e tests (edge.test.ts): a network namespace of its
// own (tsed-out), wired to an engine's netns by a veth pair, addresses from the documentation
// ranges (198.51.100.0/24, 2001:db8:51::/64). The engine's default routes point at it, so egress
// leaves through it. It runs a small server that answers every TCP connection and UDP datagram
// with the source address it saw ("src=..."), and reports them to the test.
//
// Cleanup: a sentinel process (`sleep`) is registered with the harness' cleanup registry (kind
// 'pid'); a detached watcher deletes the namespace (and kills what runs in it) as soon as the
// sentinel or the test process is gone, whichever way that happens (teardown, exit handler, or the
// reaper after a SIGKILL). Deleting the namespace deletes the veth pair and every route over it.
//
// Also here: probes and servers that run in a given netns (engine, outside, a container's), the
// drop counters of tsnet's commented firewall rules, and `tsnet status --json`.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { track } from './cleanup.js';
import { nsExec, type Engine } from './engine.js';
import { alive, run, runOk, sleep, sysEnv, type RunResult } from './proc.js';
import { TSNET_CLI } from './tsnet.js';
import { waitFor } from './wait.js';

export const OUT_NS = 'tsed-out';
export const OUT_NS_PATH = `/run/netns/${OUT_NS}`;
/** the engine's end of the veth pair */
export const ENGINE_IF = 'edout0';
export const ENGINE_IP = '198.51.100.1';
export const OUTSIDE_IP = '198.51.100.2';
export const ENGINE_IP6 = '2001:db8:51::1';
export const OUTSIDE_IP6 = '2001:db8:51::2';
/** port of the outside server (tcp and udp) */
export const OUTSIDE_PORT = 7777;

// ---------- small node programs run in other namespaces (argv only, no shell) ----------

/** server PORT TAG: answers tcp and udp on [::]:PORT (dual stack) with "TAG src=ADDR\n"; logs one JSON line per hit. */
const SERVER_JS = `
const net = require('net'), dgram = require('dgram');
const port = Number(process.argv[1]), tag = process.argv[2] || 'srv';
const clean = (a) => String(a).replace(/^::ffff:/, '');
const report = (proto, src) => console.log(JSON.stringify({ hit: true, proto, src, at: Date.now() }));
let up = 0;
const ready = () => { if (++up === 2) console.log(JSON.stringify({ ready: true })); };
net.createServer((s) => {
  const src = clean(s.remoteAddress);
  report('tcp', src);
  s.on('error', () => {});
  s.end(tag + ' src=' + src + '\\n');
}).listen({ port, host: '::' }, ready);
const u = dgram.createSocket({ type: 'udp6' });
u.on('message', (m, r) => {
  const src = clean(r.address);
  report('udp', src);
  u.send(tag + ' src=' + src + '\\n', r.port, r.address);
});
u.bind(port, '::', ready);
`;

/**
 * probe PROTO HOST PORT TIMEOUT_MS [PAYLOAD]: tcp connects (sends PAYLOAD if given) and prints
 * what comes back until the peer closes; udp sends PAYLOAD (default "ping") and prints the first
 * answer. Exit 0 with an answer, 2 on an error (its code on stderr), 3 on timeout.
 */
const PROBE_JS = `
const [proto, host, port, ms, payload] = process.argv.slice(1);
let out = '';
const done = (code, why) => { if (why) process.stderr.write(why); process.stdout.write(out); process.exit(code); };
setTimeout(() => done(out ? 0 : 3, out ? '' : 'TIMEOUT'), Number(ms));
if (proto === 'udp') {
  const s = require('dgram').createSocket(host.includes(':') ? 'udp6' : 'udp4');
  s.on('message', (m) => { out += m; done(0); });
  s.on('error', (e) => done(2, String(e.code || e.message)));
  s.send(payload || 'ping', Number(port), host);
} else {
  const c = require('net').connect({ host, port: Number(port) });
  c.on('data', (d) => { out += d; });
  c.on('end', () => done(out ? 0 : 4, out ? '' : 'EMPTY'));
  c.on('error', (e) => done(2, String(e.code || e.message)));
  c.on('connect', () => { if (payload) c.write(payload); });
}
`;

/** portcheck PROTO PORT [HOST]: binds PORT; prints "free" (exit 0) or the error code (exit 1). */
const PORTCHECK_JS = `
const [proto, port, host] = process.argv.slice(1);
const fail = (e) => { console.log(String(e.code || e.message)); process.exit(1); };
if (proto === 'udp') {
  const s = require('dgram').createSocket('udp4');
  s.on('error', fail);
  s.bind(Number(port), host || '0.0.0.0', () => { console.log('free'); process.exit(0); });
} else {
  const s = require('net').createServer();
  s.on('error', fail);
  s.listen({ port: Number(port), host: host || '0.0.0.0' }, () => { console.log('free'); process.exit(0); });
}
`;

/** Run argv inside the netns at nsPath (nsenter --net, like nsExec). */
export function inNetns(nsPath: string, argv: readonly string[], timeoutMs = 20_000): Promise<RunResult> {
  return run('nsenter', [`--net=${nsPath}`, '--', ...argv], { timeoutMs });
}

export interface ProbeResult {
  ok: boolean;
  out: string;
  /** '' when an answer came; ECONNREFUSED, TIMEOUT, ... otherwise */
  err: string;
  ms: number;
}

/** A tcp/udp exchange from inside the netns at nsPath (see PROBE_JS). */
export async function probeFrom(
  nsPath: string,
  proto: 'tcp' | 'udp',
  host: string,
  port: number,
  { timeoutMs = 2_000, payload = '' } = {},
): Promise<ProbeResult> {
  const r = await inNetns(nsPath, [process.execPath, '-e', PROBE_JS, proto, host, String(port), String(timeoutMs), payload], timeoutMs + 15_000);
  return { ok: r.code === 0 && r.stdout.length > 0, out: r.stdout, err: r.code === 0 ? '' : r.stderr.trim() || `exit ${r.code}`, ms: r.ms };
}

export const HTTP_GET = 'GET / HTTP/1.0\r\n\r\n';

/** HTTP GET / (busybox httpd) from inside the netns at nsPath; ok when the body holds `expect`. */
export async function httpFrom(nsPath: string, host: string, port: number, expect: string, timeoutMs = 2_000): Promise<ProbeResult> {
  const url = host.includes(':') ? `[${host}]` : host;
  const r = await probeFrom(nsPath, 'tcp', host, port, { timeoutMs, payload: `GET / HTTP/1.0\r\nHost: ${url}\r\n\r\n` });
  return { ...r, ok: r.ok && r.out.includes(expect) };
}

/** Is PORT free in the netns (can another process bind it)? Returns "free" or the error code. */
export async function portState(nsPath: string, proto: 'tcp' | 'udp', port: number, host = '0.0.0.0'): Promise<string> {
  const r = await inNetns(nsPath, [process.execPath, '-e', PORTCHECK_JS, proto, String(port), host]);
  return r.stdout.trim() || r.stderr.trim();
}

// ---------- background processes in a netns ----------

export interface NsProcess {
  readonly pid: number;
  /** stdout lines so far */
  readonly lines: string[];
  readonly running: boolean;
  stop(): Promise<void>;
}

/** Start argv in the netns at nsPath, registered for cleanup; its stdout lines are collected. */
export function spawnInNetns(nsPath: string, argv: readonly string[], what: string): NsProcess {
  const child: ChildProcess = spawn('nsenter', [`--net=${nsPath}`, '--', ...argv], { stdio: ['ignore', 'pipe', 'pipe'], env: sysEnv() });
  const pid = child.pid;
  if (!pid) throw new Error(`could not spawn ${what}`);
  const untrack = track({ kind: 'pid', pid, what });
  const lines: string[] = [];
  let buf = '';
  let exited = false;
  const gone = new Promise<void>((res) => {
    child.on('exit', () => {
      exited = true;
      untrack();
      res();
    });
    child.on('error', () => {
      exited = true;
      untrack();
      res();
    });
  });
  child.stdout?.on('data', (b: Buffer) => {
    buf += b.toString();
    const parts = buf.split('\n');
    buf = parts.pop() ?? '';
    lines.push(...parts);
  });
  child.stderr?.on('data', (b: Buffer) => lines.push(`stderr: ${b.toString().trim()}`));
  return {
    pid,
    lines,
    get running() {
      return !exited && alive(pid);
    },
    async stop() {
      if (exited) return;
      try {
        process.kill(pid, 'SIGTERM');
      } catch {
        /* gone */
      }
      const keep = setInterval(() => undefined, 1_000);
      const timer = setTimeout(() => {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          /* gone */
        }
      }, 3_000);
      await gone;
      clearTimeout(timer);
      clearInterval(keep);
    },
  };
}

/** The echo-source server (SERVER_JS) on PORT in the netns at nsPath; resolves when it listens. */
export async function startSourceServer(nsPath: string, port: number, tag: string, what: string): Promise<NsProcess> {
  const p = spawnInNetns(nsPath, [process.execPath, '-e', SERVER_JS, String(port), tag], what);
  try {
    await waitFor(() => p.lines.some((l) => l.includes('"ready"')) || (!p.running ? Promise.reject(new Error(`${what} exited: ${p.lines.join(' | ')}`)) : false), {
      timeoutMs: 10_000,
      intervalMs: 50,
      what: `${what} listening`,
    });
  } catch (err) {
    await p.stop();
    throw err;
  }
  return p;
}

/** A mark for hitsOf: what the server reported after it. */
export function hitMark(p: NsProcess): number {
  return p.lines.length;
}

/** Source addresses the server reported, from a hitMark on. */
export function hitsOf(p: NsProcess, from = 0): Array<{ proto: string; src: string }> {
  return p.lines.slice(from).flatMap((l) => {
    try {
      const j = JSON.parse(l) as { hit?: boolean; proto: string; src: string };
      return j.hit ? [{ proto: j.proto, src: j.src }] : [];
    } catch {
      return [];
    }
  });
}

// ---------- the outside namespace ----------

async function netnsExists(ns: string): Promise<boolean> {
  if (existsSync(`/run/netns/${ns}`)) return true;
  const r = await run('ip', ['netns', 'list']);
  return r.stdout.split('\n').some((l) => l.split(' ')[0] === ns);
}

/** Kill what runs in the namespace and delete it (idempotent). */
export async function removeNetns(ns: string): Promise<void> {
  if (!(await netnsExists(ns))) return;
  const pids = (await run('ip', ['netns', 'pids', ns])).stdout.split('\n').filter(Boolean).map(Number);
  for (const p of pids) {
    try {
      process.kill(p, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
  const r = await run('ip', ['netns', 'del', ns]);
  if (r.code !== 0 && existsSync(`/run/netns/${ns}`)) throw new Error(`ip netns del ${ns}: ${r.stderr.trim()}`);
}

/** Watches the test process and the sentinel; when either is gone, removes the namespace. */
const WATCHER_SH = `
t=$1 s=$2 ns=$3
up() { [ -e /proc/$1 ] && [ "$(awk '{print $3}' /proc/$1/stat 2>/dev/null)" != Z ]; }
while up "$t" && up "$s"; do sleep 0.3; done
for p in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$p" 2>/dev/null; done
ip netns del "$ns" 2>/dev/null
exit 0
`;

export interface Outside {
  readonly ns: string;
  readonly nsPath: string;
  /** the echo-source server on OUTSIDE_PORT (tcp+udp, IPv4 and IPv6) */
  readonly server: NsProcess;
  /** `ip ARGS` in the outside namespace (throws on failure) */
  ip(args: readonly string[]): Promise<RunResult>;
  /** tcp/udp exchange from the outside */
  probe(proto: 'tcp' | 'udp', host: string, port: number, opts?: { timeoutMs?: number; payload?: string }): Promise<ProbeResult>;
  http(host: string, port: number, expect: string, timeoutMs?: number): Promise<ProbeResult>;
  /** route DST via the engine (198.51.100.1 or 2001:db8:51::1); returns a function that removes it */
  routeVia(dst: string): Promise<() => Promise<void>>;
  destroy(): Promise<void>;
}

/**
 * Creates tsed-out, the veth pair (edout0 in the engine's netns, eth0 outside), addresses, the
 * engine's default routes via the outside, and the echo-source server. Leftovers of an earlier run
 * are removed first.
 */
export async function createOutside(e: Engine): Promise<Outside> {
  await removeNetns(OUT_NS);
  // a stale engine-side veth would be gone with its peer; be sure anyway
  await nsExec(e, ['ip', 'link', 'del', ENGINE_IF]);
  await runOk('ip', ['netns', 'add', OUT_NS]);
  const sentinel = spawn('sleep', ['86400'], { detached: true, stdio: 'ignore', env: sysEnv() });
  const spid = sentinel.pid;
  if (!spid) {
    await removeNetns(OUT_NS);
    throw new Error('could not spawn the sentinel of the outside namespace');
  }
  sentinel.unref();
  const untrack = track({ kind: 'pid', pid: spid, what: `sentinel of netns ${OUT_NS}` });
  const watcher = spawn('setsid', ['/bin/bash', '-c', WATCHER_SH, 'watcher', String(process.pid), String(spid), OUT_NS], {
    detached: true,
    stdio: 'ignore',
    env: sysEnv(),
  });
  watcher.on('error', () => {});
  watcher.unref();

  let server: NsProcess | undefined;
  const destroy = async () => {
    await server?.stop();
    await removeNetns(OUT_NS);
    try {
      process.kill(spid, 'SIGKILL');
    } catch {
      /* gone */
    }
    untrack();
  };
  const ipOut = (args: readonly string[]) => runOk('ip', ['-n', OUT_NS, ...args]);
  const ipEng = (args: readonly string[]) => runOk('ip', ['-n', e.netns, ...args]);
  try {
    await ipOut(['link', 'set', 'lo', 'up']);
    await ipEng(['link', 'add', ENGINE_IF, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', OUT_NS]);
    await ipEng(['addr', 'add', `${ENGINE_IP}/24`, 'dev', ENGINE_IF]);
    await ipEng(['-6', 'addr', 'add', `${ENGINE_IP6}/64`, 'dev', ENGINE_IF, 'nodad']);
    await ipOut(['addr', 'add', `${OUTSIDE_IP}/24`, 'dev', 'eth0']);
    await ipOut(['-6', 'addr', 'add', `${OUTSIDE_IP6}/64`, 'dev', 'eth0', 'nodad']);
    await ipEng(['link', 'set', ENGINE_IF, 'up']);
    await ipOut(['link', 'set', 'eth0', 'up']);
    await ipEng(['route', 'replace', 'default', 'via', OUTSIDE_IP]);
    await ipEng(['-6', 'route', 'replace', 'default', 'via', OUTSIDE_IP6]);
    server = await startSourceServer(OUT_NS_PATH, OUTSIDE_PORT, 'outside', `source server in ${OUT_NS}`);
  } catch (err) {
    await destroy();
    throw err;
  }
  const srv = server;
  return {
    ns: OUT_NS,
    nsPath: OUT_NS_PATH,
    server: srv,
    ip: ipOut,
    probe: (proto, host, port, opts) => probeFrom(OUT_NS_PATH, proto, host, port, opts),
    http: (host, port, expect, timeoutMs) => httpFrom(OUT_NS_PATH, host, port, expect, timeoutMs),
    async routeVia(dst: string) {
      const v6 = dst.includes(':');
      const args = [...(v6 ? ['-6'] : []), 'route', 'replace', dst, 'via', v6 ? ENGINE_IP6 : ENGINE_IP];
      await ipOut(args);
      return async () => {
        await run('ip', ['-n', OUT_NS, ...(v6 ? ['-6'] : []), 'route', 'del', dst]);
      };
    },
    destroy,
  };
}

// ---------- firewall counters and rules ----------

/** Packet counts of tsnet's commented rules ("tsnet: not allowed" → n), summed over tables and chains. */
export async function dropCounters(e: Engine, v6 = false): Promise<Map<string, number>> {
  const bin = v6 ? 'ip6tables-save' : 'iptables-save';
  const r = await nsExec(e, [bin, '-c']);
  if (r.code !== 0) throw new Error(`${bin} -c in ${e.netns}: ${r.stderr.trim()}`);
  const m = new Map<string, number>();
  for (const l of r.stdout.split('\n')) {
    const c = /^\[(\d+):\d+\] .*--comment (?:"(tsnet: [^"]*)"|(tsnet:\S*))/.exec(l);
    if (!c) continue;
    const name = c[2] ?? c[3] ?? '';
    m.set(name, (m.get(name) ?? 0) + Number(c[1]));
  }
  return m;
}

export function counterDelta(before: Map<string, number>, after: Map<string, number>, names: readonly string[]): number {
  return names.reduce((s, n) => s + ((after.get(n) ?? 0) - (before.get(n) ?? 0)), 0);
}

/** Does any tsnet rule carry this comment (so a counter can rise at all)? */
export function hasCounter(m: Map<string, number>, name: string): boolean {
  return m.has(name);
}

/** `iptables-save -t nat` (or ip6tables) lines, counters zeroed, '#' lines dropped. */
export async function natRules(e: Engine, v6 = false): Promise<string[]> {
  const bin = v6 ? 'ip6tables-save' : 'iptables-save';
  const r = await nsExec(e, [bin, '-t', 'nat']);
  if (r.code !== 0) throw new Error(`${bin} -t nat: ${r.stderr.trim()}`);
  return r.stdout
    .split('\n')
    .filter((l) => l.trim() && !l.startsWith('#'))
    .map((l) => l.replace(/\[\d+:\d+\]/g, '[0:0]'));
}

/** `ipset save` in the engine's netns, sorted (set contents are unordered). */
export async function ipsetSave(e: Engine): Promise<string[]> {
  const r = await nsExec(e, ['ipset', 'save']);
  return r.stdout.split('\n').filter(Boolean).sort();
}

// ---------- tsnet CLI ----------

/** `tsnet status --state-dir DIR --json`, parsed. */
export async function tsnetStatusJson(stateDir: string): Promise<Record<string, unknown>> {
  const r = await runOk(process.execPath, [TSNET_CLI, 'status', '--state-dir', stateDir, '--json']);
  return JSON.parse(r.stdout) as Record<string, unknown>;
}

export interface Published {
  proto: string;
  hostIp: string;
  hostPort: number;
  containerPort: number;
  raw: unknown;
}

/**
 * An endpoint's `published` list, whatever its entries look like: objects with hostPort-like
 * fields, or strings in the status text form `0.0.0.0:8080->10.0.0.2:80/tcp`.
 */
export function parsePublished(list: unknown): Published[] {
  if (!Array.isArray(list)) return [];
  return list.flatMap((x): Published[] => {
    if (typeof x === 'string') {
      const m = /^\[?([^\]]*?)\]?:(\d+)->.*:(\d+)\/(\w+)$/.exec(x);
      return m ? [{ hostIp: m[1]!, hostPort: Number(m[2]), containerPort: Number(m[3]), proto: m[4]!, raw: x }] : [];
    }
    if (x && typeof x === 'object') {
      const o = x as Record<string, unknown>;
      const num = (...keys: string[]) => {
        for (const k of keys) if (typeof o[k] === 'number') return o[k] as number;
        return 0;
      };
      const str = (...keys: string[]) => {
        for (const k of keys) if (typeof o[k] === 'string') return o[k] as string;
        return '';
      };
      return [{ proto: str('proto', 'protocol', 'Proto'), hostIp: str('hostIp', 'hostIP', 'HostIP'), hostPort: num('hostPort', 'HostPort'), containerPort: num('containerPort', 'port', 'Port'), raw: x }];
    }
    return [];
  });
}

/** The published ports of the endpoint whose IPv4 address is `address`, per `tsnet status --json`. */
export async function publishedOf(stateDir: string, address: string): Promise<Published[] | undefined> {
  const st = await tsnetStatusJson(stateDir);
  const eps = Array.isArray(st.endpoints) ? (st.endpoints as Array<Record<string, unknown>>) : [];
  const ep = eps.find((x) => typeof x.address === 'string' && x.address.split('/')[0] === address);
  return ep ? parsePublished(ep.published) : undefined;
}

/** `node dist/cli.js ARGS` (policy set/show/clear ...), never throws. */
export function tsnetCli(args: readonly string[]): Promise<RunResult> {
  return run(process.execPath, [TSNET_CLI, ...args], { timeoutMs: 30_000 });
}

/** Container's init pid and its netns path (a host process can join it: nsenter --net=PATH). */
export async function containerNetns(e: Engine, c: string): Promise<string> {
  const pid = await e.dockerOk(['inspect', '-f', '{{.State.Pid}}', c]);
  if (!/^[1-9]\d*$/.test(pid)) throw new Error(`container ${c} has no pid (${pid})`);
  return `/proc/${pid}/ns/net`;
}

export { sleep };
