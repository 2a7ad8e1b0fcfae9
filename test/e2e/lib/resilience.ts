// Helpers for the resilience scenarios (test/e2e/resilience.test.ts): reading tsnet's store and
// Docker's view, judging whether every link, firewall rule and store record is explained by
// Docker's view, bounded parallelism, ping statistics, and reading tsnet's JSON log.
// Not re-exported from index.ts: import it as './lib/resilience.js'.
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Engine } from './engine.js';
import { nsExecOk } from './engine.js';
import { run } from './proc.js';
import type { HostSnapshot } from './snapshot.js';
import { CHAIN, DOCKER_USER, FOREIGN_TAG, dnatRule, filterRules, jumps, networkEntries, postroutingRules, rawRules } from '../../../src/core/edge-plan.js';
import { upgradeNetwork } from '../../../src/core/record-upgrade.js';
import type { NetworkRecord, PublishedPort } from '../../../src/core/records.js';
import { bridgeEdge } from '../../../src/modes/bridge.js';
import { tsnetStateDir, TSNET_CLI } from './tsnet.js';

/** The busybox the bb image is made of (ensureBusyboxImage): the tools run inside containers. */
const BUSYBOX = '/bin/busybox';

// ---------- bounded parallelism ----------

/** Map with at most `limit` calls in flight; results in input order. */
export async function mapLimit<T, R>(limit: number, items: readonly T[], fn: (x: T, i: number) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!, i);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
  return out;
}

// ---------- tsnet's store ----------

/** A stored network as read from its file: schema 2 (`spec.bridge`), or schema 1 (`bridge` at the top). */
export interface StoreNetwork extends Partial<Omit<NetworkRecord, 'id' | 'spec'>> {
  id: string;
  spec?: { bridge: string; bridgeNamedByUser: boolean };
  bridge?: string;
}
/** The bridge of a stored network, whichever schema wrote it. */
export function bridgeOf(n: StoreNetwork): string {
  return n.spec?.bridge ?? n.bridge ?? '';
}
export interface StoreEndpoint {
  id: string;
  networkId: string;
  hostIf?: string;
  address?: string;
  joined: boolean;
  published?: PublishedPort[];
}
export interface StorePool {
  id: string;
  pool: string;
}
export interface StoreLease {
  poolId: string;
  address: string;
  kind: string;
  owner?: string;
}
export interface StoreView {
  networks: StoreNetwork[];
  endpoints: StoreEndpoint[];
  pools: StorePool[];
  leases: StoreLease[];
}

/** Records of one collection, read straight from the file store (a file may vanish while we read). */
async function readCollection<T>(stateDir: string, coll: string): Promise<T[]> {
  const dir = join(stateDir, 'store', coll);
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  const out: T[] = [];
  for (const n of names.filter((x) => x.endsWith('.json'))) {
    try {
      out.push(JSON.parse(await readFile(join(dir, n), 'utf8')) as T);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }
  return out;
}

/** The store as files (cheap enough to poll). `tsnetStatus` gives the same through the product's CLI. */
export async function readStore(e: Engine): Promise<StoreView> {
  const d = tsnetStateDir(e);
  const [networks, endpoints, pools, leases] = await Promise.all([
    readCollection<StoreNetwork>(d, 'networks'),
    readCollection<StoreEndpoint>(d, 'endpoints'),
    readCollection<StorePool>(d, 'pools'),
    readCollection<StoreLease>(d, 'leases'),
  ]);
  return { networks, endpoints, pools, leases };
}

/** Number of endpoint records (the kill-in-the-middle trigger polls this). */
export async function countStoreEndpoints(e: Engine): Promise<number> {
  try {
    return (await readdir(join(tsnetStateDir(e), 'store', 'endpoints'))).filter((n) => n.endsWith('.json')).length;
  } catch {
    return 0;
  }
}

/** `tsnet status --state-dir DIR --json` (the product's own read-out of the store). */
export async function tsnetStatus(e: Engine): Promise<StoreView> {
  const r = await run(process.execPath, [TSNET_CLI, 'status', '--state-dir', tsnetStateDir(e), '--json'], { timeoutMs: 30_000 });
  if (r.code !== 0) throw new Error(`tsnet status failed (${r.code}): ${r.stderr}`);
  return JSON.parse(r.stdout) as StoreView;
}

/** The engine ID the store pinned for garbage collection (store/meta/engine.json), if any. */
export async function pinnedEngine(e: Engine): Promise<string | undefined> {
  try {
    return (JSON.parse(await readFile(join(tsnetStateDir(e), 'store', 'meta', 'engine.json'), 'utf8')) as { id?: string }).id;
  } catch {
    return undefined;
  }
}

/** A canonical, comparable text of the store's records (for "unchanged" checks). */
export function storeDigest(s: StoreView): string[] {
  return [
    ...s.networks.map((n) => `network ${n.id} ${bridgeOf(n)}`),
    ...s.endpoints.map((x) => `endpoint ${x.id} ${x.networkId} ${x.hostIf ?? '-'} ${x.address ?? '-'} ${x.joined}`),
    ...s.pools.map((p) => `pool ${p.id}`),
    ...s.leases.map((l) => `lease ${l.poolId}#${l.address} ${l.kind}`),
  ].sort();
}

// ---------- Docker's view ----------

export interface DockerEndpointView {
  containerId: string;
  name: string;
  endpointId: string;
  /** without the prefix length */
  ipv4: string;
}
export interface DockerNetView {
  id: string;
  name: string;
  ipamDriver: string;
  bridge: string;
  subnets: Array<{ subnet: string; gateway: string }>;
  endpoints: DockerEndpointView[];
}

interface RawNet {
  Id: string;
  Name: string;
  Driver: string;
  Options?: Record<string, string> | null;
  IPAM?: { Driver?: string; Config?: Array<{ Subnet?: string; Gateway?: string }> | null };
  Containers?: Record<string, { Name?: string; EndpointID?: string; IPv4Address?: string }> | null;
}

/** Docker's tsnet networks with their endpoints (what `docker network inspect` says). */
export async function dockerTsnetView(e: Engine): Promise<DockerNetView[]> {
  const ids = (await e.dockerOk(['network', 'ls', '-q', '--no-trunc', '--filter', 'driver=tsnet'])).split('\n').filter(Boolean);
  if (!ids.length) return [];
  const raw = JSON.parse(await e.dockerOk(['network', 'inspect', ...ids])) as RawNet[];
  return raw.map((n) => ({
    id: n.Id,
    name: n.Name,
    ipamDriver: n.IPAM?.Driver ?? 'default',
    bridge: n.Options?.['com.docker.network.bridge.name'] || `tsbr-${n.Id.slice(0, 10)}`,
    subnets: (n.IPAM?.Config ?? []).map((c) => ({ subnet: c.Subnet ?? '', gateway: (c.Gateway ?? '').split('/')[0] ?? '' })),
    endpoints: Object.entries(n.Containers ?? {}).map(([cid, c]) => ({
      containerId: cid,
      name: c.Name ?? '',
      endpointId: c.EndpointID ?? '',
      ipv4: (c.IPv4Address ?? '').split('/')[0] ?? '',
    })),
  }));
}

const unquote = (l: string) => l.replace(/"/g, '');

/** Multiset a − b. */
function minus(a: readonly string[], b: readonly string[]): string[] {
  const count = new Map<string, number>();
  for (const x of b) count.set(x, (count.get(x) ?? 0) + 1);
  const out: string[] = [];
  for (const x of a) {
    const n = count.get(x) ?? 0;
    if (n > 0) count.set(x, n - 1);
    else out.push(x);
  }
  return out;
}

export interface Explanation {
  /** things present (kernel or store) that Docker's view does not explain: leaks */
  extra: string[];
  /** things Docker's view requires that are absent */
  missing: string[];
  /** an address held by more than one endpoint (Docker's view or tsnet's records) */
  duplicates: string[];
}

/** Values of `items` that occur more than once, with who holds them. */
function dupes(items: ReadonlyArray<{ key: string; who: string }>): string[] {
  const by = new Map<string, string[]>();
  for (const i of items) by.set(i.key, [...(by.get(i.key) ?? []), i.who]);
  return [...by].filter(([, w]) => w.length > 1).map(([k, w]) => `${k}: ${w.join(', ')}`);
}

/**
 * Judges a host snapshot and tsnet's store against Docker's view, relative to a base snapshot
 * taken before any tsnet network existed. Expected, beyond the base: one bridge per Docker tsnet
 * network, one veth host end per Docker endpoint on it (master = that bridge); in iptables and
 * ip6tables the TSNET-FORWARD chain, its jump from FORWARD and one rule per network; in the store
 * exactly Docker's tsnet networks and endpoints, and for networks with tsnet IPAM one pool per
 * subnet and a lease per gateway and per endpoint address. The whole link list and the whole
 * rule set are compared, not only names with tsnet's prefixes.
 */
export function explain(base: HostSnapshot, now: HostSnapshot, store: StoreView, docker: readonly DockerNetView[]): Explanation {
  const extra: string[] = [];
  const missing: string[] = [];
  const duplicates = [
    ...dupes(docker.flatMap((n) => n.endpoints.filter((x) => x.ipv4).map((x) => ({ key: `docker ${n.name} ${x.ipv4}`, who: x.name })))),
    ...dupes(store.endpoints.filter((x) => x.address).map((x) => ({ key: `store ${x.networkId.slice(0, 12)} ${x.address}`, who: x.id.slice(0, 12) }))),
  ];
  // links
  const wantLinks = [...base.links];
  for (const n of docker) {
    wantLinks.push(`${n.bridge} bridge -`);
    for (const ep of n.endpoints) wantLinks.push(`tsv${ep.endpointId.slice(0, 12)} veth ${n.bridge}`);
  }
  extra.push(...minus(now.links, wantLinks).map((l) => `link ${l}`));
  missing.push(...minus(wantLinks, now.links).map((l) => `link ${l}`));
  // firewall: tsnet's fixed chains and jumps while a network exists, one DNAT rule per published port
  const dockerIds = new Set(docker.map((n) => n.id));
  const dockerEps = new Set(docker.flatMap((n) => n.endpoints.map((x) => x.endpointId)));
  for (const fam of ['iptables', 'ip6tables'] as const) {
    const f = fam === 'iptables' ? 4 : 6;
    const b = base[fam].map(unquote);
    const c = now[fam].map(unquote);
    const added = minus(c, b);
    const removed = minus(b, c);
    const want: string[] = [];
    if (docker.length) {
      const rules = filterRules(f);
      want.push(...[CHAIN.forward, CHAIN.from, CHAIN.to, CHAIN.dnat, CHAIN.postrouting, CHAIN.raw].map((ch) => `:${ch} - [0:0]`));
      if (!b.includes(`:${DOCKER_USER} - [0:0]`)) want.push(`:${DOCKER_USER} - [0:0]`);
      want.push(...jumps(f).map((j) => `-A ${j.chain} ${j.rule}`), ...rawRules(f).map((r) => `-A ${CHAIN.raw} ${r}`));
      want.push(...rules.forward.map((r) => `-A ${CHAIN.forward} ${r}`), ...rules.from.map((r) => `-A ${CHAIN.from} ${r}`), ...rules.to.map((r) => `-A ${CHAIN.to} ${r}`));
      want.push(...postroutingRules(f).map((r) => `-A ${CHAIN.postrouting} ${r}`));
      for (const x of store.endpoints) {
        if (!dockerEps.has(x.id)) continue;
        for (const p of x.published ?? []) if (p.family === f) want.push(`-A ${CHAIN.dnat} ${dnatRule(x.id, p)}`);
      }
    }
    const wantU = want.map(unquote);
    // a table that only exists because of tsnet's chains adds its header/COMMIT/built-in chain lines
    extra.push(...minus(added, wantU).filter((l) => !/^(\*filter|\*nat|\*raw|COMMIT|:(INPUT|FORWARD|OUTPUT|PREROUTING|POSTROUTING) ACCEPT \[0:0\])$/.test(l)).map((l) => `${fam} + ${l}`));
    missing.push(...minus(wantU, added).map((l) => `${fam} ${l}`));
    extra.push(...removed.map((l) => `${fam} - ${l} (a base rule is gone)`));
  }
  // ipsets: each of Docker's tsnet networks contributes its subnets (entries of Docker's own networks aside)
  const wantSets = store.networks
    .filter((n) => dockerIds.has(n.id))
    .flatMap((n) => {
      const rec = upgradeNetwork(n as Parameters<typeof upgradeNetwork>[0]);
      // Modes other than bridge have no edge: they bring no set members.
      return rec.mode === 'bridge' ? networkEntries(bridgeEdge(rec, rec.spec.bridge)) : [];
    })
    .map((e) => `add ${e.set} ${e.entry} comment "${e.comment}"`);
  const haveSets = minus(now.ipsets, base.ipsets).filter((l) => l.startsWith('add ') && !l.includes(`"${FOREIGN_TAG}"`));
  extra.push(...minus(haveSets, wantSets).map((l) => `ipset ${l}`));
  missing.push(...minus(wantSets, haveSets).map((l) => `ipset ${l}`));
  // store
  const dn = new Set(docker.map((n) => n.id));
  const sn = new Set(store.networks.map((n) => n.id));
  for (const n of store.networks) if (!dn.has(n.id)) extra.push(`store network ${n.id.slice(0, 12)}`);
  for (const n of docker) if (!sn.has(n.id)) missing.push(`store network ${n.id.slice(0, 12)} (${n.name})`);
  const de = new Set(docker.flatMap((n) => n.endpoints.map((x) => x.endpointId)));
  const se = new Set(store.endpoints.map((x) => x.id));
  for (const x of store.endpoints) if (!de.has(x.id)) extra.push(`store endpoint ${x.id.slice(0, 12)} (${x.address ?? '-'})`);
  for (const n of docker) for (const x of n.endpoints) if (!se.has(x.endpointId)) missing.push(`store endpoint ${x.endpointId.slice(0, 12)} of ${x.name}`);
  const wantPools = new Set<string>();
  const wantLeases = new Set<string>();
  // Docker's API shows a gateway only when the user gave one; otherwise the pool's one lease of
  // kind 'gateway' is what the network's existence explains.
  const gatewayLeases = new Map(store.leases.filter((l) => l.kind === 'gateway').map((l) => [l.poolId, `${l.poolId}#${l.address}`]));
  for (const n of docker) {
    if (n.ipamDriver !== 'tsnet') continue;
    for (const s of n.subnets) {
      const pool = `LocalDefault/${s.subnet}`;
      wantPools.add(pool);
      const gw = s.gateway ? `${pool}#${s.gateway}` : gatewayLeases.get(pool);
      if (gw) wantLeases.add(gw);
      else missing.push(`store gateway lease of ${pool}`);
      for (const x of n.endpoints) if (x.ipv4) wantLeases.add(`${pool}#${x.ipv4}`);
    }
  }
  const havePools = new Set(store.pools.map((p) => p.id));
  const haveLeases = new Set(store.leases.map((l) => `${l.poolId}#${l.address}`));
  for (const p of havePools) if (!wantPools.has(p)) extra.push(`store pool ${p}`);
  for (const p of wantPools) if (!havePools.has(p)) missing.push(`store pool ${p}`);
  for (const l of haveLeases) if (!wantLeases.has(l)) extra.push(`store lease ${l}`);
  for (const l of wantLeases) if (!haveLeases.has(l)) missing.push(`store lease ${l}`);
  return { extra, missing, duplicates };
}

// ---------- containers ----------

/**
 * Removes every container (at most `limit` `docker rm -f` at a time: one `docker rm -f` of 100
 * containers made dockerd 20.10 keep a stale endpoint count, "network … has active endpoints"),
 * then every network but Docker's own (retrying that refusal a few times). Returns the problems.
 */
export async function removeEverything(e: Engine, limit = 8): Promise<string[]> {
  const problems: string[] = [];
  const ids = (await e.dockerOk(['ps', '-aq'])).split('\n').filter(Boolean);
  const rs = await mapLimit(limit, ids, (id) => e.docker(['rm', '-f', id]));
  rs.forEach((r, i) => {
    if (r.code !== 0) problems.push(`docker rm -f ${ids[i]}: ${r.stderr.trim()}`);
  });
  const nets = (await e.dockerOk(['network', 'ls', '--format', '{{.Name}}'])).split('\n').filter(Boolean);
  for (const n of nets) {
    if (['bridge', 'host', 'none'].includes(n)) continue;
    let r = await e.docker(['network', 'rm', n]);
    for (let i = 0; i < 5 && r.code !== 0 && /active endpoints/.test(r.stderr); i++) {
      await new Promise((res) => setTimeout(res, 1_000));
      r = await e.docker(['network', 'rm', n]);
    }
    if (r.code !== 0) {
      const inspect = await e.docker(['network', 'inspect', '-f', '{{json .Containers}}', n]);
      problems.push(`docker network rm ${n}: ${r.stderr.trim()} (inspect shows containers ${inspect.stdout.trim()})`);
    }
  }
  return problems;
}

export interface ContainerInfo {
  name: string;
  id: string;
  running: boolean;
  startedAt: string;
  /** the container's init process on the host (0 when it does not run): its netns is the container's */
  pid: number;
  /** Docker's view of the endpoint on `net` */
  endpointId: string;
  ipv4: string;
}

/** Every container (running or not) whose name matches `re`, with Docker's view of its endpoint on `net`. */
export async function containersOf(e: Engine, net: string, re: RegExp): Promise<ContainerInfo[]> {
  type Raw = {
    Id: string;
    Name: string;
    State: { Running: boolean; StartedAt: string; Pid: number };
    NetworkSettings: { Networks: Record<string, { EndpointID?: string; IPAddress?: string }> };
  };
  const ids = (await e.dockerOk(['ps', '-aq', '--no-trunc'])).split('\n').filter(Boolean);
  if (!ids.length) return [];
  const all = await e.docker(['inspect', ...ids]);
  let raw: Raw[];
  if (all.code === 0) raw = JSON.parse(all.stdout) as Raw[];
  else {
    // a container went away between `ps` and `inspect` (e.g. one being removed): take the others
    raw = [];
    for (const id of ids) {
      const one = await e.docker(['inspect', id]);
      if (one.code === 0) raw.push(...(JSON.parse(one.stdout) as Raw[]));
    }
  }
  return raw
    .map((c) => ({
      name: c.Name.replace(/^\//, ''),
      id: c.Id,
      running: c.State.Running,
      startedAt: c.State.StartedAt,
      pid: c.State.Pid,
      endpointId: c.NetworkSettings.Networks[net]?.EndpointID ?? '',
      ipv4: c.NetworkSettings.Networks[net]?.IPAddress ?? '',
    }))
    .filter((c) => re.test(c.name));
}

export interface MeshResult {
  /** container → IPv4 read inside it (eth0) */
  addr: Map<string, string>;
  /** addresses held by more than one container: "10.0.0.5: a, b" */
  duplicates: string[];
  /** containers whose address inside differs from Docker's view */
  mismatches: string[];
  first: string;
  last: string;
  /** "c -> first" failures at the first try, and after one retry */
  failedFirstTry: string[];
  failed: string[];
  ms: number;
}

/**
 * For running containers (ordered by start time): reads each one's eth0 address from inside it,
 * finds duplicates, and checks that each reaches the first and the last started one (ping by IP;
 * failures are retried once and reported both ways). "Inside" is the container's own network
 * namespace, entered with nsenter through its init process, running the busybox the bb image is
 * made of: the same netns, tools and packets as `docker exec`, without a dockerd, containerd and
 * runc round per container, which at 100 containers took most of the check's time.
 */
export async function checkMesh(_e: Engine, containers: readonly ContainerInfo[], limit = 8): Promise<MeshResult> {
  const t0 = Date.now();
  const sorted = [...containers].filter((c) => c.running).sort((a, b) => a.startedAt.localeCompare(b.startedAt));
  const addr = new Map<string, string>();
  const res: MeshResult = { addr, duplicates: [], mismatches: [], first: '', last: '', failedFirstTry: [], failed: [], ms: 0 };
  if (!sorted.length) return res;
  const first = sorted[0]!;
  const last = sorted[sorted.length - 1]!;
  res.first = first.name;
  res.last = last.name;
  const inside = (c: ContainerInfo, argv: readonly string[]) =>
    run('nsenter', [`--net=/proc/${c.pid}/ns/net`, '--', BUSYBOX, ...argv], { timeoutMs: 60_000 });
  const readAddr = async (c: ContainerInfo) => /\binet (\d+\.\d+\.\d+\.\d+)\//.exec((await inside(c, ['ip', '-4', '-o', 'addr', 'show', 'dev', 'eth0'])).stdout)?.[1] ?? '';
  const fa = await readAddr(first);
  const la = await readAddr(last);
  const bb = BUSYBOX;
  const script = `${bb} ip -4 -o addr show dev eth0; ${bb} ping -c1 -W3 ${fa} >/dev/null 2>&1 && echo FIRST_OK; ${bb} ping -c1 -W3 ${la} >/dev/null 2>&1 && echo LAST_OK; true`;
  const outs = await mapLimit(limit, sorted, async (c) => {
    const r = await inside(c, ['sh', '-c', script]);
    return { c, out: r.stdout + r.stderr };
  });
  const retry: Array<{ c: ContainerInfo; target: string }> = [];
  for (const { c, out } of outs) {
    const ip = /\binet (\d+\.\d+\.\d+\.\d+)\//.exec(out)?.[1] ?? '';
    addr.set(c.name, ip);
    if (c.ipv4 && ip !== c.ipv4) res.mismatches.push(`${c.name}: inside ${ip || '(none)'}, Docker says ${c.ipv4}`);
    if (!out.includes('FIRST_OK')) retry.push({ c, target: fa });
    if (!out.includes('LAST_OK')) retry.push({ c, target: la });
  }
  const byAddr = new Map<string, string[]>();
  for (const [c, ip] of addr) byAddr.set(ip, [...(byAddr.get(ip) ?? []), c]);
  for (const [ip, cs] of byAddr) if (cs.length > 1) res.duplicates.push(`${ip || '(no address)'}: ${cs.join(', ')}`);
  res.failedFirstTry = retry.map((x) => `${x.c.name} -> ${x.target}`);
  const again = await mapLimit(limit, retry, async (x) => {
    const r = await inside(x.c, ['ping', '-c2', '-W3', x.target]);
    return r.code === 0 ? '' : `${x.c.name} -> ${x.target}`;
  });
  res.failed = again.filter(Boolean);
  res.ms = Date.now() - t0;
  return res;
}

// ---------- ping statistics ----------

export function parsePing(out: string): { sent: number; received: number } | undefined {
  const m = /(\d+) packets transmitted, (\d+) (?:packets )?received/.exec(out);
  return m ? { sent: Number(m[1]), received: Number(m[2]) } : undefined;
}

// ---------- tsnet's JSON log ----------

export interface LogLine {
  level?: number;
  time?: string;
  msg?: string;
  [k: string]: unknown;
}

export async function fileSize(path: string): Promise<number> {
  try {
    return (await stat(path)).size;
  } catch {
    return 0;
  }
}

/** JSON lines of a log from byte `offset` on (non-JSON lines, e.g. the harness' "===" lines, are skipped). */
export async function logSince(path: string, offset = 0): Promise<LogLine[]> {
  let buf: Buffer;
  try {
    buf = await readFile(path);
  } catch {
    return [];
  }
  return buf
    .subarray(offset)
    .toString('utf8')
    .split('\n')
    .flatMap((l) => {
      if (!l.startsWith('{')) return [];
      try {
        return [JSON.parse(l) as LogLine];
      } catch {
        return [];
      }
    });
}

/** Items tsnet's garbage collector removed, from its 'removed what Docker no longer knows' lines. */
export function collectedItems(lines: readonly LogLine[]): Array<Record<string, string>> {
  return lines
    .filter((l) => l.msg === 'removed what Docker no longer knows')
    .flatMap((l) => (Array.isArray(l.items) ? (l.items as Array<Record<string, string>>) : []));
}

/** The last 'boot reconcile done' line ({reconcile: 'boot', changes, failed, missing, foreign, ms}: counts). */
export function bootReconcile(lines: readonly LogLine[]): LogLine | undefined {
  return [...lines].reverse().find((l) => l.msg === 'boot reconcile done');
}

/** The last 'tsnet listening' line (it counts the networks and endpoints loaded from the store). */
export function listening(lines: readonly LogLine[]): LogLine | undefined {
  return [...lines].reverse().find((l) => l.msg === 'tsnet listening');
}

/** Names of the links tsnet deleted ('link deleted' lines, one per link). */
export function deletedLinks(lines: readonly LogLine[]): string[] {
  return lines.filter((l) => l.msg === 'link deleted').map((l) => String(l.link));
}

/** `ip -j link show` in the engine's netns: name → alias/master/kind. */
export async function linkDetails(e: Engine): Promise<Map<string, { alias?: string; master?: string; kind?: string }>> {
  const raw = JSON.parse(await nsExecOk(e, ['ip', '-j', '-d', 'link', 'show'])) as Array<{
    ifname: string;
    ifalias?: string;
    master?: string;
    linkinfo?: { info_kind?: string };
  }>;
  return new Map(raw.map((l) => [l.ifname, { alias: l.ifalias, master: l.master, kind: l.linkinfo?.info_kind }]));
}

/**
 * What the logs say of the addresses and names in a leak report: tsnet's lines naming any of
 * them, and dockerd's warnings about the plugin (its retries, its failed rollbacks). For the
 * failure message of a check that compares Docker's view with tsnet's; bounded in size.
 */
export async function leakEvidence(leaks: readonly string[], tsnetLog: string, dockerdLog: string, maxLines = 40): Promise<string> {
  const needles = [...new Set(leaks.flatMap((l) => l.match(/\d+\.\d+\.\d+\.\d+|ts[a-z]*[0-9a-f]{6,}/g) ?? []))];
  if (needles.length === 0) return '(no address or link name in the report)';
  const read = (p: string) => readFile(p, 'utf8').catch(() => '');
  const [ts, dd] = await Promise.all([read(tsnetLog), read(dockerdLog)]);
  const pick = (text: string, keep: (line: string) => boolean) => text.split('\n').filter(keep).slice(-maxLines).map((l) => l.slice(0, 400));
  const tsLines = pick(ts, (l) => needles.some((n) => l.includes(`"${n}`) || l.includes(`${n}/`) || l.includes(`#${n}`)));
  const ddLines = pick(dd, (l) => /plugin|Failed to release|tsnet/i.test(l) && /warn|erro/i.test(l));
  return [`tsnet log lines naming ${needles.join(', ')}:`, ...tsLines, 'dockerd warnings and errors about the plugin:', ...ddLines].join('\n');
}
