// Finding 6 of issue 10 end to end: one `tsnet serve` per state directory. A private engine "sl"
// (netns tse-sl), the built plugin as a legacy plugin, busybox containers on a tsnet network. A
// second `tsnet serve` on the same --state-dir (an operator's migration: same netns, the unit's
// sandbox, its own socket) must exit 78 within seconds naming the first, and the first must be
// unharmed: its chains, sets, links and store as before, its containers answering, Docker still
// reaching it for a new container. Negative control: once the first is stopped, the very same
// command starts, takes the lock and answers.
// Run: flock /tmp/tsnet-e2e.lock npx tap run --timeout=900 test/e2e/state-lock.test.ts   (as root)
import t, { type Test } from 'tap';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import {
  destroyEngine,
  diffSnapshots,
  ensureBusyboxImage,
  containerIPv4,
  nsExecOk,
  ping,
  pingOk,
  pluginPost,
  runSleeper,
  snapshotHost,
  startEngine,
  startTsnet,
  sysEnv,
  track,
  tsnetStateDir,
  waitFor,
  TSNET_CLI,
  TSNET_SANDBOX,
  type Engine,
  type ExitInfo,
  type HostSnapshot,
  type TsnetHandle,
} from './lib/index.js';
import { sandboxArgv, type EnginePaths } from './lib/sandbox.js';
import { expectIdle, withDiagnostics } from './lib/scenario.js';

t.setTimeout(300_000);

const TS = ['-d', 'tsnet', '--ipam-driver', 'tsnet'];
const NET = 'lk';
const SUBNET = '10.0.77.0/24';
/** The second instance's socket: beside the first's, so it cannot replace the first's socket file. */
const SECOND_SOCKET = 'tsnet-second.sock';
/** EX_CONFIG: src/store/state-lock.ts EXIT_STATE_DIR_IN_USE. */
const EXIT_STATE_DIR_IN_USE = 78;
const REFUSAL_BOUND_MS = 15_000;

/** A `tsnet serve` of this test's own, with its output kept apart from the first's tsnet.log. */
interface Serve {
  readonly pid: number;
  readonly socketPath: string;
  readonly exited: Promise<ExitInfo>;
  readonly running: boolean;
  output(): string;
  stop(): Promise<ExitInfo>;
}

/**
 * The second instance, started exactly as lib/tsnet.ts startTsnet starts the first (nsenter into
 * the engine's netns, the unit's sandbox, the same --state-dir, DOCKER_HOST and log level) except
 * for its socket, its output (captured here, so the refusal's words are its own) and tap's
 * instrumentation.
 */
function spawnServe(e: Engine, socketName: string): Serve {
  const socketPath = join(e.pluginsDir, socketName);
  const stateDir = tsnetStateDir(e);
  const env = { DOCKER_HOST: e.host, TSNET_GC_INTERVAL: '2' };
  const paths: EnginePaths = {
    stateDir,
    socketDir: dirname(socketPath),
    keep: [e.stateDir, dirname(e.sockPath), resolve(dirname(TSNET_CLI), '..')],
  };
  const args = [
    `--net=${e.netnsPath}`, '--',
    ...(TSNET_SANDBOX ? sandboxArgv(TSNET_SANDBOX, paths) : []),
    process.execPath, '--max-semi-space-size=2', TSNET_CLI, 'serve',
    '--socket', socketPath,
    '--state-dir', stateDir,
    '--log-level', 'debug',
  ];
  // tap's instrumentation stays out: its spawn hook puts `--import @tapjs/processinfo` into every
  // child's NODE_OPTIONS, whose exit handler writes under the repository (read-only in the
  // sandbox) and would add its stack trace to the output checked. `env` execs, keeping the pid.
  const child = spawn('env', ['-u', 'NODE_OPTIONS', 'nsenter', ...args], { detached: true, stdio: ['ignore', 'pipe', 'pipe'], env: sysEnv(env) });
  const pid = child.pid;
  if (!pid) throw new Error('could not spawn the second tsnet (nsenter)');
  const untrack = track({ kind: 'pid', pid, what: `second tsnet(${e.name})` });
  let text = '';
  const keep = (b: Buffer) => {
    if (text.length < 1_000_000) text += b.toString();
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  let info: ExitInfo | undefined;
  const exited = new Promise<ExitInfo>((res) => {
    const done = (exit: ExitInfo) => {
      info = exit;
      untrack();
      e.attached.delete(serve); // an exited instance is nothing for destroyEngine to stop
      res(exit);
    };
    child.on('exit', (code, signal) => done({ code, signal }));
    child.on('error', (err) => {
      text += `spawn error: ${err.message}\n`;
      done({ code: -1, signal: null });
    });
  });
  const serve: Serve = {
    pid,
    socketPath,
    exited,
    get running() {
      return info === undefined;
    },
    output: () => text,
    async stop() {
      if (!info) {
        try {
          process.kill(pid, 'SIGTERM');
        } catch {
          /* gone */
        }
        if (!(await within(exited, 10_000))) {
          try {
            process.kill(pid, 'SIGKILL');
          } catch {
            /* gone */
          }
        }
      }
      return exited;
    },
  };
  e.attached.add(serve); // destroyEngine stops it if a scenario fails half-way
  return serve;
}

/** The promise's value, or undefined after ms. */
async function within<T>(p: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<undefined>((res) => (timer = setTimeout(() => res(undefined), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

const tsnetLines = (rules: readonly string[]) => rules.filter((l) => l.includes('TSNET'));
const setNames = async (e: Engine) => (await nsExecOk(e, ['ipset', 'list', '-n'])).split('\n').filter(Boolean).sort();
const lockHolder = (e: Engine) => JSON.parse(readFileSync(join(tsnetStateDir(e), 'tsnet.lock'), 'utf8')) as { pid?: number; socket?: string };

let E: Engine | undefined;
let first: TsnetHandle | undefined;

function scenario(name: string, fn: (t: Test) => Promise<void>) {
  return t.test(name, (tt) => withDiagnostics(tt, fn, (tt) => {
    if (!E) return;
    tt.comment(`--- tail of ${E.stateDir}/tsnet.log:\n${first?.logTail(30) ?? '(tsnet not started)'}`);
    tt.comment(`--- tail of ${E.logPath}:\n${E.dockerdLogTail(15)}`);
  }));
}

await t.test('setup: engine, bb image, the first tsnet', async (t) => {
  t.ok(existsSync(TSNET_CLI), `${TSNET_CLI} is built`);
  if (!existsSync(TSNET_CLI)) return;
  E = await startEngine('sl');
  await ensureBusyboxImage(E);
  first = await startTsnet(E);
  t.ok(first.running, `the first tsnet runs (pid ${first.pid})`);
});

if (!E || !first) {
  t.fail('setup failed: the other scenarios are not run');
  if (E) await destroyEngine(E);
} else {
  const e: Engine = E;
  const ts: TsnetHandle = first;
  t.teardown(() => destroyEngine(e));
  let before: HostSnapshot | undefined;
  let setsBefore: string[] = [];
  let c1 = '';

  await scenario('positive control: a tsnet network whose containers answer', async (t) => {
    await e.dockerOk(['network', 'create', ...TS, '--subnet', SUBNET, NET]);
    await runSleeper(e, 'c1', ['--network', NET]);
    await runSleeper(e, 'c2', ['--network', NET]);
    c1 = await containerIPv4(e, 'c1');
    t.match(c1, /^10\.0\.77\.\d+$/, `c1 has ${c1} on ${NET}`);
    t.equal((await ping(e, 'c2', c1)).code, 0, 'c2 pings c1');
    t.not((await ping(e, 'c2', '10.0.77.200', { waitSec: 1 })).code, 0, 'a ping to an unused address fails (the ping can fail)');
    before = await snapshotHost(e);
    setsBefore = await setNames(e);
    t.ok(tsnetLines(before.iptables).length > 0, `the first tsnet's iptables rules are there (${tsnetLines(before.iptables).length} TSNET lines)`);
    t.ok(setsBefore.length > 0, `the first tsnet's ipsets are there (${setsBefore.join(' ')})`);
    t.equal(lockHolder(e).pid, ts.pid, 'the lock file names the first tsnet');
  });

  await scenario(`a second tsnet serve on the same state directory exits ${EXIT_STATE_DIR_IN_USE} naming the first`, async (t) => {
    const t0 = Date.now();
    const second = spawnServe(e, SECOND_SOCKET);
    const exit = await within(second.exited, REFUSAL_BOUND_MS);
    if (!exit) {
      await second.stop();
      t.fail(`the second tsnet still ran after ${REFUSAL_BOUND_MS} ms (it should have been refused); its output:\n${second.output()}`);
      return;
    }
    const ms = Date.now() - t0;
    const out = second.output();
    t.same(exit, { code: EXIT_STATE_DIR_IN_USE, signal: null }, `it exits ${EXIT_STATE_DIR_IN_USE} (EX_CONFIG) after ${ms} ms; its output:\n${out}`);
    t.match(out, `the state directory ${tsnetStateDir(e)} is in use by another tsnet serve`, 'it says the state directory is in use');
    t.match(out, new RegExp(`\\(pid ${ts.pid}, a legacy`), `it names the holder: the first tsnet, pid ${ts.pid}`);
    t.notMatch(out, /another PID namespace/, 'in its own PID namespace');
    t.match(out, `serving ${ts.socketPath}`, 'and the socket the holder serves');
    t.notOk(existsSync(second.socketPath), `it made no socket (${SECOND_SOCKET})`);
    t.equal(lockHolder(e).pid, ts.pid, 'the lock file still names the first tsnet');
  });

  await scenario('the first tsnet is unharmed: rules, sets, store, containers, Docker', async (t) => {
    if (!before) {
      t.fail('no snapshot from the positive control');
      return;
    }
    t.ok(ts.running, 'the first tsnet still runs');
    const after = await snapshotHost(e);
    t.equal(tsnetLines(after.iptables).length, tsnetLines(before.iptables).length, `as many TSNET iptables lines as before (${tsnetLines(after.iptables).length})`);
    t.same(await setNames(e), setsBefore, `ipset list -n: the same sets (${setsBefore.join(' ')})`);
    t.same(diffSnapshots(before, after), [], 'links, iptables, ip6tables, ipset members and store files as before');
    t.equal((await pluginPost(ts.socketPath, '/Plugin.Activate')).status, 200, 'the first tsnet answers on its socket');
    t.equal((await ping(e, 'c2', c1)).code, 0, 'c2 still pings c1');
    await runSleeper(e, 'c3', ['--network', NET]);
    const c3 = await containerIPv4(e, 'c3');
    t.match(c3, /^10\.0\.77\.\d+$/, `a new container c3 got ${c3} on ${NET} (Docker reached the first tsnet)`);
    t.ok(await waitFor(() => pingOk(e, 'c3', c1), { timeoutMs: 5_000, what: 'c3 pings c1' }).catch(() => false), 'c3 pings c1');
    t.equal((await ping(e, 'c2', c3)).code, 0, 'c2 pings c3');
    await expectIdle(t, ts.socketPath, 'the first tsnet');
    // Docker's objects go while the first tsnet serves, so the engine's teardown needs no driver.
    await e.dockerOk(['rm', '-f', 'c1', 'c2', 'c3']);
    await e.dockerOk(['network', 'rm', NET]);
  });

  await scenario('negative control: with the first stopped, the same command starts and answers', async (t) => {
    t.same(await ts.stop(), { code: 0, signal: null }, 'the first tsnet stops on SIGTERM with exit 0');
    const second = spawnServe(e, SECOND_SOCKET);
    const caps = await waitFor(async () => {
      if (!second.running) throw new Error(`it exited: ${second.output()}`);
      if (!existsSync(second.socketPath)) return undefined;
      const r = await pluginPost(second.socketPath, '/NetworkDriver.GetCapabilities', '{}', 2_000);
      return r.status === 200 ? (JSON.parse(r.body) as { Scope?: string }) : undefined;
    }, { timeoutMs: 20_000, what: 'the second tsnet to answer GetCapabilities' }).catch((err: Error) => {
      t.fail(`${err.message}; its output:\n${second.output().slice(-3_000)}`);
      return undefined;
    });
    t.equal(caps?.Scope, 'local', `the second tsnet (pid ${second.pid}) answers GetCapabilities: ${JSON.stringify(caps)}`);
    t.equal(lockHolder(e).pid, second.pid, 'the lock file now names the second tsnet');
    t.same(await second.stop(), { code: 0, signal: null }, 'it stops on SIGTERM with exit 0');
    t.notOk(existsSync(second.socketPath), 'its socket is gone');
  });
}
