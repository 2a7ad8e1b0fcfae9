// Host snapshots of an engine's netns (+ the tsnet store), to prove that an operation (a failed
// request, a full teardown) left nothing behind.
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { nsExec, nsExecOk, type Engine } from './engine.js';
import { tsnetStateDir } from './tsnet.js';

export interface HostSnapshot {
  /** "name kind master", sorted; kind is linkinfo.info_kind or "-" (e.g. lo, a physical link) */
  links: string[];
  /** iptables-save, without '#' comment lines, chain counters zeroed */
  iptables: string[];
  ip6tables: string[];
  /** ipset save, without hash seeds, sorted (members come out in hash order) */
  ipsets: string[];
  /** files under the tsnet state dir (relative, sorted), store metadata excluded */
  storeFiles: string[];
}

interface IpLink {
  ifname: string;
  master?: string;
  link_type?: string;
  linkinfo?: { info_kind?: string; info_slave_kind?: string };
}

/** Top-level store files that are metadata, not records (schema/format version, lock). */
export const STORE_META_RE = /^(meta|metadata|schema|version|format)(\.[a-z0-9]+)?$|^\.?lock$|\.lock$/i;

/**
 * Store metadata, not records: a top-level file named like STORE_META_RE, or anything in a `meta`
 * directory at most one level down (tsnet's file store keeps `store/meta/schema.json`).
 */
export function isStoreMeta(rel: string): boolean {
  const parts = rel.split('/');
  const base = parts[parts.length - 1]!;
  if (parts.length === 1) return STORE_META_RE.test(base);
  const metaAt = parts.indexOf('meta');
  return metaAt >= 0 && metaAt <= 1 && metaAt < parts.length - 1;
}

export async function listLinks(e: Engine): Promise<string[]> {
  const out = await nsExecOk(e, ['ip', '-j', '-d', 'link', 'show']);
  const links = JSON.parse(out) as IpLink[];
  return links.map((l) => `${l.ifname} ${l.linkinfo?.info_kind ?? '-'} ${l.master ?? '-'}`).sort();
}

/**
 * iptables-save output without comments ('#' lines) and with zeroed chain counters. A table that
 * holds nothing but its built-in chains with policy ACCEPT and no rules is dropped: it filters
 * nothing, and with iptables-nft it is created by the first command that touches the table and
 * cannot be removed with iptables again, so it is the same as an absent table.
 */
export function normalizeIptablesSave(text: string): string[] {
  const lines = text
    .split('\n')
    .filter((l) => l.trim() !== '' && !l.startsWith('#'))
    .map((l) => l.replace(/\[\d+:\d+\]/g, '[0:0]'));
  const out: string[] = [];
  let table: string[] = [];
  for (const l of lines) {
    if (l.startsWith('*')) table = [l];
    else if (table.length) {
      table.push(l);
      if (l === 'COMMIT') {
        const body = table.slice(1, -1);
        const inert = body.every((b) => /^:\S+ ACCEPT \[0:0\]$/.test(b));
        if (!inert) out.push(...table);
        table = [];
      }
    } else out.push(l);
  }
  out.push(...table); // an unterminated table (should not happen)
  return out;
}

async function saveRules(e: Engine, bin: 'iptables-save' | 'ip6tables-save'): Promise<string[]> {
  const r = await nsExec(e, [bin]);
  if (r.code !== 0) throw new Error(`${bin} in ${e.netns} failed: ${r.stderr}`);
  return normalizeIptablesSave(r.stdout);
}

async function walk(dir: string, rel = ''): Promise<string[]> {
  let ents;
  try {
    ents = await readdir(join(dir, rel), { withFileTypes: true });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  const out: string[] = [];
  for (const d of ents) {
    const p = rel ? `${rel}/${d.name}` : d.name;
    if (d.isDirectory()) out.push(...(await walk(dir, p)));
    else out.push(p);
  }
  return out;
}

/** Files of the tsnet store (relative paths, sorted), top-level metadata files excluded. */
export async function listStoreFiles(e: Engine, stateDir = tsnetStateDir(e)): Promise<string[]> {
  const all = await walk(stateDir);
  return all.filter((p) => !isStoreMeta(p)).sort();
}

/** Every ipset of the netns (not only tsnet's), seeds stripped, sorted. */
export async function saveIpsets(e: Engine): Promise<string[]> {
  const r = await nsExec(e, ['ipset', 'save']);
  if (r.code !== 0) throw new Error(`ipset save in ${e.netns} failed: ${r.stderr}`);
  return r.stdout.split('\n').filter((l) => l.trim() !== '').map((l) => l.replace(/ initval 0x[0-9a-f]+/, '')).sort();
}

export async function snapshotHost(e: Engine): Promise<HostSnapshot> {
  const [links, iptables, ip6tables, ipsets, storeFiles] = await Promise.all([
    listLinks(e),
    saveRules(e, 'iptables-save'),
    saveRules(e, 'ip6tables-save'),
    saveIpsets(e),
    listStoreFiles(e),
  ]);
  return { links, iptables, ip6tables, ipsets, storeFiles };
}

/** Multiset difference: lines of a missing from b ("- ") and lines of b not in a ("+ "). */
function diffLines(a: readonly string[], b: readonly string[]): string[] {
  const count = new Map<string, number>();
  for (const l of a) count.set(l, (count.get(l) ?? 0) + 1);
  const added: string[] = [];
  for (const l of b) {
    const n = count.get(l) ?? 0;
    if (n > 0) count.set(l, n - 1);
    else added.push(`+ ${l}`);
  }
  const removed: string[] = [];
  for (const l of a) {
    const n = count.get(l) ?? 0;
    if (n > 0) {
      removed.push(`- ${l}`);
      count.set(l, n - 1);
    }
  }
  return [...removed, ...added];
}

export type SnapshotPart = keyof HostSnapshot;

/**
 * Human-readable differences between two snapshots ([] when equal), per part. For iptables the
 * order of rules matters too: if the multisets are equal but the order differs, that is reported.
 */
export function diffSnapshots(
  a: HostSnapshot,
  b: HostSnapshot,
  parts: readonly SnapshotPart[] = ['links', 'iptables', 'ip6tables', 'ipsets', 'storeFiles'],
): string[] {
  const out: string[] = [];
  for (const p of parts) {
    const d = diffLines(a[p], b[p]);
    if (d.length) out.push(`${p}:`, ...d.map((l) => `  ${l}`));
    else if ((p === 'iptables' || p === 'ip6tables') && a[p].join('\n') !== b[p].join('\n')) {
      out.push(`${p}: same rules in a different order`);
    }
  }
  return out;
}

/** net.ipv4.ip_forward and net.ipv6.conf.all.forwarding of the engine's netns ('0' or '1'). */
export async function forwardingOf(e: Engine): Promise<{ v4: string; v6: string }> {
  const [v4, v6] = (await nsExecOk(e, ['sysctl', '-n', 'net.ipv4.ip_forward', 'net.ipv6.conf.all.forwarding'])).split('\n').map((s) => s.trim());
  return { v4: v4 ?? '', v6: v6 ?? '' };
}

/**
 * The base snapshot as it should look once tsnet turned forwarding on where it was off: like
 * Docker, tsnet then sets that family's FORWARD policy to DROP, and leaves both so afterwards.
 */
export function expectForwardingClosed(base: HostSnapshot, before: { v4: string; v6: string }, after: { v4: string; v6: string }): HostSnapshot {
  const close = (rules: string[]): string[] => {
    if (!rules.includes('*filter')) return [...rules, '*filter', ':INPUT ACCEPT [0:0]', ':FORWARD DROP [0:0]', ':OUTPUT ACCEPT [0:0]', 'COMMIT'];
    return rules.map((l) => (l === ':FORWARD ACCEPT [0:0]' ? ':FORWARD DROP [0:0]' : l));
  };
  return {
    ...base,
    iptables: before.v4 === '0' && after.v4 === '1' ? close(base.iptables) : base.iptables,
    ip6tables: before.v6 === '0' && after.v6 === '1' ? close(base.ip6tables) : base.ip6tables,
  };
}
