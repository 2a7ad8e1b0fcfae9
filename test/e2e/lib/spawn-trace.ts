// Which processes a running process (tsnet) and its descendants exec, and when: for the e2e test
// that no process is spawned on a container's path and for the bench's count of them.
// Two tracers:
//   strace  `strace -f -e trace=execve,execveat -p PID`: every execve/execveat a descendant calls
//           (successful or not). ptrace stops tsnet at each of its syscalls: right for counting,
//           wrong for timing.
//   perf    `perf record -e sched:sched_process_exec -p PID` (inherited by every child forked after
//           the attach): every successful exec, timestamped on CLOCK_MONOTONIC (process.hrtime's
//           clock). Nothing stops tsnet: the bench counts with it while it times docker run.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { track } from './cleanup.js';
import { run, sysEnv } from './proc.js';

export type Tracer = 'strace' | 'perf';

/** One exec by the traced process or a descendant. */
export interface Exec {
  /** CLOCK_MONOTONIC in ns (compare with process.hrtime.bigint()) */
  ns: bigint;
  pid: number;
  /** the program exec'd */
  file: string;
}

export interface SpawnTrace {
  readonly tool: Tracer;
  /** Detaches (the traced process runs on) and returns every exec seen since the attach. */
  stop(): Promise<Exec[]>;
}

/** A span of CLOCK_MONOTONIC ns (process.hrtime.bigint() before and after). */
export interface Window {
  start: bigint;
  end: bigint;
}

/** The execs inside a window. */
export const execsIn = (execs: readonly Exec[], w: Window): Exec[] => execs.filter((x) => x.ns >= w.start && x.ns <= w.end);

/**
 * The processes behind some execs: one per pid (a failed execve while the PATH is searched, or
 * `sh` exec'ing its command, is the same process), each named by its last program.
 */
export function processes(execs: readonly Exec[]): Array<{ pid: number; file: string }> {
  const byPid = new Map<number, string>();
  for (const x of execs) byPid.set(x.pid, x.file);
  return [...byPid].map(([pid, file]) => ({ pid, file }));
}

const ATTACH_TIMEOUT_MS = 20_000;

/** Starts tracing `pid`; resolves once the tracer is attached (every later exec is seen). */
export async function traceSpawns(pid: number, tool: Tracer): Promise<SpawnTrace> {
  const dir = mkdtempSync(join(tmpdir(), 'tsnet-spawn-trace-'));
  try {
    return tool === 'perf' ? await startPerf(pid, dir) : await startStrace(pid, dir);
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}

/** perf if it can attach here, strace otherwise. */
export async function traceSpawnsQuietly(pid: number): Promise<SpawnTrace> {
  try {
    return await traceSpawns(pid, 'perf');
  } catch {
    return traceSpawns(pid, 'strace');
  }
}

/** Waits for `re` on a stream of the tracer, or fails when it exits first or takes too long. */
function waitFor(child: ChildProcess, stream: Readable, re: RegExp, what: string): Promise<void> {
  return new Promise((resolve, reject) => {
    let seen = '';
    const done = (err?: Error) => {
      clearTimeout(timer);
      stream.off('data', onData);
      child.off('exit', onExit);
      if (err) reject(err);
      else resolve();
    };
    const onData = (b: Buffer) => {
      seen += b.toString();
      if (re.test(seen)) done();
    };
    const onExit = (code: number | null) => done(new Error(`${what} exited (${code}) before it attached: ${seen.trim().slice(-300)}`));
    const timer = setTimeout(() => done(new Error(`${what} did not attach within ${ATTACH_TIMEOUT_MS} ms: ${seen.trim().slice(-300)}`)), ATTACH_TIMEOUT_MS);
    stream.on('data', onData);
    child.once('exit', onExit);
  });
}

/** SIGINT (both tracers detach and flush on it), SIGKILL if it lingers. */
async function interrupt(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGINT');
  const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
  await exited;
  clearTimeout(timer);
}

function tracked(child: ChildProcess, what: string): () => void {
  if (!child.pid) throw new Error(`could not start ${what}`);
  return track({ kind: 'pid', pid: child.pid, what });
}

async function startStrace(pid: number, dir: string): Promise<SpawnTrace> {
  const out = join(dir, 'strace.out');
  // -ttt: wall clock; converted to CLOCK_MONOTONIC with the offset between the two clocks now.
  const child = spawn('strace', ['-f', '-ttt', '-e', 'trace=execve,execveat', '-e', 'signal=none', '-o', out, '-p', String(pid)],
    { stdio: ['ignore', 'ignore', 'pipe'], env: sysEnv() });
  const untrack = tracked(child, `strace of ${pid}`);
  const offsetNs = BigInt(Date.now()) * 1_000_000n - process.hrtime.bigint();
  try {
    await waitFor(child, child.stderr as Readable, /Process \d+ attached/, 'strace');
  } catch (err) {
    await interrupt(child);
    untrack();
    throw err;
  }
  return {
    tool: 'strace',
    async stop() {
      await interrupt(child);
      untrack();
      try {
        return parseStrace(readFileSync(out, 'utf8'), offsetNs);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}

/** `PID 1700000000.123456 execve("/usr/sbin/iptables-restore", [...` lines; "resumed" halves skipped. */
export function parseStrace(text: string, offsetNs: bigint): Exec[] {
  const out: Exec[] = [];
  for (const line of text.split('\n')) {
    const m = /^(\d+)\s+(\d+)\.(\d{6})\s+execve(?:at)?\((?:[^,]*,\s*)?"([^"]*)"/.exec(line);
    if (!m) continue;
    const wallNs = BigInt(m[2] as string) * 1_000_000_000n + BigInt(m[3] as string) * 1000n;
    out.push({ pid: Number(m[1]), ns: wallNs - offsetNs, file: m[4] as string });
  }
  return out;
}

async function startPerf(pid: number, dir: string): Promise<SpawnTrace> {
  const data = join(dir, 'perf.data');
  // Starts disabled (-D -1); `enable` on fd 3 is acknowledged on fd 4 once the events count.
  const child = spawn('perf', ['record', '-q', '-e', 'sched:sched_process_exec', '-k', 'CLOCK_MONOTONIC', '-D', '-1',
    '--control', 'fd:3,4', '-p', String(pid), '-o', data], { stdio: ['ignore', 'ignore', 'pipe', 'pipe', 'pipe'], env: sysEnv() });
  const untrack = tracked(child, `perf record of ${pid}`);
  try {
    const attached = waitFor(child, child.stdio[4] as Readable, /ack/, 'perf record');
    (child.stdio[3] as Writable).write('enable\n');
    await attached;
  } catch (err) {
    await interrupt(child);
    untrack();
    throw err;
  }
  return {
    tool: 'perf',
    async stop() {
      await interrupt(child);
      untrack();
      try {
        const r = await run('perf', ['script', '-i', data, '-F', 'time,trace', '--ns'], { timeoutMs: 60_000 });
        if (r.code !== 0) throw new Error(`perf script failed: ${r.stderr.trim().slice(-300)}`);
        return parsePerf(r.stdout);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}

/** `  14706.072242530: filename=/bin/true pid=1024 old_pid=1024` lines. */
export function parsePerf(text: string): Exec[] {
  const out: Exec[] = [];
  for (const line of text.split('\n')) {
    const m = /(\d+)\.(\d{9}):\s+filename=(\S+) pid=(\d+)/.exec(line);
    if (!m) continue;
    out.push({ ns: BigInt(m[1] as string) * 1_000_000_000n + BigInt(m[2] as string), file: m[3] as string, pid: Number(m[4]) });
  }
  return out;
}
