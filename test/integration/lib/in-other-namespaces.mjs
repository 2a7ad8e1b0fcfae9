// Runs a command that reaches directory `source` at `target` through a bind mount, the way the
// managed plugin reaches the host's state directory. Meant to run under
// `unshare --mount --pid --fork --kill-child`: the mount exists only in that private mount
// namespace, and this process is PID 1 of a new PID namespace (the command's pids are its own).
// Usage: node in-other-namespaces.mjs SOURCE TARGET COMMAND [ARG...]; exits with the command's status.
import { execFileSync, spawn } from 'node:child_process'

const [source, target, command, ...args] = process.argv.slice(2)
execFileSync('mount', ['--bind', source, target])
const child = spawn(command, args, { stdio: 'inherit' })
for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => child.kill(signal))
child.on('exit', (code, signal) => process.exit(code ?? (signal ? 128 : 1)))
