// Start/stop the tsnet plugin (the product under test) inside an engine's netns.
import { spawn } from 'node:child_process';
import { appendFileSync, closeSync, existsSync, mkdirSync, openSync, readFileSync, writeSync } from 'node:fs';
import { request } from 'node:http';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { track } from './cleanup.js';
import type { Engine } from './engine.js';
import { alive, sleep, sysEnv, tail } from './proc.js';
import { loadUnitSandbox, sandboxArgv, sandboxProblems, type EnginePaths, type UnitSandbox } from './sandbox.js';

/** The repository root, found from this file (test/e2e/lib/tsnet.ts), not hard-coded. */
export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
/** The built CLI; TSE_TSNET_CLI overrides it (e.g. to test another build). */
export const TSNET_CLI = process.env.TSE_TSNET_CLI || join(REPO_ROOT, 'dist', 'cli.js');

/**
 * The legacy tsnet runs inside packaging/tsnet.service's sandbox (lib/sandbox.ts), so every e2e
 * scenario proves it works there. TSE_TSNET_SANDBOX=0 turns that off, for bisecting a failure only.
 */
export const TSNET_SANDBOX: UnitSandbox | undefined = process.env.TSE_TSNET_SANDBOX === '0' ? undefined : loadUnitSandbox();

export interface TsnetOptions {
  /** extra arguments after `serve ...` */
  extraArgs?: string[];
  env?: NodeJS.ProcessEnv;
  logLevel?: string;
  /** how long to wait for the socket to answer Plugin.Activate (default 20 s) */
  readyTimeoutMs?: number;
  /** socket file name in the engine's plugins dir (default tsnet.sock → driver name "tsnet") */
  socketName?: string;
  /** another build's dist/cli.js (default TSNET_CLI) */
  cli?: string;
}

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface TsnetHandle {
  readonly pid: number;
  readonly logPath: string;
  readonly socketPath: string;
  readonly stateDir: string;
  /** the unit's sandbox it runs in (undefined: TSE_TSNET_SANDBOX=0), and the engine paths it maps to */
  readonly sandbox: { unit: UnitSandbox; paths: EnginePaths } | undefined;
  /** resolves when the process has exited */
  readonly exited: Promise<ExitInfo>;
  readonly running: boolean;
  /** SIGTERM, wait for exit, SIGKILL after 10 s. */
  stop(): Promise<ExitInfo>;
  /** SIGKILL, wait for exit. */
  kill9(): Promise<ExitInfo>;
  logTail(lines?: number): string;
}

export function tsnetStateDir(e: Engine): string {
  return join(e.stateDir, 'tsnet-state');
}

export function tsnetLogPath(e: Engine): string {
  return join(e.stateDir, 'tsnet.log');
}

interface HttpReply {
  status: number;
  body: string;
}

/** POST to a plugin socket the way Docker does: no Content-Type, body as given (Activate: empty). */
export function pluginPost(socketPath: string, path: string, body = '', timeoutMs = 5_000): Promise<HttpReply> {
  return new Promise((resolveP, reject) => {
    const req = request(
      {
        socketPath,
        path,
        method: 'POST',
        agent: false, // no pooled keep-alive socket: it would keep the test process alive
        headers: {
          Connection: 'close',
          Host: 'plugin.moby.localhost',
          Accept: 'application/vnd.docker.plugins.v1.2+json',
          'Content-Length': Buffer.byteLength(body),
        },
        timeout: timeoutMs,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolveP({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`timeout after ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end(body);
  });
}

/**
 * Run `node dist/cli.js serve --socket <engine plugins dir>/tsnet.sock --state-dir
 * /tmp/tse/NAME/tsnet-state --log-level debug` inside the engine's netns (nsenter --net; the
 * plugins dir is what dockerd sees as /run/docker/plugins), inside the systemd unit's sandbox:
 * its capability bounding set, and its read-only/writable paths in a private mount namespace
 * (/var/lib/tsnet is the state dir here, /run/docker/plugins the plugins dir).
 * stdout+stderr are appended to /tmp/tse/NAME/tsnet.log. Resolves once the socket answers
 * POST /Plugin.Activate with 200 and an Implements list and the process is checked to run
 * bounded as the unit declares (/proc/PID/status and mountinfo).
 */
export async function startTsnet(e: Engine, opts: TsnetOptions = {}): Promise<TsnetHandle> {
  const cli = opts.cli ?? TSNET_CLI;
  if (!existsSync(cli)) throw new Error(`${cli} not found: build first (npx tsc -p tsconfig.json)`);
  const socketPath = join(e.pluginsDir, opts.socketName ?? 'tsnet.sock');
  const stateDir = tsnetStateDir(e);
  const logPath = tsnetLogPath(e);
  mkdirSync(e.pluginsDir, { recursive: true });
  // Garbage collection must follow this engine and no other: point DOCKER_HOST at it explicitly.
  const env = { DOCKER_HOST: e.host, TSNET_GC_INTERVAL: '2', ...opts.env };
  // systemd's StateDirectory= creates the state dir before tsnet starts; so does the harness
  mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  const dockerSocket = env.DOCKER_HOST?.replace(/^unix:\/\//, '');
  const paths: EnginePaths = {
    stateDir,
    socketDir: dirname(socketPath),
    // visible in the private /tmp: the engine's directory, another engine's docker.sock, the CLI
    keep: [e.stateDir, ...(dockerSocket ? [dirname(dockerSocket)] : []), resolve(dirname(cli), '..')],
  };
  const sandbox = TSNET_SANDBOX ? { unit: TSNET_SANDBOX, paths } : undefined;
  const args = [
    `--net=${e.netnsPath}`, '--',
    ...(sandbox ? sandboxArgv(sandbox.unit, sandbox.paths) : []),
    process.execPath, '--max-semi-space-size=2', cli, 'serve',
    '--socket', socketPath,
    '--state-dir', stateDir,
    '--log-level', opts.logLevel ?? 'debug',
    ...(opts.extraArgs ?? []),
  ];
  const fd = openSync(logPath, 'a');
  writeSync(fd, `=== ${new Date().toISOString()} e2e: starting tsnet: nsenter ${args.join(' ')}\n`);
  const child = spawn('nsenter', args, { detached: true, stdio: ['ignore', fd, fd], env: sysEnv(env) });
  closeSync(fd);
  const pid = child.pid;
  if (!pid) throw new Error('could not spawn tsnet (nsenter)');
  child.unref();
  const untrack = track({ kind: 'pid', pid, what: `tsnet(${e.name})` });
  let exitInfo: ExitInfo | undefined;
  const exited = new Promise<ExitInfo>((res) => {
    child.on('exit', (code, signal) => {
      exitInfo = { code, signal };
      untrack();
      res(exitInfo);
    });
    child.on('error', (err) => {
      exitInfo = { code: -1, signal: null };
      appendFileSync(logPath, `spawn error: ${err.message}\n`);
      untrack();
      res(exitInfo);
    });
  });
  const logTail = (lines = 40) => {
    try {
      return tail(readFileSync(logPath, 'utf8'), lines);
    } catch {
      return '(no tsnet.log)';
    }
  };
  const waitExit = async (ms: number): Promise<ExitInfo | undefined> => {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<undefined>((res) => (timer = setTimeout(() => res(undefined), ms)));
    try {
      return await Promise.race([exited, timeout]);
    } finally {
      clearTimeout(timer); // a pending 10 s timer would keep the test process alive
    }
  };
  const handle: TsnetHandle = {
    pid,
    logPath,
    socketPath,
    stateDir,
    sandbox,
    exited,
    get running() {
      return exitInfo === undefined && alive(pid);
    },
    async stop() {
      if (exitInfo) return exitInfo;
      try {
        process.kill(pid, 'SIGTERM');
      } catch {
        /* gone */
      }
      let r = await waitExit(10_000);
      if (!r) {
        process.stderr.write(`# tsnet pid ${pid} ignored SIGTERM for 10 s: SIGKILL\n`);
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          /* gone */
        }
        r = await exited;
      }
      e.attached.delete(handle);
      return r;
    },
    async kill9() {
      if (exitInfo) return exitInfo;
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone */
      }
      const r = await exited;
      e.attached.delete(handle);
      return r;
    },
    logTail,
  };
  e.attached.add(handle);

  const t0 = Date.now();
  const timeout = opts.readyTimeoutMs ?? 20_000;
  let last = 'socket not there yet';
  for (;;) {
    if (exitInfo) {
      throw new Error(
        `tsnet exited during start-up (${exitInfo.signal ?? exitInfo.code}); tail of ${logPath}:\n${logTail()}`,
      );
    }
    if (existsSync(socketPath)) {
      try {
        const r = await pluginPost(socketPath, '/Plugin.Activate', '', 2_000);
        if (r.status === 200) {
          const j = JSON.parse(r.body) as { Implements?: unknown };
          if (Array.isArray(j.Implements) && j.Implements.includes('NetworkDriver')) break;
          last = `Activate answered ${r.body}`;
        } else last = `Activate answered HTTP ${r.status}: ${r.body}`;
      } catch (err) {
        last = `Activate failed: ${(err as Error).message}`;
      }
    }
    if (Date.now() - t0 > timeout) {
      await handle.kill9();
      throw new Error(`tsnet did not answer /Plugin.Activate within ${timeout} ms (${last}); tail of ${logPath}:\n${logTail()}`);
    }
    await sleep(100);
  }
  const outside = sandbox ? sandboxProblems(pid, sandbox.unit, sandbox.paths) : [];
  if (outside.length > 0) {
    await handle.kill9();
    throw new Error(`tsnet (pid ${pid}) does not run inside packaging/tsnet.service's sandbox: ${outside.join('; ')}`);
  }
  return handle;
}

/** What `/Tsnet.Reconcile` answers: the changes a reconcile makes (a dry run: would make) now. */
export interface ReconcilePlan {
  Changes: string[];
  Failed: Array<{ change: string; error: string }>;
  /** wanted objects that are gone and are not made again (a joined veth whose container went) */
  Missing: string[];
  /** wanted objects whose name something else holds */
  Foreign: string[];
  Ms: number;
}

/**
 * POST /Tsnet.Reconcile {"DryRun":true} on a tsnet socket (legacy or a managed plugin's, as the
 * host sees it): the plan of a reconcile pass over everything, which changes nothing. Throws on
 * anything but a well-formed answer.
 */
/** A reconcile of tsnet over its socket: a dry run by default (what it would change), or a real pass. */
export async function reconcilePlan(socketPath: string, timeoutMs = 30_000, dryRun = true): Promise<ReconcilePlan> {
  const r = await pluginPost(socketPath, '/Tsnet.Reconcile', JSON.stringify({ DryRun: dryRun }), timeoutMs);
  let j: Partial<ReconcilePlan> & { Err?: string };
  try {
    j = JSON.parse(r.body) as Partial<ReconcilePlan> & { Err?: string };
  } catch {
    throw new Error(`/Tsnet.Reconcile answered HTTP ${r.status} with no JSON: ${r.body.slice(0, 200)}`);
  }
  if (r.status !== 200 || j.Err) throw new Error(`/Tsnet.Reconcile answered HTTP ${r.status}: ${j.Err ?? r.body.slice(0, 200)}`);
  const list = (x: unknown) => Array.isArray(x);
  if (!list(j.Changes) || !list(j.Failed) || !list(j.Missing) || !list(j.Foreign) || typeof j.Ms !== 'number') {
    throw new Error(`/Tsnet.Reconcile answered an unexpected shape: ${r.body.slice(0, 300)}`);
  }
  return j as ReconcilePlan;
}
