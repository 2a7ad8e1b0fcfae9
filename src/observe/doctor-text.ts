/** `tsnet doctor` for people: what was compared, each problem with its fix, and what `--fix` did. */
import type { Finding } from './findings.js'
import type { DaemonView } from './status-view.js'

/** One examination by `tsnet doctor`. */
export interface Examination {
  findings: Finding[]
  /** What was compared, one phrase each. */
  compared: string[]
  /** What was not, and why; `open`: the verdict cannot be "clean" without it. */
  notCompared: Array<{ what: string; open: boolean }>
  /** Notes on what a comparison could not judge (a reconcile outside the daemon). */
  notes: string[]
}

export interface FixReport {
  reconcile?: { changes: string[]; failed: Array<{ change: string; error: string }> } | { error: string }
  collect?: { collected: string[] } | { refused: string } | { error: string }
  /** Problems only the operator can fix. */
  left: number
  /** Why nothing could be fixed (no daemon). */
  notRunning?: string
}

export function daemonLine(d: DaemonView): string {
  return d.running ? `daemon running (pid ${d.status.pid}, version ${d.status.version}) on ${d.socket}` : `daemon ${d.reason}`
}

export function examinationText(x: Examination): string[] {
  const out: string[] = []
  if (x.compared.length) out.push(`compared: ${x.compared.join('; ')}`)
  for (const n of x.notCompared) out.push(`not compared: ${n.what}`)
  for (const note of x.notes) out.push(`note: ${note}`)
  if (x.findings.length === 0) {
    out.push(x.notCompared.some((n) => n.open) ? 'no problems found in what could be compared.' : 'no problems found.')
    return out
  }
  out.push(`${x.findings.length} problem(s):`)
  x.findings.forEach((f, i) => {
    out.push(`  ${i + 1}. [${f.area}] ${f.problem}`)
    out.push(`     fix: ${f.fix}`)
  })
  return out
}

const list = (items: string[]) => (items.length <= 6 ? items.join(', ') : `${items.slice(0, 6).join(', ')} and ${items.length - 6} more`)

export function fixText(f: FixReport): string[] {
  if (f.notRunning !== undefined) return [`not fixed: tsnet is not running (${f.notRunning}). Start it (scripts/start.sh, or systemctl start tsnet): it reconciles the host with the store at boot.`]
  const out: string[] = ['fixing:']
  const r = f.reconcile
  if (r && 'error' in r) out.push(`  reconcile: failed: ${r.error}`)
  else if (r) out.push(`  reconcile (the daemon's): ${r.changes.length ? `changed ${r.changes.length}: ${list(r.changes)}` : 'nothing left to change'}${r.failed.length ? `; ${r.failed.length} failed: ${list(r.failed.map((x) => `${x.change} (${x.error})`))}` : ''}`)
  const c = f.collect
  if (c && 'error' in c) out.push(`  garbage collection: failed: ${c.error}`)
  else if (c && 'refused' in c) out.push(`  garbage collection (the daemon's): did not run: ${c.refused}`)
  else if (c) out.push(`  garbage collection (the daemon's): ${c.collected.length ? `removed ${list(c.collected)}` : 'nothing old enough to remove (records younger than a minute are left)'}`)
  if (f.left) out.push(`  left for you: ${f.left} problem(s) tsnet does not fix itself (see their fix lines above)`)
  return out
}
