// config: flags and environment → one validated Config.
import t from 'tap'
import { resolve } from 'node:path'
import { DEFAULT_SOCKET, DEFAULT_STATE_DIR, loadConfig } from '../../src/config.js'
import { formatPrefix } from '../../src/core/addr.js'
import { DOCKER_DEFAULT_POOLS_TEXT, parseDefaultPools } from '../../src/core/ipam.js'

const pools = (c: { defaultPools: Array<{ base: Parameters<typeof formatPrefix>[0]; size: number }> }) =>
  c.defaultPools.map((p) => `${formatPrefix(p.base)}:${p.size}`)

t.test('defaults', async (t) => {
  const c = loadConfig([], {})
  t.equal(c.socket, '/run/docker/plugins/tsnet.sock')
  t.equal(c.socket, DEFAULT_SOCKET)
  t.equal(c.stateDir, '/var/lib/tsnet')
  t.equal(c.stateDir, DEFAULT_STATE_DIR)
  t.equal(c.logLevel, 'info')
  t.same(pools(c), pools({ defaultPools: parseDefaultPools(DOCKER_DEFAULT_POOLS_TEXT) }))
  t.equal(pools(c)[0], '172.17.0.0/16:16')
  t.equal(c.defaultMtu, undefined)
  t.notOk('defaultMtu' in c, 'no MTU key unless one was set')
  t.ok(Object.isFrozen(c), 'the config is frozen')
  t.same(loadConfig([], { TSNET_LOG_LEVEL: '', TSNET_DEFAULT_MTU: '' }).logLevel, 'info', 'empty variables count as unset')
  t.notOk('defaultMtu' in loadConfig([], { TSNET_DEFAULT_MTU: '' }))
})

t.test('environment variables', async (t) => {
  const c = loadConfig([], {
    TSNET_SOCKET: '/tmp/x/tsnet.sock', TSNET_STATE_DIR: '/srv/tsnet', TSNET_LOG_LEVEL: 'debug',
    TSNET_DEFAULT_POOLS: '10.0.0.0/8:24', TSNET_DEFAULT_MTU: '1400',
  })
  t.equal(c.socket, '/tmp/x/tsnet.sock')
  t.equal(c.stateDir, '/srv/tsnet')
  t.equal(c.logLevel, 'debug')
  t.same(pools(c), ['10.0.0.0/8:24'])
  t.equal(c.defaultMtu, 1400)
  t.equal(loadConfig([], { TSNET_STATE_DIR: 'rel/state' }).stateDir, resolve('rel/state'), 'relative paths are resolved')
})

t.test('flags override the environment', async (t) => {
  const env = {
    TSNET_SOCKET: '/tmp/env.sock', TSNET_STATE_DIR: '/env/state', TSNET_LOG_LEVEL: 'debug',
    TSNET_DEFAULT_POOLS: '10.0.0.0/8:24', TSNET_DEFAULT_MTU: '1400',
  }
  const c = loadConfig([
    '--socket', '/tmp/flag.sock', '--state-dir=/flag/state', '--log-level', 'warn', '--default-pools', '192.168.0.0/16:24', '--default-mtu=9000',
  ], env)
  t.equal(c.socket, '/tmp/flag.sock')
  t.equal(c.stateDir, '/flag/state')
  t.equal(c.logLevel, 'warn')
  t.same(pools(c), ['192.168.0.0/16:24'])
  t.equal(c.defaultMtu, 9000)
  t.equal(loadConfig(['--log-level', 'error'], { TSNET_LOG_LEVEL: 'nonsense' }).logLevel, 'error', 'a bad env value is not read when the flag is given')
})

t.test('each bad setting names its flag and its environment variable', async (t) => {
  const bad = (argv: string[], env: Record<string, string>, message: RegExp, why: string) =>
    t.throws(() => loadConfig(argv, env), { name: 'TsnetError', kind: 'invalid', message }, why)
  bad(['--log-level', 'loud'], {}, /^setting --log-level \(env TSNET_LOG_LEVEL\): "loud" is not one of fatal, error, warn, info, debug, trace, silent$/, 'log level flag')
  bad([], { TSNET_LOG_LEVEL: 'INFO' }, /--log-level \(env TSNET_LOG_LEVEL\): "INFO"/, 'log level env, case matters')
  bad(['--default-pools', '10.0.0.0/8'], {}, /^setting --default-pools \(env TSNET_DEFAULT_POOLS\): default pool "10\.0\.0\.0\/8" is not of the form/, 'pools flag')
  bad([], { TSNET_DEFAULT_POOLS: '10.0.0.0/8:31' }, /--default-pools \(env TSNET_DEFAULT_POOLS\): .*size \/31/, 'pools env')
  bad([], { TSNET_DEFAULT_POOLS: ',' }, /--default-pools \(env TSNET_DEFAULT_POOLS\): the default pool list is empty/, 'empty pool list')
  bad(['--default-mtu', '67'], {}, /^setting --default-mtu \(env TSNET_DEFAULT_MTU\): .*"67" is out of range.*68 to 65535/, 'MTU below 68')
  bad([], { TSNET_DEFAULT_MTU: '65536' }, /--default-mtu \(env TSNET_DEFAULT_MTU\): .*"65536"/, 'MTU above 65535')
  bad([], { TSNET_DEFAULT_MTU: 'abc' }, /--default-mtu \(env TSNET_DEFAULT_MTU\)/, 'MTU not a number')
  bad([], { TSNET_DEFAULT_MTU: '1500.5' }, /--default-mtu \(env TSNET_DEFAULT_MTU\)/, 'MTU fractional')
  const long = '/' + 'a'.repeat(107) // 108 bytes
  bad(['--socket', long], {}, /^setting --socket \(env TSNET_SOCKET\): the path is 108 bytes; unix sockets allow at most 107$/, 'socket flag too long')
  bad([], { TSNET_SOCKET: long }, /--socket \(env TSNET_SOCKET\)/, 'socket env too long')
  bad([], { TSNET_SOCKET: '/' + 'é'.repeat(54) }, /the path is 109 bytes/, 'the limit counts bytes, not characters')
})

t.test('limits that are just allowed', async (t) => {
  const path107 = '/' + 'a'.repeat(106)
  t.equal(loadConfig(['--socket', path107], {}).socket, path107, 'a 107-byte socket path')
  t.equal(loadConfig(['--default-mtu', '68'], {}).defaultMtu, 68)
  t.equal(loadConfig(['--default-mtu', '65535'], {}).defaultMtu, 65535)
  for (const level of ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']) t.equal(loadConfig(['--log-level', level], {}).logLevel, level)
})

t.test('unknown flags are refused', async (t) => {
  t.throws(() => loadConfig(['--bogus'], {}), { message: /bogus/ })
  t.throws(() => loadConfig(['--log-level'], {}), 'a flag without its value')
})

t.test('the Docker API is opt-in: absent or empty means none (no garbage collection, no network names)', async (t) => {
  t.notOk('dockerHost' in loadConfig([], {}), 'absent: no Docker API')
  t.notOk('dockerHost' in loadConfig([], { DOCKER_HOST: '' }), 'DOCKER_HOST= (the managed plugin\'s default): no Docker API')
  t.notOk('dockerHost' in loadConfig(['--docker-host='], {}), 'an empty flag: no Docker API')
  t.notOk('dockerHost' in loadConfig(['--docker-host', ''], { DOCKER_HOST: 'unix:///var/run/docker.sock' }), 'an empty flag wins over the environment')
  t.equal(loadConfig([], { DOCKER_HOST: 'unix:///var/run/docker.sock' }).dockerHost, 'unix:///var/run/docker.sock', 'opted in through the environment')
  t.equal(loadConfig(['--docker-host', 'unix:///run/alt.sock'], { DOCKER_HOST: 'unix:///var/run/docker.sock' }).dockerHost, 'unix:///run/alt.sock', 'the flag wins')
  t.equal(loadConfig([], {}).gcIntervalSec, 60, 'the interval keeps its default; without the API it is simply not used')
  for (const bad of ['tcp://127.0.0.1:2375', '/var/run/docker.sock', 'unix://relative.sock', 'unix:///']) {
    t.throws(() => loadConfig([], { DOCKER_HOST: bad }), {
      name: 'TsnetError', kind: 'invalid',
      message: /^setting --docker-host \(env DOCKER_HOST\): ".*" is not of the form unix:\/\/\/path\/to\/docker\.sock \(leave it empty to run without the Docker API\)$/,
    }, `refused: ${bad}`)
  }
})
