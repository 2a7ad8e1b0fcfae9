// The legacy tsnet's sandbox as packaging/tsnet.service declares it, for the e2e harness: there is
// no systemd as PID 1 here, so the harness starts tsnet under the same capability bounding set
// (setpriv) and the same read-only/writable paths (sandbox.sh in a private mount namespace),
// parsed from the unit file itself, and checks the running process against it. Every e2e
// scenario that starts the legacy tsnet so proves it works inside the sandbox.
// Not emulated (seccomp, which setpriv cannot load): SystemCallFilter=, RestrictAddressFamilies=,
// RestrictNamespaces=, LockPersonality=, RestrictRealtime=, ProtectClock=.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const LIB = dirname(fileURLToPath(import.meta.url));
export const UNIT_PATH = resolve(LIB, '../../../packaging/tsnet.service');
export const SANDBOX_SH = join(LIB, 'sandbox.sh');

/** `Key=value` assignments of one [Section], in order, comments and blank lines dropped. */
export function unitSection(text: string, name: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  let current = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const header = /^\[(.+)\]$/.exec(line);
    if (header) {
      current = header[1] ?? '';
      continue;
    }
    if (current !== name) continue;
    const eq = line.indexOf('=');
    if (eq < 0) continue;
    const key = line.slice(0, eq).trim();
    out.set(key, [...(out.get(key) ?? []), line.slice(eq + 1).trim()]);
  }
  return out;
}

/** capabilities(7) numbers, for the masks /proc/PID/status shows. */
export const CAP_NUMBERS: Readonly<Record<string, number>> = Object.freeze({
  CAP_CHOWN: 0, CAP_DAC_OVERRIDE: 1, CAP_DAC_READ_SEARCH: 2, CAP_FOWNER: 3, CAP_FSETID: 4, CAP_KILL: 5,
  CAP_SETGID: 6, CAP_SETUID: 7, CAP_SETPCAP: 8, CAP_LINUX_IMMUTABLE: 9, CAP_NET_BIND_SERVICE: 10,
  CAP_NET_BROADCAST: 11, CAP_NET_ADMIN: 12, CAP_NET_RAW: 13, CAP_IPC_LOCK: 14, CAP_IPC_OWNER: 15,
  CAP_SYS_MODULE: 16, CAP_SYS_RAWIO: 17, CAP_SYS_CHROOT: 18, CAP_SYS_PTRACE: 19, CAP_SYS_PACCT: 20,
  CAP_SYS_ADMIN: 21, CAP_SYS_BOOT: 22, CAP_SYS_NICE: 23, CAP_SYS_RESOURCE: 24, CAP_SYS_TIME: 25,
  CAP_SYS_TTY_CONFIG: 26, CAP_MKNOD: 27, CAP_LEASE: 28, CAP_AUDIT_WRITE: 29, CAP_AUDIT_CONTROL: 30,
  CAP_SETFCAP: 31, CAP_MAC_OVERRIDE: 32, CAP_MAC_ADMIN: 33, CAP_SYSLOG: 34, CAP_WAKE_ALARM: 35,
  CAP_BLOCK_SUSPEND: 36, CAP_AUDIT_READ: 37, CAP_PERFMON: 38, CAP_BPF: 39, CAP_CHECKPOINT_RESTORE: 40,
});

export function capMask(names: readonly string[]): bigint {
  let mask = 0n;
  for (const n of names) {
    const bit = CAP_NUMBERS[n];
    if (bit === undefined) throw new Error(`unknown capability ${n}`);
    mask |= 1n << BigInt(bit);
  }
  return mask;
}

export interface WritablePath {
  path: string;
  /** `-` prefix (ReadWritePaths=): skipped when it does not exist */
  optional: boolean;
}

/** What the harness emulates of the unit's [Service] sandbox. */
export interface UnitSandbox {
  bounding: string[];
  ambient: string[];
  noNewPrivileges: boolean;
  protectSystemStrict: boolean;
  /** ReadWritePaths=, plus /var/lib/X for StateDirectory=X and /run/X for RuntimeDirectory=X */
  writable: WritablePath[];
  protectKernelTunables: boolean;
  protectKernelLogs: boolean;
  protectHome: boolean;
  privateTmp: boolean;
  privateDevices: boolean;
  protectHostname: boolean;
}

const yes = (v: string | undefined) => v !== undefined && /^(yes|true|on|1)$/i.test(v);

export function parseUnitSandbox(text: string): UnitSandbox {
  const svc = unitSection(text, 'Service');
  const last = (k: string) => svc.get(k)?.at(-1);
  // Several lines merge (an empty one resets); "~" (inverted) lists are not emulated.
  const list = (k: string): string[] => {
    let out: string[] = [];
    for (const v of svc.get(k) ?? []) {
      if (v === '') out = [];
      else if (v.startsWith('~')) throw new Error(`${k}=${v}: inverted lists are not emulated by the e2e harness`);
      else out.push(...v.split(/\s+/));
    }
    return [...new Set(out)];
  };
  const protectSystem = last('ProtectSystem');
  if (protectSystem !== undefined && protectSystem !== 'strict' && !/^(no|false|off|0)$/i.test(protectSystem)) {
    throw new Error(`ProtectSystem=${protectSystem}: the e2e harness emulates only strict`);
  }
  const home = last('ProtectHome');
  if (home !== undefined && !/^(yes|true|on|1|no|false|off|0)$/i.test(home)) throw new Error(`ProtectHome=${home} is not emulated`);
  const writable: WritablePath[] = [
    ...list('ReadWritePaths').map((p) => ({ path: p.replace(/^-/, ''), optional: p.startsWith('-') })),
    ...list('StateDirectory').map((d) => ({ path: `/var/lib/${d}`, optional: false })),
    ...list('RuntimeDirectory').map((d) => ({ path: `/run/${d}`, optional: false })),
  ];
  return {
    bounding: list('CapabilityBoundingSet'),
    ambient: list('AmbientCapabilities'),
    noNewPrivileges: yes(last('NoNewPrivileges')),
    protectSystemStrict: protectSystem === 'strict',
    writable,
    protectKernelTunables: yes(last('ProtectKernelTunables')),
    protectKernelLogs: yes(last('ProtectKernelLogs')),
    protectHome: yes(home),
    privateTmp: yes(last('PrivateTmp')),
    privateDevices: yes(last('PrivateDevices')),
    protectHostname: yes(last('ProtectHostname')),
  };
}

export function loadUnitSandbox(path = UNIT_PATH): UnitSandbox {
  return parseUnitSandbox(readFileSync(path, 'utf8'));
}

/** Where an e2e engine keeps what the unit's paths name on a real host. */
export interface EnginePaths {
  /** /var/lib/tsnet: tsnet's --state-dir */
  stateDir: string;
  /** /run/docker/plugins: the directory of tsnet's --socket */
  socketDir: string;
  /** paths under /tmp that stay visible in the private /tmp (the engine's directory, its docker.sock) */
  keep: string[];
}

/** The unit's writable paths, as they are for this engine; missing optional ones left out. */
export function writablePaths(unit: UnitSandbox, paths: EnginePaths): string[] {
  const mapped: Record<string, string> = { '/var/lib/tsnet': paths.stateDir, '/run/docker/plugins': paths.socketDir };
  const out: string[] = [];
  for (const w of unit.writable) {
    const p = mapped[w.path] ?? w.path;
    if (existsSync(p)) out.push(p);
    else if (!w.optional) throw new Error(`the unit needs ${w.path} writable; the e2e harness has no ${p}`);
  }
  return out;
}

const setprivCaps = (names: readonly string[]) => ['-all', ...names.map((n) => `+${n.replace(/^CAP_/, '').toLowerCase()}`)].join(',');

/** The unit's paths under /tmp that must stay visible (deduplicated, outermost only). */
function outermost(paths: readonly string[]): string[] {
  const tmp = [...new Set(paths.map((p) => resolve(p)))].filter((p) => p.startsWith('/tmp/'));
  return tmp.filter((p) => !tmp.some((q) => q !== p && p.startsWith(`${q}/`)));
}

/** argv that runs the command after it inside the unit's sandbox (to follow `nsenter --net=... --`). */
export function sandboxArgv(unit: UnitSandbox, paths: EnginePaths): string[] {
  const opts: string[] = [];
  for (const p of writablePaths(unit, paths)) opts.push('--rw', p);
  if (unit.privateTmp) {
    opts.push('--private-tmp');
    for (const k of outermost(paths.keep)) opts.push('--keep', k);
  }
  if (unit.protectSystemStrict) opts.push('--protect-system');
  if (unit.protectKernelTunables) opts.push('--protect-tunables');
  if (unit.protectKernelLogs) opts.push('--protect-logs');
  if (unit.protectHome) opts.push('--protect-home');
  if (unit.privateDevices) opts.push('--private-dev');
  return [
    'unshare', '--mount', ...(unit.protectHostname ? ['--uts'] : []), '--propagation', 'slave', '--',
    'bash', SANDBOX_SH, ...opts, '--', ...setprivArgv(unit), '--',
  ];
}

/** `setpriv ...` (without the final --): the unit's capability sets and no_new_privs. */
export function setprivArgv(unit: UnitSandbox): string[] {
  const setpriv = ['setpriv', '--bounding-set', setprivCaps(unit.bounding)];
  if (unit.ambient.length > 0) setpriv.push('--inh-caps', setprivCaps(unit.ambient), '--ambient-caps', setprivCaps(unit.ambient));
  if (unit.noNewPrivileges) setpriv.push('--no-new-privs');
  return setpriv;
}

export interface ProcessSandbox {
  capBnd: bigint;
  capPrm: bigint;
  capEff: bigint;
  capAmb: bigint;
  noNewPrivs: boolean;
  /** is PATH on a read-only mount, as the process sees it (undefined: no mount holds it) */
  readOnly(path: string): boolean | undefined;
  /** file system ("major:minor type") of the mount that holds PATH */
  device(path: string): string | undefined;
}

/** Capabilities and mounts of a running process, from /proc/PID/{status,mountinfo}. */
export function readProcessSandbox(pid: number): ProcessSandbox {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (k: string) => {
    const m = new RegExp(`^${k}:\\s*(\\S+)`, 'm').exec(status);
    if (!m) throw new Error(`/proc/${pid}/status has no ${k}`);
    return m[1] as string;
  };
  const mounts = readFileSync(`/proc/${pid}/mountinfo`, 'utf8').split('\n').filter(Boolean).map((l) => {
    const f = l.split(' ');
    const sep = f.indexOf('-', 6);
    const target = (f[4] ?? '').replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
    return { target, ro: (f[5] ?? '').split(',').includes('ro'), device: `${f[2] ?? ''} ${f[sep + 1] ?? ''}` };
  });
  // the mount holding PATH: the longest mount point above it, the last one listed (on top)
  const holder = (path: string) => {
    let best: (typeof mounts)[number] | undefined;
    for (const m of mounts) {
      const above = m.target === '/' || path === m.target || path.startsWith(`${m.target}/`);
      if (above && (!best || m.target.length >= best.target.length)) best = m;
    }
    return best;
  };
  return {
    capBnd: BigInt(`0x${field('CapBnd')}`),
    capPrm: BigInt(`0x${field('CapPrm')}`),
    capEff: BigInt(`0x${field('CapEff')}`),
    capAmb: BigInt(`0x${field('CapAmb')}`),
    noNewPrivs: field('NoNewPrivs') === '1',
    readOnly: (p) => holder(p)?.ro,
    device: (p) => holder(p)?.device,
  };
}

const hex = (m: bigint) => `0x${m.toString(16)}`;

/** How the running process differs from the unit's sandbox; empty when it is inside it. */
export function sandboxProblems(pid: number, unit: UnitSandbox, paths: EnginePaths): string[] {
  const s = readProcessSandbox(pid);
  const problems: string[] = [];
  const want = capMask(unit.bounding);
  for (const [name, got] of [['CapBnd', s.capBnd], ['CapPrm', s.capPrm], ['CapEff', s.capEff]] as const) {
    if (got !== want) problems.push(`${name} ${hex(got)}, the unit declares ${hex(want)} (${unit.bounding.join(' ')})`);
  }
  if (s.capAmb !== capMask(unit.ambient)) problems.push(`CapAmb ${hex(s.capAmb)}, the unit declares ${hex(capMask(unit.ambient))}`);
  if (s.noNewPrivs !== unit.noNewPrivileges) problems.push(`NoNewPrivs ${s.noNewPrivs ? 1 : 0}`);
  if (unit.protectSystemStrict) {
    for (const p of ['/', '/usr', '/etc', '/run']) if (s.readOnly(p) !== true) problems.push(`${p} is writable (ProtectSystem=strict)`);
  }
  if (unit.protectKernelTunables) {
    for (const p of ['/proc/sys/kernel', '/sys']) if (s.readOnly(p) !== true) problems.push(`${p} is writable (ProtectKernelTunables=yes)`);
  }
  for (const p of writablePaths(unit, paths)) if (s.readOnly(p) !== false) problems.push(`${p} is not writable (the unit's writable paths)`);
  if (unit.privateTmp) {
    const probe = '/tmp/tsnet-sandbox-probe';
    if (s.device(probe) === readProcessSandbox(process.pid).device(probe)) problems.push('/tmp is the harness\' /tmp, not a private one (PrivateTmp=yes)');
  }
  return problems;
}
