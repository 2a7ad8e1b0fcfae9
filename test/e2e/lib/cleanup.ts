// Cleanup registry. Everything a test creates (engines with their netns and processes, tsnet
// processes) is registered here and torn down:
//   - normally by the test's own t.teardown (async, graceful);
//   - on process exit / SIGINT / SIGTERM / SIGHUP / uncaught exception (synchronously, hard);
//   - if the test process is SIGKILLed (tap's timeout does that), by a detached reaper process
//     that watches our pid and sweeps what the manifest file still lists.
// Nothing happens at import time: handlers and the reaper start with the first registration.
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { alive, runSync, sleepSync } from './proc.js';

export const LIB_DIR = dirname(fileURLToPath(import.meta.url));
export const STATE_ROOT = '/tmp/tse';
const REAPER_DIR = join(STATE_ROOT, '.reaper');

export type Resource =
  | { kind: 'engine'; name: string }
  | { kind: 'pid'; pid: number; what: string };

interface Entry {
  id: number;
  res: Resource;
  /** start time of the process (for pid entries), to never kill a recycled pid */
  start?: string;
}

const entries: Entry[] = [];
let nextId = 1;
let installed = false;
let reaperPid: number | undefined;
const manifest = join(REAPER_DIR, `${process.pid}.list`);

function procStart(pid: number): string | undefined {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return s.slice(s.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

function writeManifest(): void {
  const lines = entries.map((e) =>
    e.res.kind === 'engine' ? `engine ${e.res.name}` : `pid ${e.res.pid} ${e.start ?? '?'}`,
  );
  try {
    mkdirSync(REAPER_DIR, { recursive: true });
    writeFileSync(manifest, lines.join('\n') + (lines.length ? '\n' : ''));
  } catch {
    /* best effort */
  }
}

function startReaper(): void {
  if (reaperPid && alive(reaperPid)) return;
  const child = spawn('/bin/bash', [join(LIB_DIR, 'reaper.sh'), String(process.pid), manifest], {
    detached: true,
    stdio: 'ignore',
  });
  child.on('error', () => {});
  child.unref();
  reaperPid = child.pid;
}

function stopReaper(): void {
  if (reaperPid && alive(reaperPid)) {
    try {
      process.kill(-reaperPid, 'SIGKILL'); // its process group: bash and its `sleep`
    } catch {
      try {
        process.kill(reaperPid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
  }
  reaperPid = undefined;
  try {
    rmSync(manifest, { force: true });
    rmdirSync(REAPER_DIR); // only when empty (other test files may have theirs)
  } catch {
    /* ignore */
  }
}

/** Synchronous hard cleanup of one resource (exit handlers). */
export function hardCleanup(res: Resource, start?: string): void {
  if (res.kind === 'pid') {
    if (alive(res.pid) && (start === undefined || procStart(res.pid) === start)) {
      try {
        process.kill(res.pid, 'SIGTERM');
      } catch {
        /* gone */
      }
      for (let i = 0; i < 30 && alive(res.pid); i++) sleepSync(100);
      try {
        if (alive(res.pid)) process.kill(res.pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    return;
  }
  // engine: try a graceful dockerd stop first (so containers and shims go down in order), then sweep
  const pidFile = join(STATE_ROOT, res.name, 'dockerd.pid');
  let pid: number | undefined;
  try {
    pid = Number(readFileSync(pidFile, 'utf8').trim()) || undefined;
  } catch {
    pid = undefined;
  }
  if (pid && alive(pid)) {
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      /* gone */
    }
    for (let i = 0; i < 100 && alive(pid); i++) sleepSync(100);
  }
  const r = runSync('/bin/bash', [join(LIB_DIR, 'sweep.sh'), res.name]);
  if (r.code !== 0) process.stderr.write(`sweep ${res.name} failed: ${r.stderr}\n`);
}

let exiting = false;
function cleanupAllSync(why: string): void {
  if (exiting) return;
  exiting = true;
  if (entries.length) process.stderr.write(`# e2e cleanup on ${why}: ${entries.map(describe).join(', ')}\n`);
  while (entries.length) {
    const e = entries.pop()!;
    try {
      hardCleanup(e.res, e.start);
    } catch (err) {
      process.stderr.write(`# cleanup of ${describe(e)} failed: ${String(err)}\n`);
    }
    writeManifest();
  }
  stopReaper();
}

function describe(e: Entry): string {
  return e.res.kind === 'engine' ? `engine ${e.res.name}` : `${e.res.what} pid ${e.res.pid}`;
}

function install(): void {
  if (installed) return;
  installed = true;
  process.on('exit', () => cleanupAllSync('exit'));
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const h = () => {
      cleanupAllSync(sig);
      // re-raise with the default action (tap's own handlers, if any, still run)
      process.removeListener(sig, h);
      process.kill(process.pid, sig);
    };
    process.on(sig, h);
  }
  // Uncaught exceptions: node prints the error and emits 'exit', which runs the cleanup above.
}

/** Register something to clean up; returns a function that unregisters it (after a normal teardown). */
export function track(res: Resource): () => void {
  install();
  const e: Entry = { id: nextId++, res };
  if (res.kind === 'pid') e.start = procStart(res.pid);
  entries.push(e);
  writeManifest();
  startReaper();
  return () => {
    const i = entries.findIndex((x) => x.id === e.id);
    if (i >= 0) entries.splice(i, 1);
    writeManifest();
    if (!entries.length) stopReaper();
  };
}

/** What is still registered (for diagnostics). */
export function tracked(): string[] {
  return entries.map(describe);
}
