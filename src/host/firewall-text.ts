/** How tsnet's firewall text is checked before it goes into a batch, and read back from the tools. */
import { ALL_SETS, type SetEntry } from '../core/edge-plan.js'
import { checkTag } from '../core/names.js'
import { invalid } from '../errors.js'

/** `iptables -S` quotes a comment only when it holds special characters; compare without quotes. */
export const unquoted = (rule: string) => rule.replace(/"/g, '')
/** Set members, comments and rule bodies are written into batch input: plain characters only. */
const SAFE_ENTRY = /^[0-9A-Za-z.:/,_-]{1,120}$/
const SAFE_RULE = /^[0-9A-Za-z.:/_\-[\] "]{1,400}$/

export function checkEntry(e: SetEntry): void {
  if (!ALL_SETS.includes(e.set)) throw invalid(`ipset ${e.set} is not one of tsnet's`)
  if (!SAFE_ENTRY.test(e.entry)) throw invalid(`ipset entry "${e.entry}" holds characters tsnet never writes`)
  checkTag(e.comment, 'ipset comment')
}
export function checkRule(rule: string): void {
  if (!SAFE_RULE.test(rule)) throw invalid(`firewall rule "${rule}" holds characters tsnet never writes`)
}

/** ipset prints a full-length prefix as a bare address; entries are compared in the form tsnet writes. */
export function canonicalEntry(set: string, entry: string): string {
  // hash:ip members are bare addresses, written and printed alike.
  if (set.startsWith('tsnet-vtep')) return entry
  const family = set.endsWith('6') ? 6 : 4
  const full = family === 4 ? '/32' : '/128'
  const parts = entry.split(',')
  const netAt = set.startsWith('tsnet-allow') ? 2 : 0
  const net = parts[netAt]
  if (net !== undefined && !net.includes('/')) parts[netAt] = net + full
  return parts.join(',').replace('ipv6-icmp:', 'icmpv6:')
}

/** A rule as tsnet writes it: `iptables -S` drops the quotes around a plain comment. */
export const quotedComment = (rule: string) => rule.replace(/--comment (\S+)/, (_m, c: string) => `--comment "${c.replace(/"/g, '')}"`)

