// Plain Docker hosts on etcd, for the cluster-network e2e test (issue 14): etcd members, each in a
// namespace of its own on an underlay (test/e2e/lib/underlay.ts), Docker engines beside them with
// tsnet's managed plugin, certificates for a member serving https, and readers of the kernel
// entries tsnet programs on VXLAN devices. Every namespace is made through createEngineNetns, so
// the e2e cleanup sweeps it and every process in it (etcd too), also when the test dies.
import { spawn } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createEngineNetns, nsExec, type Engine } from './engine.js';
import { track } from './cleanup.js';
import { BUILD_SH, pluginId, pluginPid, pluginSocketPath } from './plugin.js';
import { alive, CommandError, fmtCmd, run, runOk, sleep, sysEnv, tail, type RunResult } from './proc.js';
import type { Underlay } from './underlay.js';
import { waitFor } from './wait.js';

export const ETCD_BIN = '/usr/bin/etcd';
export const ETCDCTL_BIN = '/usr/bin/etcdctl';

/** PEM files for a member serving https and requiring client certificates. */
export interface EtcdTlsFiles {
  caFile: string;
  certFile: string;
  keyFile: string;
  clientCertFile: string;
  clientKeyFile: string;
  /** A CA that signed nothing here: whoever trusts only it cannot reach the member. */
  otherCaFile: string;
}

export interface EtcdMember {
  ns: Engine;
  name: string;
  ip: string;
  clientUrl: string;
  peerUrl: string;
  dataDir: string;
  logPath: string;
  pid?: number;
}

export interface EtcdCluster {
  members: EtcdMember[];
  /** Client URLs, one per member. */
  endpoints: string[];
  /** SIGKILL (hard) or SIGTERM (graceful) to member i; resolves once it is gone. */
  stop(i: number, signal?: 'SIGKILL' | 'SIGTERM'): Promise<void>;
  /** Starts member i again on its data directory. */
  start(i: number): Promise<void>;
  running(i: number): boolean;
  /** etcdctl (API v3) against `endpoints` (default: every member), run from member 0's namespace. */
  ctl(args: readonly string[], endpoints?: readonly string[]): Promise<RunResult>;
  /** Waits until every running member says it is healthy. */
  healthy(timeoutMs?: number): Promise<void>;
  logTail(i: number, lines?: number): string;
}

/**
 * A cluster of etcd members, member i in namespace `names[i]` at `ips[i]` on the underlay (client
 * port 2379, peer port 2380), data under the namespace's state dir. With `tls`, members serve
 * https and require a client certificate signed by its CA.
 */
export async function startEtcd(u: Underlay, names: readonly string[], ips: readonly string[], tls?: EtcdTlsFiles): Promise<EtcdCluster> {
  const scheme = tls ? 'https' : 'http';
  const members: EtcdMember[] = [];
  for (const [i, name] of names.entries()) {
    const ns = await createEngineNetns(name);
    const ip = ips[i] as string;
    await u.attach(ns, ip);
    members.push({
      ns, name, ip,
      clientUrl: `${scheme}://${ip}:2379`,
      peerUrl: `http://${ip}:2380`,
      dataDir: join(ns.stateDir, 'etcd-data'),
      logPath: join(ns.stateDir, 'etcd.log'),
    });
  }
  const initialCluster = members.map((m) => `${m.name}=${m.peerUrl}`).join(',');
  const token = `tsnet-e2e-${process.pid}-${Date.now()}`;
  const tlsArgs = tls ? ['--cert-file', tls.certFile, '--key-file', tls.keyFile, '--trusted-ca-file', tls.caFile, '--client-cert-auth'] : [];
  const ctlTls = tls ? ['--cacert', tls.caFile, '--cert', tls.clientCertFile, '--key', tls.clientKeyFile] : [];

  const launch = (m: EtcdMember) => {
    const fd = openSync(m.logPath, 'a');
    const child = spawn('nsenter', [
      `--net=${m.ns.netnsPath}`, '--', ETCD_BIN,
      '--name', m.name, '--data-dir', m.dataDir,
      '--listen-client-urls', m.clientUrl, '--advertise-client-urls', m.clientUrl,
      '--listen-peer-urls', m.peerUrl, '--initial-advertise-peer-urls', m.peerUrl,
      '--initial-cluster', initialCluster, '--initial-cluster-state', 'new', '--initial-cluster-token', token,
      '--logger', 'zap', '--log-level', 'warn',
      ...tlsArgs,
    ], { detached: true, stdio: ['ignore', fd, fd], env: sysEnv() });
    closeSync(fd);
    child.on('error', () => undefined);
    child.unref();
    const pid = child.pid;
    if (!pid) throw new Error(`could not start etcd member ${m.name}`);
    m.pid = pid; // nsenter execs etcd: this is etcd's pid
    const untrack = track({ kind: 'pid', pid, what: `etcd ${m.name}` });
    child.on('exit', () => {
      untrack();
      if (m.pid === pid) m.pid = undefined;
    });
  };

  const cluster: EtcdCluster = {
    members,
    endpoints: members.map((m) => m.clientUrl),
    async stop(i, signal = 'SIGKILL') {
      const m = members[i] as EtcdMember;
      if (m.pid) await stopPid(m.pid, signal);
      m.pid = undefined;
    },
    async start(i) {
      const m = members[i] as EtcdMember;
      if (alive(m.pid)) throw new Error(`etcd member ${m.name} is running already (pid ${m.pid})`);
      launch(m);
    },
    running: (i) => alive(members[i]?.pid),
    ctl(args, endpoints = cluster.endpoints) {
      return nsExec(members[0]!.ns, [ETCDCTL_BIN, '--endpoints', endpoints.join(','), '--dial-timeout', '2s', '--command-timeout', '5s', ...ctlTls, ...args], {
        timeoutMs: 20_000,
        env: sysEnv({ ETCDCTL_API: '3' }),
      });
    },
    async healthy(timeoutMs = 30_000) {
      await waitFor(async () => {
        const up = members.filter((m) => alive(m.pid)).map((m) => m.clientUrl);
        const r = await cluster.ctl(['endpoint', 'health'], up);
        return r.code === 0;
      }, { timeoutMs, intervalMs: 200, what: 'every running etcd member to be healthy' });
    },
    logTail(i, lines = 20) {
      try {
        return tail(readFileSync(members[i]!.logPath, 'utf8'), lines);
      } catch {
        return '(no etcd.log)';
      }
    },
  };
  for (const m of members) {
    // destroyEngine stops attached processes before it sweeps the namespace
    m.ns.attached.add({ stop: async () => (m.pid ? stopPid(m.pid, 'SIGKILL') : undefined) });
    launch(m);
  }
  await cluster.healthy();
  return cluster;
}

async function stopPid(pid: number, signal: 'SIGKILL' | 'SIGTERM'): Promise<void> {
  try {
    process.kill(pid, signal);
  } catch {
    return;
  }
  const t0 = Date.now();
  while (alive(pid)) {
    if (Date.now() - t0 > 15_000) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    await sleep(50);
  }
}

/**
 * A test CA, a server certificate for `serverIps` and a client certificate signed by it, and
 * another CA that signed nothing, all in `dir` (made with openssl, valid one day).
 */
export async function makeEtcdCerts(dir: string, serverIps: readonly string[]): Promise<EtcdTlsFiles> {
  mkdirSync(dir, { recursive: true });
  const f = (name: string) => join(dir, name);
  const openssl = (...args: string[]) => runOk('openssl', args, { timeoutMs: 30_000 });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  for (const ca of ['ca', 'other-ca']) await openssl('req', '-x509', ...ec, '-keyout', f(`${ca}.key`), '-out', f(`${ca}.pem`), '-days', '1', '-subj', `/CN=tsnet e2e ${ca}`);
  const sign = async (name: string, ext: string) => {
    writeFileSync(f(`${name}.ext`), ext);
    await openssl('req', ...ec, '-keyout', f(`${name}.key`), '-out', f(`${name}.csr`), '-subj', `/CN=tsnet e2e ${name}`);
    await openssl('x509', '-req', '-in', f(`${name}.csr`), '-CA', f('ca.pem'), '-CAkey', f('ca.key'), '-CAcreateserial', '-out', f(`${name}.pem`), '-days', '1', '-extfile', f(`${name}.ext`));
  };
  await sign('server', `subjectAltName=${serverIps.map((ip) => `IP:${ip}`).join(',')}\nextendedKeyUsage=serverAuth,clientAuth\n`);
  await sign('client', 'extendedKeyUsage=clientAuth\n');
  return {
    caFile: f('ca.pem'), certFile: f('server.pem'), keyFile: f('server.key'),
    clientCertFile: f('client.pem'), clientKeyFile: f('client.key'), otherCaFile: f('other-ca.pem'),
  };
}

/** One Docker host of the cluster: its engine, its underlay address, tsnet's plugin on it. */
export interface EtcdHost {
  e: Engine;
  ip: string;
  pluginId?: string;
}

/** The plugin's socket on a host, while its plugin process runs (undefined otherwise). */
export function liveSocket(h: EtcdHost): string | undefined {
  if (!h.pluginId || !h.e.running || !alive(pluginPid(h.e, h.pluginId))) return undefined;
  return pluginSocketPath(h.e, h.pluginId);
}

/**
 * plugin/build.sh --no-create: the plugin's config.json and rootfs assembled in `buildDir` (which
 * must not exist yet), without an engine, so it can run while the engines start. Returns build.sh's
 * key=value facts.
 */
export async function assemblePlugin(buildDir: string): Promise<Record<string, string>> {
  const r = await run('/bin/bash', [BUILD_SH, '--no-create', '--build-dir', buildDir], { timeoutMs: 180_000, env: { ...process.env, NODE: process.execPath } });
  if (r.code !== 0) throw new CommandError(fmtCmd('plugin/build.sh', ['--no-create', '--build-dir', buildDir]), r);
  const facts: Record<string, string> = {};
  for (const line of r.stdout.split('\n')) {
    const m = /^([a-z_]+)=(.*)$/.exec(line);
    if (m) facts[m[1]!] = m[2]!;
  }
  return facts;
}

/** `docker plugin create NAME BUILD_DIR` on a host that does not have it yet (created disabled). */
export async function createPluginOn(h: EtcdHost, name: string, buildDir: string): Promise<void> {
  const have = await h.e.docker(['plugin', 'inspect', '-f', '{{.Id}}', name]);
  if (have.code !== 0) await h.e.dockerOk(['plugin', 'create', name, buildDir], { timeoutMs: 180_000 });
}

/**
 * Applies `settings` to the host's plugin with `docker plugin set` and enables it; the host's
 * state dir (<engine>/tsnet-state) is created first. One host at a time on a small machine:
 * dockerd gives a plugin about 15 s to listen on its socket, and three node processes starting
 * at once on two busy cores can take longer.
 */
export async function enablePluginOn(h: EtcdHost, name: string, settings: readonly string[]): Promise<void> {
  mkdirSync(join(h.e.stateDir, 'tsnet-state'), { recursive: true });
  await h.e.dockerOk(['plugin', 'set', name, ...settings]);
  await h.e.dockerOk(['plugin', 'enable', name], { timeoutMs: 60_000 });
  h.pluginId = await pluginId(h.e, name);
}

// ---- the kernel's view inside a host's namespace ----

export interface VxlanDevice {
  name: string;
  vni: number;
  local?: string;
  port?: number;
  master?: string;
}

/** VXLAN devices in a namespace (`ip -d -j link show type vxlan`). */
export async function vxlanDevices(e: Engine): Promise<VxlanDevice[]> {
  const r = await nsExec(e, ['ip', '-d', '-j', 'link', 'show', 'type', 'vxlan'], { timeoutMs: 10_000 });
  if (r.code !== 0) throw new Error(`ip -d -j link show type vxlan in ${e.netns}: ${r.stderr.trim()}`);
  const links = JSON.parse(r.stdout || '[]') as Array<{ ifname: string; master?: string; linkinfo?: { info_data?: { id?: number; local?: string; port?: number } } }>;
  return links.map((l) => ({
    name: l.ifname,
    vni: l.linkinfo?.info_data?.id ?? -1,
    ...(l.linkinfo?.info_data?.local ? { local: l.linkinfo.info_data.local } : {}),
    ...(l.linkinfo?.info_data?.port ? { port: l.linkinfo.info_data.port } : {}),
    ...(l.master ? { master: l.master } : {}),
  }));
}

export interface FdbEntry {
  dev: string;
  mac: string;
  /** the remote VTEP (the VXLAN device's own entries) */
  dst?: string;
  /** set for the bridge's entries on the port (learned, or static when tsnet added them) */
  master?: string;
  state?: string;
  flags?: string[];
}

export interface NeighEntry {
  dev: string;
  dst: string;
  lladdr?: string;
  state?: string[];
}

export const describeFdb = (x: FdbEntry) =>
  `fdb ${x.mac}${x.dst ? ` dst ${x.dst}` : ''}${x.master ? ` master ${x.master}` : ''} dev ${x.dev} state ${x.state || 'dynamic (learned)'}${x.flags?.length ? ` flags ${x.flags.join(',')}` : ''}`;

export const describeNeigh = (x: NeighEntry) => `neigh ${x.dst} lladdr ${x.lladdr ?? '-'} dev ${x.dev} ${(x.state ?? []).join(',')}`;

/**
 * FDB and neighbour entries of every VXLAN device in a namespace (or of the devices named in
 * `only`), with its ports' learning flag. The three reads of each device run at once.
 */
export async function vxlanEntries(e: Engine, only?: readonly string[]): Promise<{ devices: VxlanDevice[]; fdb: FdbEntry[]; neigh: NeighEntry[]; learning: Record<string, boolean | undefined> }> {
  const devices = (await vxlanDevices(e)).filter((d) => !only || only.includes(d.name));
  const read = await Promise.all(devices.map(async (d) => {
    const [f, n, l] = await Promise.all([
      nsExec(e, ['bridge', '-j', 'fdb', 'show', 'dev', d.name], { timeoutMs: 10_000 }),
      nsExec(e, ['ip', '-j', 'neigh', 'show', 'dev', d.name], { timeoutMs: 10_000 }),
      nsExec(e, ['bridge', '-d', '-j', 'link', 'show', 'dev', d.name], { timeoutMs: 10_000 }),
    ]);
    const fdb: FdbEntry[] = f.code !== 0 ? [] : (JSON.parse(f.stdout || '[]') as Array<{ mac: string; dst?: string; master?: string; state?: string; flags?: string[] }>).map((x) => (
      { dev: d.name, mac: x.mac, ...(x.dst ? { dst: x.dst } : {}), ...(x.master ? { master: x.master } : {}), ...(x.state ? { state: x.state } : {}), ...(x.flags?.length ? { flags: x.flags } : {}) }));
    const neigh: NeighEntry[] = n.code !== 0 ? [] : (JSON.parse(n.stdout || '[]') as Array<{ dst: string; lladdr?: string; state?: string[] }>).map((x) => (
      { dev: d.name, dst: x.dst, ...(x.lladdr ? { lladdr: x.lladdr } : {}), ...(x.state ? { state: x.state } : {}) }));
    const learning = l.code === 0 ? (JSON.parse(l.stdout || '[]') as Array<{ learning?: boolean }>)[0]?.learning : undefined;
    return { d, fdb, neigh, learningRead: l.code === 0, learning };
  }));
  return {
    devices,
    fdb: read.flatMap((x) => x.fdb),
    neigh: read.flatMap((x) => x.neigh),
    learning: Object.fromEntries(read.filter((x) => x.learningRead).map((x) => [x.d.name, x.learning])),
  };
}

/** The IPv4 addresses (a.b.c.d/len) of a link in a namespace. */
export async function linkAddrs4(e: Engine, dev: string): Promise<string[]> {
  const r = await nsExec(e, ['ip', '-j', '-4', 'addr', 'show', 'dev', dev], { timeoutMs: 10_000 });
  if (r.code !== 0) return [];
  const links = JSON.parse(r.stdout || '[]') as Array<{ addr_info?: Array<{ local: string; prefixlen: number }> }>;
  return links.flatMap((l) => (l.addr_info ?? []).map((a) => `${a.local}/${a.prefixlen}`));
}

/** Ping statistics of busybox ping's summary ("N packets transmitted, M packets received"). */
export function pingStats(out: string): { sent: number; received: number } | undefined {
  const m = /(\d+) packets transmitted, (\d+) packets received/.exec(out);
  return m ? { sent: Number(m[1]), received: Number(m[2]) } : undefined;
}
