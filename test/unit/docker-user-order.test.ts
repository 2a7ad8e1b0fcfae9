// Docker puts its DOCKER-USER jump back at the head of FORWARD whenever any network is created
// (libnetwork's arrangeUserFilterRule). When DOCKER-USER itself starts with tsnet's jump, every
// forwarded packet still meets TSNET-FORWARD first: tsnet's chains count as intact, so neither
// the reconcile nor tsnet doctor sees drift after each `docker network create`. Any other order
// (a rule of someone else's first, tsnet's jump missing from DOCKER-USER) still is drift.
import t from 'tap'
import { ALL_SETS, CHAIN, DOCKER_USER, FAMILIES, filterRules, jumps, postroutingRules, rawRules } from '../../src/core/edge-plan.js'
import type { Family } from '../../src/core/addr.js'
import { EdgeFirewall } from '../../src/host/edge-firewall.js'
import type { Runner } from '../../src/host/exec.js'

const TSNET = `-j ${CHAIN.forward}`

/** `iptables -S` of each table as tsnet leaves it, with FORWARD and DOCKER-USER as given. */
function tables(f: Family, forward: string[], dockerUser: string[]): Record<string, string> {
  const j = (table: string) => jumps(f).filter((x) => x.table === table && x.chain !== 'FORWARD' && x.chain !== DOCKER_USER).map((x) => `-A ${x.chain} ${x.rule}`)
  const r = filterRules(f)
  return {
    filter: ['-P FORWARD DROP', `-N ${CHAIN.forward}`, `-N ${CHAIN.from}`, `-N ${CHAIN.to}`, `-N ${DOCKER_USER}`,
      ...forward.map((x) => `-A FORWARD ${x}`), ...dockerUser.map((x) => `-A ${DOCKER_USER} ${x}`),
      ...r.forward.map((x) => `-A ${CHAIN.forward} ${x}`), ...r.from.map((x) => `-A ${CHAIN.from} ${x}`), ...r.to.map((x) => `-A ${CHAIN.to} ${x}`)].join('\n'),
    nat: [`-N ${CHAIN.dnat}`, `-N ${CHAIN.postrouting}`, ...j('nat'), ...postroutingRules(f).map((x) => `-A ${CHAIN.postrouting} ${x}`)].join('\n'),
    raw: [`-N ${CHAIN.raw}`, ...j('raw'), ...rawRules(f).map((x) => `-A ${CHAIN.raw} ${x}`)].join('\n'),
  }
}

function runner(forward: string[], dockerUser: string[]): Runner {
  const byFamily = new Map(FAMILIES.map((f) => [f === 4 ? 'iptables' : 'ip6tables', tables(f, forward, dockerUser)]))
  return {
    async run(cmd, args) {
      if (cmd === 'ipset') return { code: 0, stdout: ALL_SETS.join('\n'), stderr: '' }
      const table = args[args.indexOf('-t') + 1] as string
      return { code: 0, stdout: byFamily.get(cmd)?.[table] ?? '', stderr: '' }
    },
  }
}

const state = (forward: string[], dockerUser: string[]) => new EdgeFirewall(runner(forward, dockerUser)).chainsState(true)

t.test('the order tsnet makes, and the one Docker makes of it, are intact', async (t) => {
  t.equal(await state([TSNET, `-j ${DOCKER_USER}`, '-j DOCKER-ISOLATION-STAGE-1'], [TSNET, '-j RETURN']), 'intact', "tsnet's jump first")
  t.equal(await state([`-j ${DOCKER_USER}`, TSNET, '-j DOCKER-ISOLATION-STAGE-1'], [TSNET, '-j RETURN']), 'intact', 'DOCKER-USER first, itself starting with tsnet')
})

t.test('orders in which something else comes first are drift', async (t) => {
  t.equal(await state(['-j ACCEPT', TSNET, `-j ${DOCKER_USER}`], [TSNET, '-j RETURN']), 'partial', 'an ACCEPT before tsnet')
  t.equal(await state([`-j ${DOCKER_USER}`, TSNET], ['-j ACCEPT', TSNET, '-j RETURN']), 'partial', 'DOCKER-USER first, but an ACCEPT first in it')
  t.equal(await state([`-j ${DOCKER_USER}`, TSNET], ['-j RETURN']), 'partial', "tsnet's jump missing from DOCKER-USER")
  t.equal(await state([`-j ${DOCKER_USER}`], [TSNET, '-j RETURN']), 'partial', "tsnet's own jump missing from FORWARD")
  t.equal(await state([`-j ${DOCKER_USER}`, TSNET, TSNET], [TSNET, '-j RETURN']), 'partial', "tsnet's jump twice in FORWARD")
})
