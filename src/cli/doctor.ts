/**
 * `tsnet doctor [--fix]`: compares the store, the kernel and Docker, and prints each problem as a
 * sentence with the command that fixes it. Exit 0 clean, 1 problems found (after --fix: left),
 * 2 could not check. `--fix` repairs what tsnet owns through the daemon's own reconcile and
 * garbage collection, never anything else, says what it did, and examines again.
 */
import { staleKey, type Stale } from '../core/gc-plan.js'
import { errorMessage } from '../errors.js'
import { type Examination, type FixReport, daemonLine, examinationText, fixText } from '../observe/doctor-text.js'
import type { DaemonView } from '../observe/status-view.js'
import type { Config } from '../config.js'
import { type Command, SHARED_SETTINGS } from './command.js'
import { callDaemon } from './daemon-client.js'
import { examine, exitCodeFor } from './doctor-checks.js'
import { askDaemon } from './state-read.js'

async function fix(config: Config, daemon: DaemonView, x: Examination): Promise<FixReport> {
  const left = x.findings.filter((f) => f.remedy === 'manual').length
  if (!daemon.running) return { left, notRunning: daemon.reason }
  const report: FixReport = { left }
  if (x.findings.some((f) => f.remedy === 'reconcile')) {
    try {
      const r = await callDaemon<{ Changes: string[]; Failed: Array<{ change: string; error: string }> }>(config.socket, '/Tsnet.Reconcile', { DryRun: false })
      report.reconcile = { changes: r.Changes, failed: r.Failed }
    } catch (err) {
      report.reconcile = { error: errorMessage(err) }
    }
  }
  if (x.findings.some((f) => f.remedy === 'collect')) {
    try {
      const r = await callDaemon<{ Ran: boolean; Reason?: string; Collected?: Stale[] }>(config.socket, '/Tsnet.Collect', { DryRun: false })
      report.collect = r.Ran ? { collected: (r.Collected ?? []).map(staleKey) } : { refused: r.Reason ?? 'no reason given' }
    } catch (err) {
      report.collect = { error: errorMessage(err) }
    }
  }
  return report
}

export const doctorCommand: Command = {
  name: 'doctor',
  synopsis: 'tsnet doctor [--fix] [--json]',
  summary: 'compare the store, the kernel and Docker; --fix repairs',
  usage: `usage: tsnet doctor [--fix] [--json]
  Compares the store with the kernel (the daemon's reconcile in dry run; without a daemon, the
  same dry run here, read-only), with Docker (given --docker-host) and with the host (routes,
  br_netfilter, forwarding, FORWARD's policy, uplink MTU). Exit 0 clean, 1 problems found,
  2 could not check.
  --fix    repair what tsnet owns through the running daemon's reconcile and garbage collection
           (never anything else), say what was done, and compare again; exit by what is left
  --json   the findings as one JSON document

${SHARED_SETTINGS}`,
  options: { fix: { type: 'boolean' }, json: { type: 'boolean' } },
  async run({ config, values }) {
    const daemon = await askDaemon(config.socket)
    const before = await examine(config, daemon)
    const lines = [`tsnet doctor: ${daemonLine(daemon)}; state ${config.stateDir}`, ...examinationText(before)]
    let code = exitCodeFor(before)
    let fixed: FixReport | undefined
    let after: Examination | undefined
    if (values.fix && before.findings.length > 0) {
      fixed = await fix(config, daemon, before)
      lines.push(...fixText(fixed))
      if (!fixed.notRunning) {
        after = await examine(config, daemon)
        lines.push('after the fix:', ...examinationText(after).map((l) => `  ${l}`))
        code = exitCodeFor(after)
      }
    }
    if (values.json) console.log(JSON.stringify({ daemon, ...before, ...(fixed ? { fix: fixed } : {}), ...(after ? { after } : {}), exit: code }, null, 2))
    else console.log(lines.join('\n'))
    return code
  },
}
