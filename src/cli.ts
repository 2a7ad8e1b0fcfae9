#!/usr/bin/env node
/** `tsnet serve|status|help`: the command operators run. */
import { loadConfig, SERVE_USAGE } from './config.js'
import { TsnetError, errorMessage } from './errors.js'
import { serve } from './main.js'
import { policyCommand } from './policy-command.js'
import { statusCommand } from './status.js'

const USAGE = `tsnet: Docker network and IPAM driver plugin

  tsnet serve [options]    serve the plugin API on a unix socket (see tsnet serve --help)
  tsnet status [--state-dir DIR] [--json]
                           show the networks, endpoints, published ports and address pools tsnet keeps
  tsnet policy show|set|clear [NETWORK] ['SOURCES PORTS; ...'] [--socket PATH]
                           which other networks and addresses may reach a network (docs/network-edge.md)
  tsnet help               this text`

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv
  switch (command) {
    case 'serve':
      if (rest.includes('--help') || rest.includes('-h')) {
        console.log(SERVE_USAGE)
        return 0
      }
      await serve(loadConfig(rest, process.env))
      return 0
    case 'status':
      return statusCommand(rest, process.env)
    case 'policy':
      return policyCommand(rest, process.env)
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      console.log(USAGE)
      return command === undefined ? 2 : 0
    default:
      console.error(`tsnet: unknown command "${command}"\n\n${USAGE}`)
      return 2
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    console.error(`tsnet: ${errorMessage(err)}`)
    // Settings and an unusable store will not fix themselves: exit 78 (EX_CONFIG), which the
    // systemd unit does not restart, instead of looping.
    const code = err instanceof TsnetError ? (err.context.exitCode as number | undefined) ?? (err.kind === 'invalid' ? 78 : 1) : 1
    process.exit(code)
  },
)
