/** A namespace's firewall as the goldens hold it: counters zeroed, ipset members sorted under their set. */
import type { Netns } from './netns.js'

export async function firewallDump(ns: Netns): Promise<string> {
  const clean = (text: string) => text.split('\n').filter((l) => l !== '' && !l.startsWith('#')).map((l) => l.replace(/^\[\d+:\d+\] /, '').replace(/ \[\d+:\d+\]$/, ' [0:0]'))
  const sets = (await ns.ok('ipset', ['save'])).split('\n').filter((l) => l !== '').map((l) => l.replace(/ initval 0x[0-9a-f]+/, ''))
  // Members come out in hash order: sort them under their set.
  const bySet = new Map<string, string[]>()
  for (const l of sets) {
    const name = l.split(' ')[1] ?? ''
    bySet.set(name, [...(bySet.get(name) ?? []), l])
  }
  const ipset = [...bySet.values()].flatMap((ls) => [ls[0] ?? '', ...ls.slice(1).sort()])
  return [
    '== iptables-save', ...clean(await ns.ok('iptables-save', [])),
    '== ip6tables-save', ...clean(await ns.ok('ip6tables-save', [])),
    '== ipset save', ...ipset, '',
  ].join('\n')
}
