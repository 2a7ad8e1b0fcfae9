// Running commands: always argv arrays, never a shell.
import { spawn, spawnSync, type SpawnOptions } from 'node:child_process';
import { readFileSync } from 'node:fs';

export interface RunResult {
  /** exit code; -1 when killed by a signal or by our timeout */
  code: number;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** wall time in ms */
  ms: number;
  timedOut: boolean;
}

export interface RunOptions {
  /** written to stdin, then stdin is closed */
  input?: string | Buffer;
  /** default 120 s; the command is SIGKILLed after it */
  timeoutMs?: number;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
}

/** PATH for everything we run: Debian's binaries first (/usr/local/bin has a docker 28 CLI). */
export const SYS_PATH = '/usr/sbin:/usr/bin:/sbin:/bin';

export function sysEnv(extra?: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  return { ...process.env, PATH: `${SYS_PATH}:${process.env.PATH ?? ''}`, ...extra };
}

export function fmtCmd(cmd: string, args: readonly string[]): string {
  return [cmd, ...args].map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : JSON.stringify(a))).join(' ');
}

/** Run a command to completion. Never rejects for a non-zero exit; see runOk. */
export function run(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const t0 = Date.now();
  return new Promise((resolve) => {
    const so: SpawnOptions = {
      stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
      env: opts.env ?? sysEnv(),
      cwd: opts.cwd,
    };
    let child;
    try {
      child = spawn(cmd, [...args], so);
    } catch (e) {
      resolve({ code: -1, signal: null, stdout: '', stderr: String(e), ms: 0, timedOut: false });
      return;
    }
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout?.on('data', (b: Buffer) => out.push(b));
    child.stderr?.on('data', (b: Buffer) => err.push(b));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, opts.timeoutMs ?? 120_000);
    child.on('error', (e) => err.push(Buffer.from(`\nspawn error: ${e.message}`)));
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      let stderr = Buffer.concat(err).toString();
      if (timedOut) stderr += `\n(timed out after ${opts.timeoutMs ?? 120_000} ms: ${fmtCmd(cmd, args)})`;
      resolve({
        code: code ?? -1,
        signal,
        stdout: Buffer.concat(out).toString(),
        stderr,
        ms: Date.now() - t0,
        timedOut,
      });
    });
    if (opts.input !== undefined) {
      child.stdin?.on('error', () => {});
      child.stdin?.end(opts.input);
    }
  });
}

export class CommandError extends Error {
  constructor(
    readonly cmd: string,
    readonly result: RunResult,
  ) {
    super(
      `command failed (exit ${result.code}${result.signal ? `, signal ${result.signal}` : ''}): ${cmd}\n` +
        (result.stderr.trim() || result.stdout.trim()).slice(-4000),
    );
    this.name = 'CommandError';
  }
}

/** Run a command and throw (with its stderr) unless it exits 0. */
export async function runOk(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const r = await run(cmd, args, opts);
  if (r.code !== 0) throw new CommandError(fmtCmd(cmd, args), r);
  return r;
}

/** Synchronous variant, for exit handlers only (the event loop is gone there). */
export function runSync(cmd: string, args: readonly string[], timeoutMs = 60_000): RunResult {
  const t0 = Date.now();
  const r = spawnSync(cmd, [...args], { env: sysEnv(), timeout: timeoutMs, encoding: 'utf8' });
  return {
    code: r.status ?? -1,
    signal: r.signal,
    stdout: r.stdout ?? '',
    stderr: (r.stderr ?? '') + (r.error ? `\n${r.error.message}` : ''),
    ms: Date.now() - t0,
    timedOut: r.error?.message.includes('ETIMEDOUT') ?? false,
  };
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Blocking sleep, for exit handlers. */
export function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

export function alive(pid: number | undefined): boolean {
  if (!pid) return false;
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  // a zombie still "exists" for kill(0); treat it as dead
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

export function tail(text: string, lines = 30): string {
  const l = text.split('\n');
  return l.slice(Math.max(0, l.length - lines - 1)).join('\n');
}
