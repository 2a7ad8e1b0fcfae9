// host/conntrack: the batch tsnet hands the conntrack tool, and what it makes of the tool's answers
// (a missing tool, no conntrack table, nothing to delete, a real failure). Real processes stand in
// for a missing tool: a command that does not exist, and `env` with an empty PATH (exit 127).
import t from 'tap'
import { readFile } from 'node:fs/promises'
import { deleteLine, ConntrackFlows } from '../../src/host/conntrack.js'
import { createRunner, type ExecResult, type Runner } from '../../src/host/exec.js'
import type { PortFlow } from '../../src/core/flows.js'
import { flowsToForget } from '../../src/core/flows.js'
import { captureLog } from './fixtures/gc-fakes.js'

const WARN = 40
const udp4: PortFlow = { family: 4, proto: 'udp', hostPort: 5353, hostIp: '' }
const sctp6: PortFlow = { family: 6, proto: 'sctp', hostPort: 9009, hostIp: '2001:DB8::7' }

/** A runner that answers `result` and keeps each call with the batch file's content at that time. */
function scripted(result: Partial<ExecResult>) {
  const calls: Array<{ cmd: string; args: readonly string[]; batch: string }> = []
  const runner: Runner = {
    async run(cmd, args) {
      calls.push({ cmd, args, batch: await readFile(String(args[1]), 'utf8') })
      return { code: 0, stdout: '', stderr: '', ...result }
    },
  }
  return { runner, calls }
}

t.test('flowsToForget: UDP and SCTP only, one per family, protocol, address and port', async (t) => {
  const p = (over: object) => ({ family: 4 as const, proto: 'udp' as const, hostIp: '', hostPort: 53, containerIp: '10.0.0.2', containerPort: 53, ...over })
  t.same(flowsToForget([
    p({}), p({ family: 6, containerIp: 'fd00::2' }), p({ proto: 'tcp' }), p({ proto: 'sctp', hostPort: 9 }), p({ hostIp: '0.0.0.0' }), p({ family: 6, hostIp: '::', containerIp: 'fd00::2' }),
    p({ hostIp: '127.0.0.1' }), p({ containerIp: '10.0.0.3' }),
  ]), [
    { family: 4, proto: 'udp', hostPort: 53, hostIp: '' }, { family: 6, proto: 'udp', hostPort: 53, hostIp: '' },
    { family: 4, proto: 'sctp', hostPort: 9, hostIp: '' }, { family: 4, proto: 'udp', hostPort: 53, hostIp: '127.0.0.1' },
  ], 'TCP is left out; wildcards are "any address"; duplicates collapse')
})

t.test('deleteLine: one delete per flow, rebuilt from validated values', async (t) => {
  t.equal(deleteLine(udp4), '-D -f ipv4 -p udp --orig-port-dst 5353')
  t.equal(deleteLine(sctp6), '-D -f ipv6 -p sctp --orig-port-dst 9009 --orig-dst 2001:db8::7')
  const bad: Array<[string, object]> = [
    ['an address with a second command in it', { ...udp4, hostIp: '127.0.0.1\n-F' }],
    ['an address of the other family', { ...udp4, hostIp: '::1' }],
    ['tcp', { ...udp4, proto: 'tcp' }],
    ['port 0', { ...udp4, hostPort: 0 }],
    ['port 65536', { ...udp4, hostPort: 65536 }],
    ['family 5', { ...udp4, family: 5 }],
  ]
  for (const [what, flow] of bad) t.throws(() => deleteLine(flow as PortFlow), { name: 'TsnetError', kind: 'invalid' }, `${what} is refused`)
})

t.test('forget: one batch for all flows; nothing to do runs nothing', async (t) => {
  const { runner, calls } = scripted({ stdout: 'udp 17 29 src=192.0.2.2 dst=192.0.2.1 sport=4000 dport=5353 ...\n' })
  const ct = new ConntrackFlows(runner)
  const { logger, entries } = captureLog()
  await ct.forget([], logger)
  t.equal(calls.length, 0, 'no flow: no process')
  await ct.forget([udp4, sctp6], logger)
  t.equal(calls.length, 1, 'one process for both flows')
  t.equal(calls[0]?.cmd, 'conntrack')
  t.equal(calls[0]?.args[0], '--load-file')
  t.equal(calls[0]?.batch, '-D -f ipv4 -p udp --orig-port-dst 5353\n-D -f ipv6 -p sctp --orig-port-dst 9009 --orig-dst 2001:db8::7\n')
  t.match(entries.find((e) => e.msg === 'conntrack entries of published ports forgotten'), { host: 'conntrack.delete', deleted: 1, flows: ['udp/5353 (IPv4)', 'sctp/9009 on 2001:DB8::7 (IPv6)'] })
  await t.rejects(readFile(String(calls[0]?.args[1])), { code: 'ENOENT' }, 'the batch file is removed afterwards')
})

t.test('forget: tolerated answers, and a real failure', async (t) => {
  const quiet = captureLog().logger
  for (const [what, r] of [
    ['nothing matched (older conntrack versions fail on it)', { code: 1, stderr: 'conntrack v1.4.6 (conntrack-tools): 0 flow entries have been deleted.\n' }],
    ['an entry went away by itself', { code: 1, stderr: "conntrack v1.4.7 (conntrack-tools): Operation failed: such conntrack doesn't exist\n" }],
    ['no conntrack table in this kernel', { code: 1, stderr: "conntrack v1.4.7 (conntrack-tools): Can't open handler\n" }],
    ['no conntrack protocol in this kernel', { code: 1, stderr: 'conntrack v1.4.7 (conntrack-tools): Operation failed: Protocol not supported\n' }],
  ] as const) {
    await t.resolves(new ConntrackFlows(scripted(r).runner).forget([udp4], quiet), what)
  }
  await t.rejects(new ConntrackFlows(scripted({ code: 1, stderr: 'conntrack v1.4.7 (conntrack-tools): Operation failed: Operation not permitted\n' }).runner).forget([udp4], quiet),
    { name: 'TsnetError', kind: 'host', message: /conntrack --load-file \S+ failed \(exit 1\): .*Operation not permitted/ })
})

t.test('forget without the conntrack tool: a warning, once; tsnet carries on', async (t) => {
  const real = createRunner()
  const missing: Runner = { run: (_cmd, args, opts) => real.run('tsnet-no-such-conntrack-tool', args, opts) }
  const noPath = createRunner(['env', 'PATH=/nonexistent'])
  for (const [what, runner] of [['the program does not exist', missing], ['a prefix (nsenter, env) cannot find it: exit 127', noPath]] as const) {
    const { logger, entries } = captureLog()
    const ct = new ConntrackFlows(runner)
    await t.resolves(ct.forget([udp4], logger), `${what}: no error`)
    await ct.forget([sctp6], logger)
    const warnings = entries.filter((e) => e.level === WARN)
    t.equal(warnings.length, 1, `${what}: warned once`)
    t.match(warnings[0]?.msg, /the conntrack tool is not installed \(Debian package conntrack\).*keep reaching the old container.*tsnet carries on/)
  }
})
