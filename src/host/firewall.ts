/**
 * tsnet's filter rules. All of them live in the TSNET-FORWARD chain, jumped to from FORWARD, each
 * rule tagged with the network it belongs to. Every change is one `iptables-restore --noflush`
 * batch per family, so it applies whole or not at all. The chain and its jump exist only while
 * some network needs them, so a host without tsnet networks carries no tsnet rules.
 */
import type { Logger } from 'pino'
import { withContext } from '../errors.js'
import { type Runner, runOk } from './exec.js'
import { KeyedLock } from '../util/keyed-lock.js'
import { checkIfName, checkTag } from '../core/names.js'

export const FORWARD_CHAIN = 'TSNET-FORWARD'
const FAMILIES = [
  { save: 'iptables', restore: 'iptables-restore' },
  { save: 'ip6tables', restore: 'ip6tables-restore' },
] as const
const WAIT = ['-w', '10']

const intraBridgeRule = (bridge: string, tag: string) => `-i ${bridge} -o ${bridge} -m comment --comment "${tag}" -j ACCEPT`
/** `iptables -S` quotes a comment only when it holds special characters; compare without quotes. */
const unquoted = (rule: string) => rule.replace(/"/g, '')

function checkRuleInputs(bridge: string, tag: string): void {
  checkIfName(bridge, 'bridge name')
  checkTag(tag, 'rule comment')
}

export class Firewall {
  private readonly lock = new KeyedLock()
  constructor(private readonly runner: Runner) {}

  /** Current rules of our chain as `iptables -S` prints them, or undefined when the chain is absent. */
  private async chainRules(tool: string): Promise<string[] | undefined> {
    const r = await this.runner.run(tool, [...WAIT, '-S', FORWARD_CHAIN])
    if (r.code !== 0) return undefined
    return r.stdout.split('\n').filter((l) => l.startsWith(`-A ${FORWARD_CHAIN} `)).map(unquoted)
  }

  private async hasJump(tool: string): Promise<boolean> {
    return (await this.runner.run(tool, [...WAIT, '-C', 'FORWARD', '-j', FORWARD_CHAIN])).code === 0
  }

  private async restore(tool: string, lines: string[]): Promise<void> {
    if (lines.length === 0) return
    await runOk(this.runner, tool, [...WAIT, '--noflush'], { input: ['*filter', ...lines, 'COMMIT', ''].join('\n') })
  }

  async allowIntraBridge(bridge: string, tag: string, log: Logger): Promise<void> {
    checkRuleInputs(bridge, tag)
    return this.lock.run('fw', async () => {
      const rule = intraBridgeRule(bridge, tag)
      for (const f of FAMILIES) {
        try {
          const rules = await this.chainRules(f.save)
          const lines: string[] = []
          if (!rules) lines.push(`-N ${FORWARD_CHAIN}`)
          if (!(await this.hasJump(f.save))) lines.push(`-I FORWARD 1 -j ${FORWARD_CHAIN}`)
          if (!rules?.includes(unquoted(`-A ${FORWARD_CHAIN} ${rule}`))) lines.push(`-A ${FORWARD_CHAIN} ${rule}`)
          await this.restore(f.restore, lines)
          if (lines.length) log.info({ host: 'firewall.added', tool: f.save, rules: lines }, 'firewall rules added')
        } catch (err) {
          throw withContext(err, `allowing traffic inside bridge ${bridge} (${f.save})`)
        }
      }
    })
  }

  /** Drops rules of TSNET-FORWARD that no kept network explains; removes the chain when empty. */
  async pruneIntraBridge(keep: Array<{ bridge: string; tag: string }>, log: Logger): Promise<void> {
    keep.forEach((k) => checkRuleInputs(k.bridge, k.tag))
    const wanted = new Set(keep.map((k) => unquoted(`-A ${FORWARD_CHAIN} ${intraBridgeRule(k.bridge, k.tag)}`)))
    return this.removeRules((r) => !wanted.has(r), log, "pruning tsnet's firewall rules", 'firewall.pruned')
  }

  async revokeIntraBridge(bridge: string, tag: string, log: Logger): Promise<void> {
    checkRuleInputs(bridge, tag)
    const rule = unquoted(`-A ${FORWARD_CHAIN} ${intraBridgeRule(bridge, tag)}`)
    return this.removeRules((r) => r === rule, log, `removing the rules of bridge ${bridge}`, 'firewall.removed')
  }

  /**
   * Deletes the chain's rules that `doomed` picks, in one batch per family; when none is left,
   * the jump and the chain go too, so a host without tsnet networks carries no tsnet rules.
   */
  private removeRules(doomed: (listed: string) => boolean, log: Logger, doing: string, event: string): Promise<void> {
    return this.lock.run('fw', async () => {
      for (const f of FAMILIES) {
        try {
          const rules = await this.chainRules(f.save)
          if (!rules) continue
          // Listed rules have their quotes stripped; comments are quoted again for the delete.
          const lines = rules.filter(doomed).map((r) => r.replace(/^-A /, '-D ').replace(/--comment (\S+)/, '--comment "$1"'))
          if (lines.length === rules.length) {
            if (await this.hasJump(f.save)) lines.push(`-D FORWARD -j ${FORWARD_CHAIN}`)
            lines.push(`-X ${FORWARD_CHAIN}`)
          }
          await this.restore(f.restore, lines)
          if (lines.length) log.info({ host: event, tool: f.save, rules: lines }, 'firewall rules removed')
        } catch (err) {
          throw withContext(err, `${doing} (${f.save})`)
        }
      }
    })
  }
}
