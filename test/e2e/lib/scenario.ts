import type { Test } from 'tap';
import { reconcilePlan, type ReconcilePlan } from './tsnet.js';

/**
 * Runs one scenario body; when it throws or leaves a failed assertion, `onFailure` adds the logs
 * that explain it (each test file knows which daemons' logs matter).
 */
export async function withDiagnostics(tt: Test, fn: (t: Test) => Promise<void>, onFailure: (t: Test) => void): Promise<void> {
  let threw = true;
  try {
    await fn(tt);
    threw = false;
  } finally {
    if (threw || !tt.passing()) onFailure(tt);
  }
}

/**
 * The idempotence check after a scenario: a reconcile right after it must plan nothing. A dry
 * run on tsnet's socket (`socketPath`; undefined when no tsnet serves at the end of the
 * scenario, said in a comment) must list no change, no failure, no missing and no foreign object.
 */
export async function expectIdle(t: Test, socketPath: string | undefined, who = 'tsnet', external?: string): Promise<void> {
  if (!socketPath) {
    t.comment(`idempotence: no ${who} serves at the end of this scenario, nothing to ask`);
    return;
  }
  let plan: ReconcilePlan;
  try {
    if (external) {
      // Something changed the host behind tsnet's back (a dockerd restart rewrites Docker's rules
      // as it starts): one real pass may repair; the dry run after it must then plan nothing.
      const pass = await reconcilePlan(socketPath, 30_000, false);
      t.same(pass.Failed, [], `after ${external}: ${who}'s reconcile pass fails nothing (it changed: ${JSON.stringify(pass.Changes)})`);
    }
    plan = await reconcilePlan(socketPath);
  } catch (err) {
    t.fail(`idempotence: ${who} answers a dry-run reconcile: ${(err as Error).message}`);
    return;
  }
  const { Changes, Failed, Missing, Foreign, Ms } = plan;
  t.same({ Changes, Failed, Missing, Foreign }, { Changes: [], Failed: [], Missing: [], Foreign: [] },
    `idempotence: a reconcile of ${who} right after the scenario plans nothing (dry run, ${Ms} ms)`);
}
