/**
 * What tsnet needs from the host, checked once before it serves: a missing tool would
 * otherwise surface as a failed CreateNetwork much later. A missing requirement stops tsnet with
 * exit code 78 (the systemd unit does not restart on it) and a sentence naming the package.
 */
import { access, constants } from 'node:fs/promises'
import { delimiter, join } from 'node:path'
import { TsnetError } from '../errors.js'

export const EXIT_PREFLIGHT = 78

interface Tool {
  name: string
  /** Debian package that ships it. */
  pkg: string
  /** Without it tsnet still runs, with this feature off (said in the log). */
  optional?: string
}

const TOOLS: Tool[] = [
  { name: 'iptables', pkg: 'iptables' },
  { name: 'iptables-restore', pkg: 'iptables' },
  { name: 'ip6tables', pkg: 'iptables' },
  { name: 'ip6tables-restore', pkg: 'iptables' },
  { name: 'ipset', pkg: 'ipset' },
  { name: 'conntrack', pkg: 'conntrack', optional: 'clearing UDP flows of removed published ports' },
]

async function onPath(name: string, path: string): Promise<boolean> {
  for (const dir of path.split(delimiter).filter(Boolean)) {
    try {
      await access(join(dir, name), constants.X_OK)
      return true
    } catch {
      // not in this directory
    }
  }
  return false
}

export interface PreflightResult {
  /** Optional features that are off, as sentences. */
  warnings: string[]
}

/** Throws (exit 78) naming every required tool that is missing; returns what is merely degraded. */
export async function preflight(env: NodeJS.ProcessEnv = process.env, procSys = '/proc/sys'): Promise<PreflightResult> {
  const path = env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin'
  const missing: Tool[] = []
  const warnings: string[] = []
  for (const tool of TOOLS) {
    if (await onPath(tool.name, path)) continue
    if (tool.optional) warnings.push(`${tool.name} is not installed (Debian package ${tool.pkg}): ${tool.optional} is off`)
    else missing.push(tool)
  }
  if (missing.length > 0) {
    const pkgs = [...new Set(missing.map((m) => m.pkg))]
    throw new TsnetError('host', `tsnet needs ${missing.map((m) => m.name).join(', ')}, which ${missing.length === 1 ? 'is' : 'are'} not on PATH (${path}); install the Debian package${pkgs.length === 1 ? '' : 's'} ${pkgs.join(' ')}`,
      { context: { exitCode: EXIT_PREFLIGHT } })
  }
  try {
    await access(join(procSys, 'net'), constants.R_OK)
  } catch {
    throw new TsnetError('host', `${procSys}/net cannot be read: tsnet needs the kernel's network settings`, { context: { exitCode: EXIT_PREFLIGHT } })
  }
  try {
    await access(join(procSys, 'net/bridge/bridge-nf-call-iptables'), constants.R_OK)
  } catch {
    warnings.push('the br_netfilter kernel module is not loaded: networks with enable_icc=false are refused until it is (modprobe br_netfilter)')
  }
  return { warnings }
}
