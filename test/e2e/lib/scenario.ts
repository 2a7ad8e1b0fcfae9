import type { Test } from 'tap';

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
