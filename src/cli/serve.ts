/** `tsnet serve`: the daemon Docker talks to (main.ts composes it). */
import { SERVE_USAGE } from '../config.js'
import { serve } from '../main.js'
import type { Command } from './command.js'

export const serveCommand: Command = {
  name: 'serve',
  synopsis: 'tsnet serve [options]',
  summary: 'serve the plugin API on a unix socket (tsnet serve --help)',
  usage: SERVE_USAGE,
  options: {},
  async run({ config }) {
    await serve(config)
    return 0
  },
}
