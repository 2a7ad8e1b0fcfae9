/**
 * Named points inside the store's write and migration paths where a crash test can kill tsnet
 * with SIGKILL: TSNET_TEST_CRASH_AT=<point> kills at the TSNET_TEST_CRASH_AFTER-th pass (default
 * 1). Unset, it costs one comparison.
 */
const target = process.env.TSNET_TEST_CRASH_AT
let remaining = Number(process.env.TSNET_TEST_CRASH_AFTER ?? '1')

/** In a transaction: each put (rename or, for a create, link), each delete, the directory sync. */
export const WRITE_CRASH_POINTS = ['put:mid-write', 'put:before-rename', 'put:after-rename', 'put:after-sync', 'delete:after-unlink'] as const
/** In the schema migration at open (store/migrate.ts), in the order they are passed. */
export const MIGRATE_CRASH_POINTS = ['migrate:mid-copy', 'migrate:before-swap', 'migrate:after-backup', 'migrate:after-swap'] as const
export const CRASH_POINTS = [...WRITE_CRASH_POINTS, ...MIGRATE_CRASH_POINTS] as const
export type CrashPoint = (typeof CRASH_POINTS)[number]

/** Whether a crash test waits at `name` (a path may then take extra steps to reach it). */
export const crashArmed = (name: CrashPoint): boolean => target === name

export function crashPoint(name: CrashPoint): void {
  if (target !== name) return
  if (--remaining > 0) return
  process.kill(process.pid, 'SIGKILL')
}
