/** `tsnet policy show|set|clear`: reads or changes a network's policy through the running daemon. */
import { request } from 'node:http'
import { parseArgs } from 'node:util'
import { DEFAULT_SOCKET } from './config.js'
import { TsnetError } from './errors.js'

export const POLICY_USAGE = `usage: tsnet policy show [NETWORK] [--json]
       tsnet policy set NETWORK 'SOURCES PORTS[; ...]'
       tsnet policy clear NETWORK
  NETWORK is a Docker network name or ID; e.g. tsnet policy set logic 'ui tcp/8080'
  --socket PATH   the daemon's socket (env TSNET_SOCKET, default ${DEFAULT_SOCKET})`

interface PolicyView {
  network: string
  name: string
  internal: boolean
  allow: string
  resolved: Record<string, string[]>
}

function call(socket: string, body: unknown): Promise<{ Policies: PolicyView[] }> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath: socket, path: '/Tsnet.Policy', method: 'POST', timeout: 30_000 }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString()
        let parsed: { Err?: string; Policies?: PolicyView[] }
        try {
          parsed = JSON.parse(text) as typeof parsed
        } catch {
          reject(new TsnetError('host', `the daemon answered something that is not JSON: ${text.slice(0, 200)}`))
          return
        }
        if (parsed.Err !== undefined || !parsed.Policies) reject(new TsnetError('invalid', parsed.Err ?? 'the daemon gave no answer'))
        else resolve({ Policies: parsed.Policies })
      })
    })
    req.on('timeout', () => req.destroy(new Error('the daemon did not answer within 30 s')))
    req.on('error', (err) => reject(new TsnetError('host', `cannot reach the tsnet daemon on ${socket}: ${err.message}`)))
    req.end(JSON.stringify(body))
  })
}

function print(p: PolicyView): void {
  const label = p.name ? `${p.name} (${p.network.slice(0, 12)})` : p.network.slice(0, 12)
  const allow = p.internal ? 'internal: nothing from other networks' : p.allow || 'nothing from other networks (no policy)'
  console.log(`${label}: ${allow}`)
  for (const [name, subnets] of Object.entries(p.resolved)) {
    console.log(`  ${name} -> ${subnets.length ? subnets.join(', ') : "(no such network in Docker's view yet)"}`)
  }
}

export async function policyCommand(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const { values, positionals } = parseArgs({ args: argv, strict: true, allowPositionals: true, options: { socket: { type: 'string' }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } } })
  if (values.help) {
    console.log(POLICY_USAGE)
    return 0
  }
  const socket = values.socket ?? env.TSNET_SOCKET ?? DEFAULT_SOCKET
  const [verb, network, text, ...extra] = positionals
  let body: { Network?: string; Allow?: string }
  if (verb === 'show' && text === undefined) body = network === undefined ? {} : { Network: network }
  else if (verb === 'set' && network !== undefined && text !== undefined && extra.length === 0) body = { Network: network, Allow: text }
  else if (verb === 'clear' && network !== undefined && text === undefined) body = { Network: network, Allow: '' }
  else {
    console.error(POLICY_USAGE)
    return 2
  }
  const { Policies } = await call(socket, body)
  if (values.json) console.log(JSON.stringify(Policies, null, 2))
  else Policies.forEach(print)
  return 0
}
