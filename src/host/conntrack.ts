/**
 * Makes the kernel forget the conntrack entries of published host ports, with the conntrack tool
 * (conntrack-tools): one `conntrack --load-file FILE` batch per call, one delete line per flow.
 * The batch goes through a private temporary file: conntrack opens "-" as /dev/stdin, which
 * fails on the socket Node gives a child for its stdin. Spawning is acceptable here (it runs when
 * UDP or SCTP ports are published or revoked); a later issue moves the kernel calls to in-process
 * netlink.
 *
 * Without the tool tsnet keeps working: a warning says once that stale UDP flows are not cleared
 * (the same as before this existed). A kernel without a conntrack table has nothing to clear.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Logger } from 'pino'
import { formatIp, parseIp } from '../core/addr.js'
import type { PortFlow } from '../core/flows.js'
import { invalid } from '../errors.js'
import { HostCommandError, type ExecResult, type Runner } from './exec.js'

const TOOL = 'conntrack'
/** Exit code of a shell or nsenter that could not find the program. */
const NOT_FOUND = 127
/** No entry matched (older versions fail on it), or one went away on its own while the batch ran. */
const NOTHING_LEFT = /0 flow entries have been deleted|such conntrack doesn't exist/i
/** The kernel has no conntrack table (no nf_conntrack / nf_conntrack_netlink): there is no flow to forget. */
const NO_TABLE = /can't open handler|protocol not supported/i

/** The delete line of one flow; every token is rebuilt from validated values (the batch is parsed by words). */
export function deleteLine(flow: PortFlow): string {
  if (flow.family !== 4 && flow.family !== 6) throw invalid(`conntrack flow family ${String(flow.family)} is neither 4 nor 6`)
  if (flow.proto !== 'udp' && flow.proto !== 'sctp') throw invalid(`conntrack flows of ${String(flow.proto)} are not cleared by tsnet`)
  if (!Number.isInteger(flow.hostPort) || flow.hostPort < 1 || flow.hostPort > 65535) throw invalid(`conntrack flow port ${String(flow.hostPort)} is out of range`)
  const words = ['-D', '-f', flow.family === 4 ? 'ipv4' : 'ipv6', '-p', flow.proto, '--orig-port-dst', String(flow.hostPort)]
  if (flow.hostIp !== '') {
    const ip = parseIp(flow.hostIp)
    if (!ip || ip.family !== flow.family) throw invalid(`conntrack flow address ${JSON.stringify(flow.hostIp)} is not an IPv${flow.family} address`)
    words.push('--orig-dst', formatIp(ip))
  }
  return words.join(' ')
}

const describe = (f: PortFlow) => `${f.proto}/${f.hostPort}${f.hostIp ? ` on ${f.hostIp}` : ''} (IPv${f.family})`

function toolMissing(err: unknown, result?: ExecResult): boolean {
  if (result) return result.code === NOT_FOUND
  const cause = (err as { cause?: { code?: unknown } } | undefined)?.cause
  return cause?.code === 'ENOENT'
}

export class ConntrackFlows {
  private warnedMissing = false

  constructor(private readonly runner: Runner) {}

  /** Deletes the entries of `flows` in one batch. Throws only when the tool ran and failed. */
  async forget(flows: readonly PortFlow[], log: Logger): Promise<void> {
    if (flows.length === 0) return
    const batch = `${flows.map(deleteLine).join('\n')}\n`
    const dir = await mkdtemp(join(tmpdir(), 'tsnet-conntrack-'))
    const file = join(dir, 'batch')
    const argv = ['--load-file', file]
    let r: ExecResult
    try {
      await writeFile(file, batch, { mode: 0o600 })
      r = await this.runner.run(TOOL, argv)
    } catch (err) {
      if (toolMissing(err)) return this.missing(flows, log)
      throw err
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
    if (r.code !== 0 && toolMissing(undefined, r)) return this.missing(flows, log)
    if (r.code !== 0 && NO_TABLE.test(r.stderr)) {
      log.debug({ host: 'conntrack.delete', stderr: r.stderr.trim() }, 'no conntrack table on this kernel: no flow to forget')
      return
    }
    if (r.code !== 0 && !NOTHING_LEFT.test(r.stderr)) throw new HostCommandError([TOOL, ...argv], r)
    // With a batch, conntrack prints each deleted entry on stdout.
    const deleted = r.stdout.split('\n').filter((l) => l.trim() !== '').length
    log.info({ host: 'conntrack.delete', flows: flows.map(describe), deleted }, 'conntrack entries of published ports forgotten')
  }

  private missing(flows: readonly PortFlow[], log: Logger): void {
    if (this.warnedMissing) return
    this.warnedMissing = true
    log.warn({ host: 'conntrack.delete', flows: flows.map(describe) },
      'the conntrack tool is not installed (Debian package conntrack): UDP and SCTP clients that keep sending to a revoked published port keep reaching the old container until they pause long enough for the kernel to forget the flow; tsnet carries on and says this once')
  }
}
