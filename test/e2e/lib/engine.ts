// Private Docker engines for e2e tests. An engine NAME is one dockerd (+ the containerd it manages)
// with everything of its own:
//   state dir   /tmp/tse/NAME          (short: unix socket paths are limited to 107 bytes)
//   data-root   /tmp/tse/NAME/data     exec-root /tmp/tse/NAME/exec    pidfile /tmp/tse/NAME/dockerd.pid
//   API socket  unix:///tmp/tse/NAME/docker.sock
//   netns       tse-NAME (own bridges, own iptables; nothing reaches the host's netns)
//   mount ns    private: /run/docker/plugins -> /tmp/tse/NAME/plugins, /etc/docker -> /tmp/tse/NAME/etc
//   UTS ns      hostname tse-NAME
// Boot order (a plugin must be up before dockerd): createEngineNetns → start the plugin in the netns
// → startDockerd. startEngine does netns + dockerd in one go.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, writeSync } from 'node:fs';
import { mkdtemp, readFile, rm, symlink, writeFile, copyFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { LIB_DIR, STATE_ROOT, track } from './cleanup.js';
import { alive, CommandError, fmtCmd, run, runOk, sleep, sysEnv, tail, type RunOptions, type RunResult } from './proc.js';

export const DOCKER_BIN = '/usr/bin/docker'; // Debian's 20.10 CLI; /usr/local/bin/docker (v28) refuses flags here

/** Something attached to an engine that must be stopped before it (a tsnet process). */
export interface Stoppable {
  stop(): Promise<unknown>;
}

export class Engine {
  readonly stateDir: string;
  readonly netns: string;
  readonly netnsPath: string;
  readonly dataRoot: string;
  readonly execRoot: string;
  readonly pidFile: string;
  readonly sockPath: string;
  readonly host: string;
  readonly pluginsDir: string;
  readonly etcDir: string;
  readonly logPath: string;
  dockerdPid: number | undefined;
  /** processes (tsnet) to stop before the engine goes */
  readonly attached = new Set<Stoppable>();
  /** @internal */ untrack: (() => void) | undefined;
  /** @internal */ child: ChildProcess | undefined;

  constructor(readonly name: string) {
    this.stateDir = join(STATE_ROOT, name);
    this.netns = `tse-${name}`;
    this.netnsPath = `/run/netns/${this.netns}`;
    this.dataRoot = join(this.stateDir, 'data');
    this.execRoot = join(this.stateDir, 'exec');
    this.pidFile = join(this.stateDir, 'dockerd.pid');
    this.sockPath = join(this.stateDir, 'docker.sock');
    this.host = `unix://${this.sockPath}`;
    this.pluginsDir = join(this.stateDir, 'plugins');
    this.etcDir = join(this.stateDir, 'etc');
    this.logPath = join(this.stateDir, 'dockerd.log');
  }

  /** `/usr/bin/docker -H unix://<sock> ...args`; never throws for a non-zero exit. */
  docker(args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
    return run(DOCKER_BIN, ['-H', this.host, ...args], { timeoutMs: 120_000, ...opts });
  }

  /** Like docker() but throws (with stderr) on failure; returns trimmed stdout. */
  async dockerOk(args: readonly string[], opts: RunOptions = {}): Promise<string> {
    const r = await this.docker(args, opts);
    if (r.code !== 0) throw new CommandError(fmtCmd('docker', args), r);
    return r.stdout.trim();
  }

  /** Is dockerd alive? */
  get running(): boolean {
    return alive(this.dockerdPid);
  }

  dockerdLogTail(lines = 40): string {
    try {
      return tail(readFileSync(this.logPath, 'utf8'), lines);
    } catch {
      return '(no dockerd.log)';
    }
  }
}

const NAME_RE = /^[a-z0-9][a-z0-9-]{0,14}$/;

async function sweep(name: string): Promise<void> {
  const r = await run('/bin/bash', [join(LIB_DIR, 'sweep.sh'), name], { timeoutMs: 60_000 });
  if (r.code !== 0) throw new Error(`sweep.sh ${name} failed: ${r.stderr}`);
}

async function netnsExists(ns: string): Promise<boolean> {
  if (existsSync(`/run/netns/${ns}`)) return true;
  const r = await run('ip', ['netns', 'list']);
  return r.stdout.split('\n').some((l) => l.split(' ')[0] === ns);
}

/**
 * Step 1 of the boot order: the engine's state dir and its netns (lo up). Leftovers of an earlier
 * run under the same name (processes, netns, state) are swept first. The engine is registered for
 * cleanup from here on.
 */
export async function createEngineNetns(name: string): Promise<Engine> {
  if (!NAME_RE.test(name)) throw new Error(`bad engine name ${JSON.stringify(name)} (want ${NAME_RE})`);
  const e = new Engine(name);
  if (existsSync(e.stateDir) || (await netnsExists(e.netns))) await sweep(name);
  e.untrack = track({ kind: 'engine', name });
  for (const d of ['data', 'exec', 'plugins', 'etc', 'cg']) mkdirSync(join(e.stateDir, d), { recursive: true });
  await runOk('ip', ['netns', 'add', e.netns]);
  await runOk('ip', ['-n', e.netns, 'link', 'set', 'lo', 'up']);
  return e;
}

/**
 * Step 2: dockerd (which starts its own containerd) inside the engine's netns, in a private mount
 * and UTS namespace. Resolves when `docker version` answers; throws with the tail of dockerd.log
 * after ~60 s or when dockerd dies.
 */
export async function startDockerd(e: Engine, extraArgs: readonly string[] = [], timeoutMs = 60_000): Promise<void> {
  if (e.running) throw new Error(`dockerd of engine ${e.name} is already running (pid ${e.dockerdPid})`);
  if (!(await netnsExists(e.netns))) throw new Error(`netns ${e.netns} does not exist: createEngineNetns first`);
  for (const d of ['data', 'exec', 'plugins', 'etc', 'cg']) mkdirSync(join(e.stateDir, d), { recursive: true });
  // mount points for the bind mounts made in the private mount ns
  mkdirSync('/run/docker/plugins', { recursive: true });
  mkdirSync('/etc/docker', { recursive: true });
  const fd = openSync(e.logPath, 'a');
  writeSync(fd, `=== ${new Date().toISOString()} e2e: starting dockerd ${extraArgs.join(' ')}\n`);
  const argv = [
    `--net=${e.netnsPath}`, '--',
    'unshare', '--mount', '--uts', '--propagation', 'slave', '--',
    '/bin/sh', join(LIB_DIR, 'engine-inner.sh'), e.stateDir, e.netns, ...extraArgs,
  ];
  const t0 = Date.now();
  let exited: string | undefined;
  const child = spawn('nsenter', argv, { detached: true, stdio: ['ignore', fd, fd], env: sysEnv() });
  closeSync(fd);
  child.on('error', (err) => (exited = `spawn error: ${err.message}`));
  child.on('exit', (code, sig) => (exited = `exited with ${sig ?? code}`));
  child.unref();
  e.child = child;
  e.dockerdPid = child.pid; // nsenter, unshare and sh all exec: this is dockerd's pid
  for (;;) {
    if (exited) throw new Error(`dockerd of engine ${e.name} ${exited}; tail of ${e.logPath}:\n${e.dockerdLogTail()}`);
    const r = await run(DOCKER_BIN, ['-H', e.host, 'version', '--format', '{{.Server.Version}}'], { timeoutMs: 10_000 });
    if (r.code === 0) break;
    if (Date.now() - t0 > timeoutMs) {
      try {
        process.kill(child.pid!, 'SIGKILL');
      } catch {
        /* gone */
      }
      throw new Error(`dockerd of engine ${e.name} did not answer within ${timeoutMs} ms; tail of ${e.logPath}:\n${e.dockerdLogTail()}`);
    }
    await sleep(100);
  }
}

/** Processes still referring to the engine's exec-root (containerd, shims). */
async function execRootProcs(e: Engine): Promise<number[]> {
  const r = await run('pgrep', ['-f', `${e.execRoot}/`]);
  return r.stdout.split('\n').filter(Boolean).map(Number).filter((p) => p !== process.pid);
}

/**
 * Stop dockerd (SIGTERM, SIGKILL after timeoutMs); dockerd stops its containers and containerd.
 * Waits for containerd/shims to go. Deletes the netns unless keepNetns (to restart dockerd in it
 * while a plugin keeps running there).
 */
export async function stopDockerd(e: Engine, { keepNetns = false, timeoutMs = 30_000 } = {}): Promise<void> {
  let pid = e.dockerdPid;
  if (!alive(pid)) {
    try {
      pid = Number(readFileSync(e.pidFile, 'utf8').trim()) || undefined;
    } catch {
      pid = undefined;
    }
  }
  if (pid && alive(pid)) {
    process.kill(pid, 'SIGTERM');
    const t0 = Date.now();
    while (alive(pid) && Date.now() - t0 < timeoutMs) await sleep(100);
    if (alive(pid)) {
      process.stderr.write(`# dockerd ${e.name} (pid ${pid}) did not stop in ${timeoutMs} ms: SIGKILL\n`);
      process.kill(pid, 'SIGKILL');
      while (alive(pid)) await sleep(50);
    }
  }
  e.dockerdPid = undefined;
  e.child = undefined;
  // containerd is stopped by dockerd; shims exit when their containers are gone
  const t1 = Date.now();
  let left = await execRootProcs(e);
  while (left.length && Date.now() - t1 < 10_000) {
    await sleep(100);
    left = await execRootProcs(e);
  }
  if (left.length) {
    process.stderr.write(`# engine ${e.name}: processes left after dockerd stop, SIGKILL: ${left.join(' ')}\n`);
    for (const p of left) {
      try {
        process.kill(p, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
  }
  if (!keepNetns && (await netnsExists(e.netns))) await run('ip', ['netns', 'del', e.netns]);
}

/** startEngine = createEngineNetns + startDockerd. */
export async function startEngine(name: string, dockerdArgs: readonly string[] = []): Promise<Engine> {
  const e = await createEngineNetns(name);
  await startDockerd(e, dockerdArgs);
  return e;
}

/**
 * Stop everything of the engine and remove it: containers (docker rm -f, while dockerd and tsnet
 * still answer, so the driver hears Leave/DeleteEndpoint), dockerd + containerd + shims, then the
 * attached tsnet processes (reverse boot order), anything else in its netns; delete the netns, save
 * *.log to /tmp/tse-logs/NAME/ and rm -rf the state dir. Idempotent.
 */
export async function destroyEngine(e: Engine): Promise<void> {
  const errors: unknown[] = [];
  const pluginsUp = [...e.attached].every((a) => (a as { running?: boolean }).running !== false);
  if (e.running && pluginsUp) {
    const ids = await e.docker(['ps', '-aq'], { timeoutMs: 10_000 });
    const list = ids.stdout.split('\n').filter(Boolean);
    if (list.length) await e.docker(['rm', '-f', ...list], { timeoutMs: 60_000 });
  }
  try {
    await stopDockerd(e, { keepNetns: true });
  } catch (err) {
    errors.push(err);
  }
  for (const a of [...e.attached]) {
    try {
      await a.stop();
    } catch (err) {
      errors.push(err);
    }
  }
  await sweep(e.name);
  e.untrack?.();
  e.untrack = undefined;
  if (errors.length) throw new Error(`destroyEngine ${e.name}: ${errors.map(String).join('; ')}`);
}

/** Run a command in the engine's netns (nsenter --net; not `ip netns exec`, which remounts /sys). */
export function nsExec(e: Engine, argv: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  return run('nsenter', [`--net=${e.netnsPath}`, '--', ...argv], opts);
}

export async function nsExecOk(e: Engine, argv: readonly string[], opts: RunOptions = {}): Promise<string> {
  const r = await nsExec(e, argv, opts);
  if (r.code !== 0) throw new CommandError(`[netns ${e.netns}] ${fmtCmd(argv[0] ?? '', argv.slice(1))}`, r);
  return r.stdout;
}

/**
 * bb:latest, a busybox-only image made with `docker import` from Debian's busybox-static
 * (/bin/busybox, statically linked) plus one symlink per applet. No registry involved.
 */
export async function ensureBusyboxImage(e: Engine, tag = 'bb:latest', busybox = '/bin/busybox'): Promise<void> {
  if ((await e.docker(['image', 'inspect', '--format', '{{.Id}}', tag])).code === 0) return;
  if (!existsSync(busybox)) throw new Error(`${busybox} missing: install busybox-static (scripts/install-test-deps.sh)`);
  const d = await mkdtemp('/tmp/tse-bb-');
  try {
    const root = join(d, 'root');
    for (const sub of ['bin', 'etc', 'tmp', 'root', 'proc', 'sys', 'dev']) await mkdir(join(root, sub), { recursive: true });
    await copyFile(busybox, join(root, 'bin/busybox'));
    const list = (await runOk(busybox, ['--list'])).stdout.split('\n').filter((a) => a && a !== 'busybox');
    for (const a of list) await symlink('busybox', join(root, 'bin', a));
    await writeFile(join(root, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\n');
    await writeFile(join(root, 'etc/group'), 'root:x:0:\n');
    const tarball = join(d, 'bb.tar');
    await runOk('tar', ['-C', root, '-cf', tarball, '.']);
    await e.dockerOk(['import', '--change', 'CMD ["sh"]', tarball, tag]);
  } finally {
    await rm(d, { recursive: true, force: true });
  }
}

/** Read a file if it exists ('' otherwise). */
export async function readIfExists(path: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch {
    return '';
  }
}
