// tsnet as a managed (v2) Docker plugin on an e2e engine: build it with plugin/build.sh, find its
// process and socket, read what it logged. A managed plugin's stdout/stderr end up in dockerd.log
// as `level=info|error msg="<line>" plugin=<64-hex id>`.
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { DOCKER_BIN, type Engine } from './engine.js';
import { CommandError, fmtCmd, run, type RunResult } from './proc.js';
import { REPO_ROOT } from './tsnet.js';

export const BUILD_SH = join(REPO_ROOT, 'plugin', 'build.sh');
export const LEGACY_ALIAS_SH = join(REPO_ROOT, 'plugin', 'legacy-alias.sh');

export interface BuildResult {
  /** key=value facts build.sh prints last (plugin, rootfs_bytes, create_ms, ...) */
  facts: Record<string, string>;
  /** wall time of the whole build.sh run */
  ms: number;
  stderr: string;
}

/**
 * plugin/build.sh against the engine (offline rootfs, no registry). `args` are extra build.sh
 * arguments (--tag, --stamp, --build-dir, --replace, ...). Throws with build.sh's stderr on failure.
 */
export async function buildPlugin(e: Engine, args: readonly string[] = [], timeoutMs = 180_000): Promise<BuildResult> {
  const argv = [BUILD_SH, '--docker', DOCKER_BIN, '-H', e.host, ...args];
  const r = await run('/bin/bash', argv, { timeoutMs, env: { ...process.env, NODE: process.execPath } });
  if (r.code !== 0) throw new CommandError(fmtCmd('plugin/build.sh', argv.slice(1)), r);
  const facts: Record<string, string> = {};
  for (const line of r.stdout.split('\n')) {
    const m = /^([a-z_]+)=(.*)$/.exec(line);
    if (m) facts[m[1]!] = m[2]!;
  }
  return { facts, ms: r.ms, stderr: r.stderr };
}

export async function legacyAlias(e: Engine, args: readonly string[]): Promise<RunResult> {
  return run('/bin/bash', [LEGACY_ALIAS_SH, '--docker', DOCKER_BIN, '-H', e.host, '--etc-dir', e.etcDir, '--run-dir', e.pluginsDir, ...args]);
}

export async function pluginId(e: Engine, name: string): Promise<string> {
  return e.dockerOk(['plugin', 'inspect', '-f', '{{.Id}}', name]);
}

export async function pluginEnabled(e: Engine, name: string): Promise<boolean> {
  return (await e.dockerOk(['plugin', 'inspect', '-f', '{{.Enabled}}', name])) === 'true';
}

/** The plugin's socket as this (host) process sees it: <engine plugins dir>/<id>/<socket>. */
export function pluginSocketPath(e: Engine, id: string, socket = 'tsnet.sock'): string {
  return join(e.pluginsDir, id, socket);
}

/** pid of the plugin's process (the runc v2 shim writes it next to the bundle), or undefined. */
export function pluginPid(e: Engine, id: string): number | undefined {
  const f = join(e.execRoot, 'containerd/daemon/io.containerd.runtime.v2.task/plugins.moby', id, 'init.pid');
  try {
    const pid = Number(readFileSync(f, 'utf8').trim());
    return pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** Every plugin, disabled and removed (-f); errors are collected, not thrown. */
export async function removeAllPlugins(e: Engine): Promise<string[]> {
  const problems: string[] = [];
  const names = (await e.docker(['plugin', 'ls', '--format', '{{.Name}}'])).stdout.split('\n').filter(Boolean);
  for (const n of names) {
    await e.docker(['plugin', 'disable', '-f', n], { timeoutMs: 30_000 });
    const r = await e.docker(['plugin', 'rm', '-f', n], { timeoutMs: 30_000 });
    if (r.code !== 0) problems.push(`docker plugin rm -f ${n}: ${r.stderr.trim()}`);
  }
  return problems;
}

/** Current size of dockerd.log: a mark to read only what is logged after it. */
export function logMark(e: Engine): number {
  try {
    return statSync(e.logPath).size;
  } catch {
    return 0;
  }
}

export interface PluginLine {
  level: string;
  /** the plugin's own line (logrus' msg, unquoted) */
  text: string;
  /** the line parsed as JSON (tsnet's pino records), when it is JSON */
  json?: Record<string, unknown>;
}

/** Lines the plugin with this id wrote (stdout and stderr), as dockerd logged them after `since`. */
export function pluginLines(e: Engine, id: string, since = 0): PluginLine[] {
  if (!existsSync(e.logPath)) return [];
  const all = readFileSync(e.logPath);
  const text = all.subarray(Math.min(since, all.length)).toString('utf8');
  const out: PluginLine[] = [];
  for (const line of text.split('\n')) {
    if (!line.endsWith(`plugin=${id}`)) continue;
    const level = /\blevel=(\w+)/.exec(line)?.[1] ?? '';
    const m = /\bmsg="((?:[^"\\]|\\.)*)"/.exec(line);
    if (!m) continue;
    let msg: string;
    try {
      msg = JSON.parse(`"${m[1]!}"`) as string;
    } catch {
      msg = m[1]!;
    }
    let json: Record<string, unknown> | undefined;
    if (msg.startsWith('{')) {
      try {
        json = JSON.parse(msg) as Record<string, unknown>;
      } catch {
        json = undefined;
      }
    }
    out.push({ level, text: msg, ...(json ? { json } : {}) });
  }
  return out;
}
