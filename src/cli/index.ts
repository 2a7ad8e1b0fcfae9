/**
 * The `tsnet` commands, one table: a new command is a module under cli/ and one line in COMMANDS.
 * Every command takes serve's settings (config.ts), so each finds the same store, socket and
 * Docker API as the daemon beside it, legacy or managed.
 */
import { loadCommandLine } from '../config.js'
import { TsnetError, errorMessage } from '../errors.js'
import type { Command } from './command.js'
import { doctorCommand } from './doctor.js'
import { policyCommand } from './policy.js'
import { serveCommand } from './serve.js'
import { statusCommand } from './status.js'
import { topologyCommand } from './topology.js'

export const COMMANDS: readonly Command[] = [serveCommand, statusCommand, doctorCommand, topologyCommand, policyCommand]

const commandOf = (name: string | undefined) => COMMANDS.find((c) => c.name === name)

/** Synopses wider than this put their summary on the next line. */
const SYNOPSIS_WIDTH = 32

export function usage(): string {
  const line = (synopsis: string, summary: string) =>
    synopsis.length >= SYNOPSIS_WIDTH ? `  ${synopsis}\n  ${' '.repeat(SYNOPSIS_WIDTH)}${summary}` : `  ${synopsis.padEnd(SYNOPSIS_WIDTH)}${summary}`
  return [
    'tsnet: Docker network and IPAM driver plugin',
    '',
    ...COMMANDS.map((c) => line(c.synopsis, c.summary)),
    line('tsnet help [COMMAND]', "this text, or a command's"),
    '',
    "Every command takes serve's settings (--state-dir, --socket, --docker-host, ... and their",
    'environment variables), so it finds the same store, socket and Docker API as the daemon.',
  ].join('\n')
}

/**
 * Parses a command line as `run` would, without running it: the documentation test checks every
 * `tsnet ...` example this way. Throws (a TypeError from parseArgs, or a TsnetError) when it is wrong.
 */
export function parseCommand(argv: string[], env: NodeJS.ProcessEnv = {}) {
  const [name, ...rest] = argv
  const command = commandOf(name)
  if (!command) throw new TsnetError('invalid', `unknown command "${name ?? ''}"`)
  const help = rest.includes('--help') || rest.includes('-h')
  return { command, help, line: help ? undefined : loadCommandLine(rest, env, command.options, command.positionals === true) }
}

/** Runs one command line; resolves to the exit code. */
export async function runCli(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const [name, ...rest] = argv
  if (name === undefined || name === 'help' || name === '--help' || name === '-h') {
    const about = commandOf(rest[0])
    console.log(about ? about.usage : usage())
    return name === undefined ? 2 : 0
  }
  if (!commandOf(name)) {
    console.error(`tsnet: unknown command "${name}"\n\n${usage()}`)
    return 2
  }
  let parsed
  try {
    parsed = parseCommand(argv, env)
  } catch (err) {
    if (err instanceof TsnetError) throw err
    // parseArgs: an unknown flag or a missing value.
    console.error(`tsnet ${name}: ${errorMessage(err)}\n\n${commandOf(name)?.usage ?? ''}`)
    // serve: a bad command line will not fix itself, and the systemd unit does not restart on 78.
    return name === 'serve' ? 78 : 2
  }
  if (parsed.help || !parsed.line) {
    console.log(parsed.command.usage)
    return 0
  }
  return parsed.command.run(parsed.line, env)
}

/** The exit code for an error no command turned into one. */
export function exitCodeOf(err: unknown): number {
  // Settings and an unusable store will not fix themselves: exit 78 (EX_CONFIG), which the
  // systemd unit does not restart, instead of looping.
  return err instanceof TsnetError ? (err.context.exitCode as number | undefined) ?? (err.kind === 'invalid' ? 78 : 1) : 1
}
