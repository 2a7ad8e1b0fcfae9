/**
 * etcd for bench/cluster-scale.ts: /usr/bin/etcd (Debian's etcd-server) members, each in a
 * namespace of its own on the bench's underlay, data under that namespace's state directory. The
 * namespaces come from createEngineNetns, so the e2e cleanup kills etcd and removes its data with
 * them, also when the bench dies. And a reader of Prometheus text for etcd's /metrics.
 */
import { spawn } from 'node:child_process'
import { closeSync, existsSync, openSync } from 'node:fs'
import { join } from 'node:path'
import { track } from '../../test/e2e/lib/cleanup.js'
import { createEngineNetns, nsExec, type Engine } from '../../test/e2e/lib/engine.js'
import { sleep, sysEnv } from '../../test/e2e/lib/proc.js'
import type { Underlay } from '../../test/e2e/lib/underlay.js'

export const ETCD_BIN = '/usr/bin/etcd'
export const etcdMissing = existsSync(ETCD_BIN) ? undefined : `${ETCD_BIN} is missing (Debian package etcd-server; scripts/install-test-deps.sh installs it)`

export interface EtcdMember {
  ns: Engine
  name: string
  ip: string
  pid: number
  clientUrl: string
}

/** Starts one member per namespace name at the given underlay addresses; resolves once all answer /health. */
export async function startEtcd(u: Underlay, names: readonly string[], ips: readonly string[]): Promise<EtcdMember[]> {
  const members: Array<Omit<EtcdMember, 'pid'> & { pid?: number }> = []
  for (const [i, name] of names.entries()) {
    const ns = await createEngineNetns(name)
    const ip = ips[i] as string
    await u.attach(ns, ip)
    members.push({ ns, name, ip, clientUrl: `http://${ip}:2379` })
  }
  const initialCluster = members.map((m) => `${m.name}=http://${m.ip}:2380`).join(',')
  for (const m of members) {
    const fd = openSync(join(m.ns.stateDir, 'etcd.log'), 'a')
    const child = spawn('nsenter', [
      `--net=${m.ns.netnsPath}`, '--', ETCD_BIN,
      '--name', m.name, '--data-dir', join(m.ns.stateDir, 'etcd-data'),
      '--listen-client-urls', m.clientUrl, '--advertise-client-urls', m.clientUrl,
      '--listen-peer-urls', `http://${m.ip}:2380`, '--initial-advertise-peer-urls', `http://${m.ip}:2380`,
      '--initial-cluster', initialCluster, '--initial-cluster-state', 'new', '--initial-cluster-token', `tsnet-bench-${process.pid}`,
      '--logger', 'zap', '--log-level', 'warn',
    ], { detached: true, stdio: ['ignore', fd, fd], env: sysEnv() })
    closeSync(fd)
    child.on('error', () => undefined)
    child.unref()
    if (!child.pid) throw new Error(`could not start etcd member ${m.name}`)
    m.pid = child.pid // nsenter execs etcd
    const untrack = track({ kind: 'pid', pid: child.pid, what: `etcd ${m.name}` })
    child.on('exit', untrack)
  }
  for (const m of members) {
    for (let i = 0; ; i++) {
      const r = await nsExec(m.ns, ['curl', '-sf', '--max-time', '2', `${m.clientUrl}/health`])
      if (r.code === 0 && r.stdout.includes('"true"')) break
      if (i > 100) throw new Error(`etcd member ${m.name} is not healthy after 20 s: ${r.stdout}${r.stderr}`)
      await sleep(200)
    }
  }
  return members as EtcdMember[]
}

/** One Prometheus text, as a sum over the series of `name` whose labels contain every pair in `labels`. */
export function metric(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0
  for (const line of text.split('\n')) {
    if (!line.startsWith(name) || (line[name.length] !== '{' && line[name.length] !== ' ')) continue
    const value = Number(line.slice(line.lastIndexOf(' ') + 1))
    if (Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`)) && Number.isFinite(value)) sum += value
  }
  return sum
}

/** The same over every member's text. */
export const metricAll = (texts: readonly string[], name: string, labels: Record<string, string> = {}) =>
  texts.reduce((s, t) => s + metric(t, name, labels), 0)
