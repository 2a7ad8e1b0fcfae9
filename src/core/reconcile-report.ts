/** What one reconcile pass found and did: the engine makes it, the daemon keeps the last, `tsnet status` and `tsnet doctor` read it. */
export interface ReconcileReport {
  /** Changes made (or, in a dry run, that would be made). */
  changes: string[]
  /** Changes that failed, with why. */
  failed: Array<{ change: string; error: string }>
  /** Wanted objects that are gone and are not made again (a joined veth whose container went). */
  missing: string[]
  /** Wanted objects whose key is held by something tsnet does not own. */
  foreign: string[]
  ms: number
}
