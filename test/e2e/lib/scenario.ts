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
/** Repair passes an external change may take before the dry run must plan nothing. */
const EXTERNAL_PASSES = 3;

export async function expectIdle(t: Test, socketPath: string | undefined, who = 'tsnet', external?: string): Promise<void> {
  if (!socketPath) {
    t.comment(`idempotence: no ${who} serves at the end of this scenario, nothing to ask`);
    return;
  }
  let plan: ReconcilePlan;
  try {
    // Something changed the host behind tsnet's back (a dockerd restart rewrites Docker's rules as
    // it starts, and Docker may still be at it for a moment): a real pass may repair, and the dry
    // run after it must then plan nothing. Docker settles within a few passes; a tug of war would not.
    for (let pass = 1; ; pass++) {
      if (external) {
        const repair = await reconcilePlan(socketPath, 30_000, false);
        t.same(repair.Failed, [], `after ${external}: ${who}'s reconcile pass ${pass} fails nothing (it changed: ${JSON.stringify(repair.Changes)})`);
      }
      plan = await reconcilePlan(socketPath);
      if (!external || plan.Changes.length === 0 || pass === EXTERNAL_PASSES) break;
      await new Promise((r) => setTimeout(r, 1000));
    }
  } catch (err) {
    t.fail(`idempotence: ${who} answers a dry-run reconcile: ${(err as Error).message}`);
    return;
  }
  const { Changes, Failed, Missing, Foreign, Ms } = plan;
  t.same({ Changes, Failed, Missing, Foreign }, { Changes: [], Failed: [], Missing: [], Foreign: [] },
    `idempotence: a reconcile of ${who} right after the scenario plans nothing (dry run, ${Ms} ms)`);
}
