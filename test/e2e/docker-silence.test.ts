// Docker's API silent for five minutes, end to end (issue 15): a tsnet in its own empty netns
// ("dsil", no dockerd) is given a Docker socket that does not exist. `tsnet status` says garbage
// collection waits and Docker does not answer; no warning comes before five minutes, then exactly
// one, and no second while the failures go on. The five minutes are real time and nothing else
// here needs the CPU: scripts/test.sh runs this file beside the unit..fuzz stages (no dockerd,
// names of its own), not in the serial e2e queue. About 5.5 minutes.
// Run: npm run build && flock /tmp/tsnet-e2e.lock npx tap run --timeout=900 test/e2e/docker-silence.test.ts  (as root)
import t from 'tap';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createEngineNetns, destroyEngine, run, sleep, startTsnet, SYS_PATH, TSNET_CLI, waitFor, type Engine, type TsnetHandle } from './lib/index.js';

t.setTimeout(900_000);

const SILENCE_MS = 5 * 60_000;
let W: Engine | undefined;
let wrong: TsnetHandle | undefined;
let wrongStarted = 0;

await t.test('setup: a tsnet facing a Docker socket that does not exist', async (t) => {
  t.ok(existsSync(TSNET_CLI), `${TSNET_CLI} is built`);
  if (!existsSync(TSNET_CLI)) return;
  W = await createEngineNetns('dsil');
  wrongStarted = Date.now();
  wrong = await startTsnet(W, { logLevel: 'info', env: { DOCKER_HOST: `unix://${join(W.stateDir, 'no-such-docker.sock')}`, TSNET_GC_INTERVAL: '60' } });
  t.ok(wrong.running, 'it runs');
});

if (!W || !wrong) {
  t.fail('setup failed: the scenario is not run');
  if (W) await destroyEngine(W);
} else {
  const w: Engine = W;
  const h: TsnetHandle = wrong;
  t.teardown(() => destroyEngine(w));

  await t.test("Docker's API silent for five minutes: one warning; status shows it", async (t) => {
    const status = () => run(process.execPath, [TSNET_CLI, 'status', '--state-dir', h.stateDir, '--socket', h.socketPath], { env: { PATH: SYS_PATH } });
    // the first garbage collection pass is the first contact that fails: wait for it to be said
    const st = await waitFor(async () => {
      const r = await status();
      return /  gc         waiting for Docker since /.test(r.stdout) ? r : undefined;
    }, { timeoutMs: 30_000, intervalMs: 500, what: 'status saying that garbage collection waits' });
    t.match(st.stdout, /  gc         waiting for Docker since .*: Docker does not answer: /, `status says garbage collection waits\n${st.stdout}`);
    t.match(st.stdout, /  docker     NOT ANSWERING at unix:\/\/\/tmp\/tse\/dsil\/no-such-docker.sock since /);
    const warnings = () => readFileSync(h.logPath, 'utf8').split('\n').filter((l) => l.includes('has not answered for'));
    const elapsed = Date.now() - wrongStarted;
    t.ok(elapsed < SILENCE_MS - 10_000, `checked early (${Math.round(elapsed / 1000)} s after the start)`);
    t.same(warnings(), [], `no warning before five minutes (${Math.round(elapsed / 1000)} s so far)`);
    await sleep(SILENCE_MS - (Date.now() - wrongStarted) - 5_000);
    t.same(warnings(), [], 'still none just before five minutes');
    const said: string[] = await waitFor(() => (warnings().length > 0 ? warnings() : undefined), { timeoutMs: 90_000, intervalMs: 1_000, what: 'the warning' });
    t.equal(said.length, 1, `one warning: ${said[0]}`);
    t.match(said[0], /"level":40.*"dockerHost":"unix:\/\/\/tmp\/tse\/dsil\/no-such-docker.sock".*Docker's API at unix:\/\/\/tmp\/tse\/dsil\/no-such-docker.sock has not answered for 5 minutes/);
    const at = Date.parse(String((JSON.parse(said[0] as string) as { time?: string }).time));
    t.ok(at - wrongStarted >= SILENCE_MS, `it came after five minutes of silence (${Math.round((at - wrongStarted) / 1000)} s after tsnet was started)`);
    await sleep(20_000);
    t.equal(warnings().length, 1, 'and only one, while the failures go on');
    t.comment(`--- status (wrong Docker socket):\n${st.stdout}`);
  });
}
