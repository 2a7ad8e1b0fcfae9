/** One `tsnet` command: its flags (besides the settings every command shares) and what it runs. */
import type { CommandOptions, Config } from '../config.js'

export interface CommandLine {
  /** The shared settings (--state-dir, --socket, --docker-host, ... and their environment variables). */
  config: Config
  values: Record<string, string | boolean | undefined>
  positionals: string[]
}

export interface Command {
  name: string
  /** Its line in `tsnet help`: the synopsis, then what it does. */
  synopsis: string
  summary: string
  /** `tsnet COMMAND --help`. */
  usage: string
  options: CommandOptions
  positionals?: boolean
  /** Resolves to the exit code. */
  run(line: CommandLine, env: NodeJS.ProcessEnv): Promise<number>
}

/** Said under every command's usage: the settings are serve's. */
export const SHARED_SETTINGS = `Every command also takes serve's settings and their environment variables (tsnet serve --help):
  --state-dir DIR     the store (env TSNET_STATE_DIR, default /var/lib/tsnet)
  --socket PATH       the daemon's socket (env TSNET_SOCKET, default /run/docker/plugins/tsnet.sock)
  --docker-host URL   Docker's API, unix:///PATH (env DOCKER_HOST; default none)`
