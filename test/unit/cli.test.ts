// The command table: every command takes serve's settings (flags and environment), unknown flags
// are refused with the command's usage, and the executable at dist/cli.js (where the packaging
// starts it) runs each command with the documented exit codes.
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { existsSync, readdirSync } from 'node:fs'
import { join } from 'node:path'
import { COMMANDS, parseCommand, usage } from '../../src/cli/index.js'
import { TsnetError } from '../../src/errors.js'
import { tempDir } from './fixtures/util.js'

const CLI = join(import.meta.dirname, '../../dist/cli.js')

t.test('every command takes the settings serve takes, as flags and from the environment', async (t) => {
  for (const c of COMMANDS) {
    const extra = c.name === 'policy' ? ['show'] : []
    const { line } = parseCommand([c.name, ...extra, '--state-dir', '/srv/tsnet', '--socket', '/run/x/tsnet.sock', '--docker-host', 'unix:///run/docker.sock'])
    t.match(line?.config, { stateDir: '/srv/tsnet', socket: '/run/x/tsnet.sock', dockerHost: 'unix:///run/docker.sock' }, `${c.name}: the flags`)
    const fromEnv = parseCommand([c.name, ...extra], { TSNET_STATE_DIR: '/e/state', TSNET_SOCKET: '/e/tsnet.sock', DOCKER_HOST: 'unix:///e/docker.sock' })
    t.match(fromEnv.line?.config, { stateDir: '/e/state', socket: '/e/tsnet.sock', dockerHost: 'unix:///e/docker.sock' }, `${c.name}: the environment`)
    t.throws(() => parseCommand([c.name, '--no-such-flag']), { code: 'ERR_PARSE_ARGS_UNKNOWN_OPTION' }, `${c.name}: an unknown flag is refused`)
    t.throws(() => parseCommand([c.name, '--docker-host', 'tcp://1.2.3.4:2375']), TsnetError, `${c.name}: a setting is checked as serve checks it`)
    t.ok(parseCommand([c.name, '--help']).help, `${c.name}: --help`)
  }
  t.match(parseCommand(['doctor', '--fix', '--json']).line?.values, { fix: true, json: true })
  t.throws(() => parseCommand(['status', 'extra']), { code: 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL' }, 'status takes no positionals')
  t.throws(() => parseCommand(['frobnicate']), /unknown command "frobnicate"/)
})

t.test('tsnet help lists every command', async (t) => {
  const text = usage()
  for (const c of COMMANDS) t.match(text, c.synopsis, c.name)
  t.match(text, 'tsnet help [COMMAND]')
})

t.test('dist/cli.js: exit codes', { skip: existsSync(CLI) ? false : 'build first (npm run build)' }, async (t) => {
  const dir = await tempDir(t)
  const state = join(dir, 'state')
  const run = (...args: string[]) => spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', env: { PATH: process.env.PATH ?? '' }, timeout: 60_000 })
  let r = run('help')
  t.equal(r.status, 0, 'help: 0')
  r = run()
  t.equal(r.status, 2, 'no command: 2 (with the usage)')
  t.match(r.stdout, 'tsnet status [--json]')
  r = run('status', '--state-dir', state, '--socket', join(dir, 'none.sock'))
  t.equal(r.status, 0, `status with no store and no daemon: 0\n${r.stderr}`)
  t.match(r.stdout, `daemon: not running (no socket file at ${join(dir, 'none.sock')})`)
  t.match(r.stdout, 'networks: 0')
  t.notOk(existsSync(state), 'and it created nothing')
  r = run('status', '--bogus')
  t.equal(r.status, 2, 'a bad flag: 2')
  t.match(r.stderr, /tsnet status: Unknown option '--bogus'[\s\S]*usage: tsnet status/)
  r = run('serve', '--bogus')
  t.equal(r.status, 78, 'serve with a bad flag: 78, which the systemd unit does not restart on')
  r = run('serve', '--default-mtu', '12')
  t.equal(r.status, 78, 'serve with a bad setting: 78')
  t.match(r.stderr, 'setting --default-mtu (env TSNET_DEFAULT_MTU)')
  r = run('policy', 'show', '--socket', join(dir, 'none.sock'))
  t.equal(r.status, 1, 'policy without a daemon: 1')
  t.match(r.stderr, 'cannot reach the tsnet daemon')
  t.same(readdirSync(dir), [], 'nothing was left in the directory')
})
