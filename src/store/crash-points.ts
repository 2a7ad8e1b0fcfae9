/**
 * Named points inside the store's write path where a crash test can kill tsnet with SIGKILL:
 * TSNET_TEST_CRASH_AT=<point> kills at the TSNET_TEST_CRASH_AFTER-th pass (default 1). Unset,
 * it costs one comparison.
 */
const target = process.env.TSNET_TEST_CRASH_AT
let remaining = Number(process.env.TSNET_TEST_CRASH_AFTER ?? '1')

export const CRASH_POINTS = ['put:mid-write', 'put:before-rename', 'put:after-rename', 'put:after-sync', 'delete:after-unlink'] as const
export type CrashPoint = (typeof CRASH_POINTS)[number]

export function crashPoint(name: CrashPoint): void {
  if (target !== name) return
  if (--remaining > 0) return
  process.kill(process.pid, 'SIGKILL')
}
