#!/usr/bin/env node
/**
 * The `tsnet` executable. The commands live in cli/; this file stays at dist/cli.js because the
 * packaging starts it there (package.json bin, config.json, packaging/tsnet.service, Dockerfile,
 * plugin/ and scripts/).
 */
import { errorMessage } from './errors.js'
import { exitCodeOf, runCli } from './cli/index.js'

runCli(process.argv.slice(2), process.env).then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(`tsnet: ${errorMessage(err)}`)
    process.exit(exitCodeOf(err))
  },
)
