import { sleep } from './proc.js';

export interface WaitOptions {
  timeoutMs?: number;
  intervalMs?: number;
  /** used in the timeout error: "timed out after 10000 ms waiting for <what>" */
  what?: string;
}

/**
 * Poll fn until it returns a truthy value (which is returned). A throw counts as "not yet"; the
 * last error or value is reported when the time is up.
 */
export async function waitFor<T>(
  fn: () => T | Promise<T>,
  { timeoutMs = 10_000, intervalMs = 200, what = 'condition' }: WaitOptions = {},
): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v as NonNullable<T>;
      last = v;
    } catch (e) {
      last = e;
    }
    if (Date.now() >= deadline) break;
    await sleep(Math.min(intervalMs, Math.max(0, deadline - Date.now())));
  }
  const detail = last instanceof Error ? last.message : JSON.stringify(last);
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; last result: ${detail}`);
}
