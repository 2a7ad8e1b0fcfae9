/** `tsnet policy show|set|clear`: reads or changes a network's policy through the running daemon. */
import { type Command, SHARED_SETTINGS } from './command.js'
import { DaemonAbsent, callDaemon } from './daemon-client.js'
import { TsnetError } from '../errors.js'

export const POLICY_USAGE = `usage: tsnet policy show [NETWORK] [--json]
       tsnet policy set NETWORK 'SOURCES PORTS[; ...]'
       tsnet policy clear NETWORK
  NETWORK is a Docker network name or ID; e.g. tsnet policy set logic 'ui tcp/8080'
  (docs/network-edge.md has the syntax). It talks to the daemon on --socket.

${SHARED_SETTINGS}`

interface PolicyView {
  network: string
  name: string
  internal: boolean
  allow: string
  resolved: Record<string, string[]>
}

function print(p: PolicyView): void {
  const label = p.name ? `${p.name} (${p.network.slice(0, 12)})` : p.network.slice(0, 12)
  const allow = p.internal ? 'internal: nothing from other networks' : p.allow || 'nothing from other networks (no policy)'
  console.log(`${label}: ${allow}`)
  for (const [name, subnets] of Object.entries(p.resolved)) {
    console.log(`  ${name} -> ${subnets.length ? subnets.join(', ') : "(no such network in Docker's view yet)"}`)
  }
}

export const policyCommand: Command = {
  name: 'policy',
  synopsis: "tsnet policy show|set|clear [NETWORK] ['SOURCES PORTS; ...']",
  summary: 'which networks and addresses may reach a network',
  usage: POLICY_USAGE,
  options: { json: { type: 'boolean' } },
  positionals: true,
  async run({ config, values, positionals }) {
    const [verb, network, text, ...extra] = positionals
    let body: { Network?: string; Allow?: string }
    if (verb === 'show' && text === undefined) body = network === undefined ? {} : { Network: network }
    else if (verb === 'set' && network !== undefined && text !== undefined && extra.length === 0) body = { Network: network, Allow: text }
    else if (verb === 'clear' && network !== undefined && text === undefined) body = { Network: network, Allow: '' }
    else {
      console.error(POLICY_USAGE)
      return 2
    }
    let Policies: PolicyView[]
    try {
      ({ Policies } = await callDaemon<{ Policies: PolicyView[] }>(config.socket, '/Tsnet.Policy', body))
    } catch (err) {
      if (err instanceof DaemonAbsent) throw new TsnetError('host', `cannot reach the tsnet daemon: ${err.message}; policies are kept by the running daemon`)
      throw err
    }
    if (values.json) console.log(JSON.stringify(Policies, null, 2))
    else Policies.forEach(print)
    return 0
  },
}
