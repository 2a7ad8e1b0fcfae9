// Small helpers around containers and networks of an engine (busybox image bb:latest).
import type { Engine } from './engine.js';
import type { RunResult } from './proc.js';

export const BB = 'bb:latest';

/**
 * `docker run -d --init --name NAME <runArgs...> bb sleep 3600`; returns the container id.
 * --init (docker-init = tini) makes the container stop at once on SIGTERM: `sleep` as PID 1 ignores
 * it, and dockerd then waits 10 s per container on stop and on shutdown.
 */
export async function runSleeper(e: Engine, name: string, runArgs: readonly string[] = []): Promise<string> {
  return e.dockerOk(['run', '-d', '--init', '--name', name, ...runArgs, BB, 'sleep', '3600']);
}

/** "10.0.0.2/24" of an interface inside a container ('' if it has none). */
export async function containerAddr4(e: Engine, c: string, iface = 'eth0'): Promise<string> {
  const out = await e.dockerOk(['exec', c, 'ip', '-4', '-o', 'addr', 'show', 'dev', iface]);
  return /\binet (\S+)/.exec(out)?.[1] ?? '';
}

export async function containerIPv4(e: Engine, c: string, iface = 'eth0'): Promise<string> {
  return (await containerAddr4(e, c, iface)).split('/')[0] ?? '';
}

/** Docker's view: the container's global IPv6 address(es), one per network, space-separated. */
export async function containerGlobalIPv6(e: Engine, c: string): Promise<string> {
  return e.dockerOk(['inspect', '-f', '{{range .NetworkSettings.Networks}}{{.GlobalIPv6Address}} {{end}}', c]);
}

/** `docker exec FROM ping -c1 -W2 TARGET` (no retries; see waitFor for positive checks). */
export function ping(e: Engine, from: string, target: string, { v6 = false, waitSec = 2 } = {}): Promise<RunResult> {
  return e.docker(['exec', from, 'ping', ...(v6 ? ['-6'] : []), '-c1', `-W${waitSec}`, target], { timeoutMs: 30_000 });
}

export async function pingOk(e: Engine, from: string, target: string, opts: { v6?: boolean; waitSec?: number } = {}): Promise<boolean> {
  return (await ping(e, from, target, opts)).code === 0;
}

/** Network's IPAM subnets (IPv4 and IPv6), as docker network inspect shows them. */
export async function networkSubnets(e: Engine, net: string): Promise<string[]> {
  const out = await e.dockerOk(['network', 'inspect', '-f', '{{range .IPAM.Config}}{{.Subnet}} {{end}}', net]);
  return out.split(/\s+/).filter(Boolean);
}

/** Remove every container, then every network except Docker's predefined ones. */
export async function removeAllContainersAndNetworks(e: Engine): Promise<string[]> {
  const problems: string[] = [];
  const ids = (await e.dockerOk(['ps', '-aq'])).split('\n').filter(Boolean);
  if (ids.length) {
    const r = await e.docker(['rm', '-f', ...ids]);
    if (r.code !== 0) problems.push(`docker rm -f: ${r.stderr.trim()}`);
  }
  const nets = (await e.dockerOk(['network', 'ls', '--format', '{{.Name}}'])).split('\n').filter(Boolean);
  for (const n of nets) {
    if (['bridge', 'host', 'none'].includes(n)) continue;
    const r = await e.docker(['network', 'rm', n]);
    if (r.code !== 0) problems.push(`docker network rm ${n}: ${r.stderr.trim()}`);
  }
  return problems;
}

export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

// ---- IPv4 CIDR arithmetic (for pool/route overlap checks) ----

export function ip4ToInt(ip: string): number {
  const p = ip.split('.').map(Number);
  if (p.length !== 4 || p.some((x) => !Number.isInteger(x) || x < 0 || x > 255)) throw new Error(`bad IPv4 ${ip}`);
  return ((p[0]! << 24) | (p[1]! << 16) | (p[2]! << 8) | p[3]!) >>> 0;
}

/** [first, last] of an IPv4 CIDR ("10.0.0.0/24"; a bare address is a /32). */
export function cidr4Range(cidr: string): [number, number] {
  const [ip, lenS] = cidr.split('/');
  const len = lenS === undefined ? 32 : Number(lenS);
  const size = 2 ** (32 - len);
  const first = Math.floor(ip4ToInt(ip!) / size) * size;
  return [first, first + size - 1];
}

export function cidr4Overlap(a: string, b: string): boolean {
  const [a0, a1] = cidr4Range(a);
  const [b0, b1] = cidr4Range(b);
  return a0 <= b1 && b0 <= a1;
}

export function isIPv4Cidr(s: string): boolean {
  return /^\d+\.\d+\.\d+\.\d+(\/\d+)?$/.test(s);
}

/** Does ip (a.b.c.d) lie in cidr? */
export function ip4InCidr(ip: string, cidr: string): boolean {
  const [f, l] = cidr4Range(cidr);
  const x = ip4ToInt(ip);
  return x >= f && x <= l;
}
