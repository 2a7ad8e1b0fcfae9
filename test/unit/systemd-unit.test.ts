// The legacy plugin's systemd unit, checked statically (this machine's PID 1 is not systemd):
// it must start tsnet before dockerd, not restart-loop on a bad setting or store (exit 78), and
// run tsnet sandboxed: bounded capabilities, a read-only system with only what tsnet writes left
// writable. test/e2e runs the legacy tsnet under the sandbox parsed here (test/e2e/lib/sandbox.ts),
// so the parse is checked against the file too.
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { capMask, parseUnitSandbox, unitSection } from '../e2e/lib/sandbox.js'

const unitPath = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'packaging', 'tsnet.service')
const text = readFileSync(unitPath, 'utf8')
const section = (name: string) => unitSection(text, name)
const svc = section('Service')
const one = (key: string) => svc.get(key)?.at(-1)
const words = (key: string) => (svc.get(key) ?? []).flatMap((v) => v.split(/\s+/)).filter(Boolean)

t.test('ordering: tsnet runs before docker.service, and docker needs it', async (t) => {
  const unit = section('Unit')
  t.match(unit.get('Before')?.join(' '), /\bdocker\.service\b/)
  t.match(section('Install').get('RequiredBy')?.join(' '), /\bdocker\.service\b/)
  t.match(section('Install').get('WantedBy')?.join(' '), /\bmulti-user\.target\b/)
})

t.test('service: serves, restarts on crashes, but not on exit 78', async (t) => {
  t.match(svc.get('ExecStart')?.[0], /dist\/cli\.js serve$/)
  t.equal(one('Restart'), 'always')
  t.match(svc.get('RestartPreventExitStatus')?.join(' '), /\b78\b/)
  t.equal(one('KillSignal'), 'SIGTERM', 'SIGTERM closes the socket cleanly')
})

const TSNET_CAPS = ['CAP_NET_ADMIN', 'CAP_NET_RAW', 'CAP_NET_BIND_SERVICE']

t.test('capabilities: only the networking ones tsnet uses, and no way to gain more', async (t) => {
  t.same(words('CapabilityBoundingSet').sort(), [...TSNET_CAPS].sort(), 'bounding set: NET_ADMIN, NET_RAW, NET_BIND_SERVICE')
  t.same(words('AmbientCapabilities').sort(), [...TSNET_CAPS].sort(), 'ambient set: the same')
  t.notOk(words('CapabilityBoundingSet').some((c) => c.startsWith('~')), 'an allow list, not a deny list')
  for (const c of ['CAP_SYS_ADMIN', 'CAP_DAC_OVERRIDE', 'CAP_SYS_MODULE', 'CAP_SYS_PTRACE']) {
    t.notOk(words('CapabilityBoundingSet').includes(c), `no ${c}`)
  }
  t.equal(one('NoNewPrivileges'), 'yes')
  t.equal(one('User'), undefined, 'uid 0 (Docker dials a root-owned socket; the store is root\'s), bounded by the set above')
})

t.test('file system: read-only but for the store, the plugin socket directory and /proc/sys/net', async (t) => {
  t.equal(one('ProtectSystem'), 'strict', 'the whole hierarchy read-only')
  t.equal(one('StateDirectory'), 'tsnet', '/var/lib/tsnet (the store and its lock) is created and writable')
  t.equal(one('StateDirectoryMode'), '0700')
  t.equal(one('RuntimeDirectory'), 'docker/plugins', '/run/docker/plugins is created (tsnet starts before dockerd) and writable')
  t.equal(one('RuntimeDirectoryMode'), '0700', "Docker's own mode for /run/docker/plugins")
  t.equal(one('RuntimeDirectoryPreserve'), 'yes', "stopping tsnet must not delete Docker's plugin directory (other plugins' sockets live there)")
  t.equal(one('ProtectKernelTunables'), 'yes', '/proc/sys and /sys read-only ...')
  t.ok(words('ReadWritePaths').includes('/proc/sys/net'), '... but for /proc/sys/net (ip_forward, route_localnet, accept_ra, bridge-nf-call-*)')
  t.ok(words('ReadWritePaths').includes('-/run/xtables.lock'), "iptables-legacy's lock, where it exists")
  t.match(one('ExecStartPre'), /^\+\/usr\/bin\/touch \/run\/xtables\.lock$/, 'which exists before tsnet starts (+: outside the sandbox)')
  for (const k of ['ProtectHome', 'PrivateTmp', 'PrivateDevices', 'PrivateMounts', 'ProtectKernelModules', 'ProtectKernelLogs', 'ProtectControlGroups']) {
    t.equal(one(k), 'yes', k)
  }
  t.notOk(['pid'].includes(one('ProcSubset') ?? ''), 'ProcSubset=pid would hide /proc/sys')
  t.notOk(/^(yes|true)$/.test(one('PrivateNetwork') ?? ''), 'tsnet works in the host network namespace')
})

t.test('kernel interfaces: sockets, system calls, namespaces', async (t) => {
  t.same(words('RestrictAddressFamilies').sort(), ['AF_INET', 'AF_INET6', 'AF_NETLINK', 'AF_UNIX'], 'unix (Docker), inet (held ports), netlink (ip, iptables-nft, ipset, conntrack)')
  t.equal(one('SystemCallArchitectures'), 'native')
  t.same(svc.get('SystemCallFilter'), ['@system-service', '~@privileged', 'pkey_alloc pkey_free pkey_mprotect'], "an allow list, less the privileged calls, plus V8's memory protection keys")
  t.equal(one('SystemCallErrorNumber'), 'EPERM', 'an unlisted call fails instead of killing tsnet')
  t.equal(one('RestrictNamespaces'), 'yes')
  t.notOk(/^(yes|true)$/.test(one('MemoryDenyWriteExecute') ?? ''), "V8's JIT needs writable+executable memory")
})

t.test('Docker API: off unless the operator sets DOCKER_HOST', async (t) => {
  t.notOk((svc.get('Environment') ?? []).some((v) => /DOCKER_HOST=\S/.test(v)), 'the unit does not opt in by itself')
  t.match(text, /DOCKER_HOST is empty by default/, 'the unit says how the opt-in works and what it grants')
})

t.test('the e2e harness reads the same sandbox from the file', async (t) => {
  const s = parseUnitSandbox(text)
  t.same(s.bounding.sort(), [...TSNET_CAPS].sort())
  t.equal(capMask(s.bounding), 0x3400n, 'CapBnd 0x3400: bits 10, 12, 13')
  t.same(s.ambient.sort(), [...TSNET_CAPS].sort())
  t.ok(s.noNewPrivileges && s.protectSystemStrict && s.protectKernelTunables && s.protectKernelLogs && s.protectHome && s.privateTmp && s.privateDevices)
  t.same(s.writable.map((w) => `${w.optional ? '-' : ''}${w.path}`).sort(), ['-/run/xtables.lock', '/proc/sys/net', '/run/docker/plugins', '/var/lib/tsnet'])
})

t.test('the harness parser: merges, resets, and refuses what it cannot emulate', async (t) => {
  const unit = (body: string) => `[Unit]\nDescription=x\n[Service]\n${body}\n`
  t.same(parseUnitSandbox(unit('CapabilityBoundingSet=CAP_NET_ADMIN\nCapabilityBoundingSet=CAP_NET_RAW')).bounding, ['CAP_NET_ADMIN', 'CAP_NET_RAW'], 'lines merge')
  t.same(parseUnitSandbox(unit('CapabilityBoundingSet=CAP_NET_ADMIN\nCapabilityBoundingSet=\nCapabilityBoundingSet=CAP_NET_RAW')).bounding, ['CAP_NET_RAW'], 'an empty line resets')
  t.throws(() => parseUnitSandbox(unit('CapabilityBoundingSet=~CAP_SYS_ADMIN')), /inverted lists are not emulated/)
  t.throws(() => parseUnitSandbox(unit('ProtectSystem=full')), /emulates only strict/)
  t.notOk(parseUnitSandbox(unit('# ProtectSystem=strict')).protectSystemStrict, 'comments are not settings')
  t.throws(() => capMask(['CAP_NOT_A_CAP']), /unknown capability/)
})

const analyze = spawnSync('systemd-analyze', ['--version'], { encoding: 'utf8' })
const noAnalyze = analyze.status === 0 ? false : 'systemd-analyze is not installed'
t.test('systemd-analyze verify finds nothing wrong', { skip: noAnalyze }, async (t) => {
  const r = spawnSync('systemd-analyze', ['verify', unitPath], { encoding: 'utf8' })
  // It may warn that /opt/tsnet does not exist on this machine; syntax errors and unknown keys are what matter.
  const problems = (r.stderr + r.stdout).split('\n').filter((l) => l.trim() && !/No such file|is not executable|Command .* is not executable/.test(l))
  t.same(problems, [], `systemd-analyze verify: ${r.stderr.trim() || 'clean'}`)
})

t.test('systemd-analyze security rates the sandbox (exposure at most 3.0 of 10)', { skip: noAnalyze }, async (t) => {
  const r = spawnSync('systemd-analyze', ['security', '--offline=true', '--threshold=30', unitPath], { encoding: 'utf8' })
  const level = /Overall exposure level for \S+: ([\d.]+)/.exec(r.stdout)?.[1]
  t.ok(level, `systemd-analyze security printed a level: ${level}`)
  t.equal(r.status, 0, `exposure ${level} is within the threshold 3.0 (a full-root unit rates 9.6)`)
})
