/**
 * Real etcd members for tests: /usr/bin/etcd (Debian's etcd-server) on 127.0.0.1, free ports, a
 * temporary data directory. Members can be killed, started again on their data, paused
 * (SIGSTOP: a member that hangs instead of refusing) and resumed. Teardown kills every member and
 * removes the directory, whatever the test did.
 *
 * A port is free when it is chosen, not when etcd binds it: two members once got the same client
 * port, one of them could not listen and exited, and the other answered for both, so pausing or
 * killing the dead one changed nothing. The ports of one cluster are now chosen while all are
 * held, and `ready` fails when a member has exited or when a URL is answered by a member that
 * already answered for another one, or by another cluster (a port some other process took).
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { closeSync, existsSync, openSync, readFileSync, rmSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Etcd3 } from 'etcd3'

export const ETCD_BINARY = '/usr/bin/etcd'
export const etcdMissing = existsSync(ETCD_BINARY) ? undefined : `${ETCD_BINARY} is missing (Debian package etcd-server; scripts/install-test-deps.sh installs it)`

interface Member {
  name: string
  clientUrl: string
  peerUrl: string
  dataDir: string
  proc?: ChildProcess
  exited?: Promise<void>
}

export interface EtcdCluster {
  /** Client URLs, one per member. */
  endpoints: string[]
  /** Kills a member (SIGKILL) and waits for it to exit. */
  kill(i: number): Promise<void>
  /** Starts a killed member again on its data directory. */
  start(i: number): Promise<void>
  pause(i: number): void
  resume(i: number): void
  /** Waits until every running member answers /health (the cluster has a leader). */
  ready(ms?: number): Promise<void>
  /** The index of the current leader. */
  leader(): Promise<number>
  /** Compacts the cluster's history up to its current revision. */
  compact(): Promise<void>
}

export async function freePort(): Promise<number> {
  return (await freePorts(1))[0] as number
}

/** `count` distinct free ports: each is held until all are chosen, so none is handed out twice. */
export async function freePorts(count: number): Promise<number[]> {
  const servers: Array<ReturnType<typeof createServer>> = []
  try {
    const ports: number[] = []
    for (let i = 0; i < count; i++) {
      const server = createServer()
      servers.push(server)
      ports.push(await new Promise<number>((resolve, reject) => {
        server.once('error', reject)
        server.listen(0, '127.0.0.1', () => {
          const address = server.address()
          if (typeof address === 'object' && address) resolve(address.port)
          else reject(new Error('no port'))
        })
      }))
    }
    return ports
  } finally {
    await Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve))))
  }
}

/** PEM files: members serve their client URLs over TLS and require client certificates signed by `caFile`. */
export interface MemberTls {
  caFile: string
  /** The members' certificate (for IP 127.0.0.1) and key. */
  certFile: string
  keyFile: string
  /** A client certificate and key the test clients use. */
  clientCertFile: string
  clientKeyFile: string
}

/** Starts `size` members as one cluster; they are killed and their data removed when `t` ends. */
export async function startEtcdCluster(t: { teardown: (fn: () => unknown) => void }, size = 1, tls?: MemberTls): Promise<EtcdCluster> {
  const dir = await mkdtemp(join(tmpdir(), 'tsnet-etcd-'))
  const members: Member[] = []
  const scheme = tls ? 'https' : 'http'
  const ports = await freePorts(2 * size)
  for (let i = 0; i < size; i++) {
    members.push({ name: `m${i}`, clientUrl: `${scheme}://127.0.0.1:${ports[2 * i]}`, peerUrl: `http://127.0.0.1:${ports[2 * i + 1]}`, dataDir: join(dir, `m${i}`) })
  }
  const initialCluster = members.map((m) => `${m.name}=${m.peerUrl}`).join(',')
  const token = `tsnet-test-${process.pid}-${Date.now()}`
  const killAll = () => {
    for (const m of members) {
      try { m.proc?.kill('SIGCONT'); m.proc?.kill('SIGKILL') } catch { /* gone already */ }
    }
  }
  const onExit = () => {
    killAll()
    rmSync(dir, { recursive: true, force: true })
  }
  process.once('exit', onExit) // a test process that dies leaves no member and no directory behind
  t.teardown(async () => {
    killAll()
    await Promise.all(members.map((m) => m.exited))
    process.removeListener('exit', onExit)
    await rm(dir, { recursive: true, force: true })
  })

  const launch = (m: Member) => {
    const log = openSync(join(dir, `${m.name}.log`), 'a')
    m.proc = spawn(ETCD_BINARY, [
      '--name', m.name, '--data-dir', m.dataDir,
      '--listen-client-urls', m.clientUrl, '--advertise-client-urls', m.clientUrl,
      '--listen-peer-urls', m.peerUrl, '--initial-advertise-peer-urls', m.peerUrl,
      '--initial-cluster', initialCluster, '--initial-cluster-state', 'new', '--initial-cluster-token', token,
      // Quick elections on loopback.
      '--heartbeat-interval', '50', '--election-timeout', '500',
      '--logger', 'zap', '--log-level', 'warn',
      ...(tls ? ['--cert-file', tls.certFile, '--key-file', tls.keyFile, '--trusted-ca-file', tls.caFile, '--client-cert-auth'] : []),
    ], { stdio: ['ignore', log, log] })
    closeSync(log)
    const proc = m.proc
    m.exited = new Promise((resolve) => proc.once('exit', () => resolve()))
  }

  /** Who answers at a member's URL, once it has a leader. */
  const healthy = async (m: Member) => {
    const status = await withClient((c) => c.maintenance.status(), [m.clientUrl]).catch(() => undefined)
    return status !== undefined && status.leader !== '0' ? status.header : undefined
  }
  /** A member whose process ended on its own (its port taken, a bad flag): waiting longer will not help. */
  const exited = (m: Member) => {
    if (!m.proc || (m.proc.exitCode === null && m.proc.signalCode === null)) return undefined
    const log = readFileSync(join(dir, `${m.name}.log`), 'utf8').trim().split('\n').slice(-3).join('\n')
    return `etcd member ${m.name} (${m.clientUrl}, peer ${m.peerUrl}) exited (${m.proc.exitCode ?? m.proc.signalCode}); its log ends:\n${log}`
  }

  const withClient = async <R>(fn: (c: Etcd3) => Promise<R>, hosts = members.map((m) => m.clientUrl)): Promise<R> => {
    const client = new Etcd3({
      hosts, defaultCallOptions: () => ({ deadline: Date.now() + 1000 }),
      ...(tls ? { credentials: { rootCertificate: readFileSync(tls.caFile), certChain: readFileSync(tls.clientCertFile), privateKey: readFileSync(tls.clientKeyFile) } } : {}),
    })
    try {
      return await fn(client)
    } finally {
      client.close()
    }
  }

  const cluster: EtcdCluster = {
    endpoints: members.map((m) => m.clientUrl),
    async kill(i) {
      const m = members[i] as Member
      m.proc?.kill('SIGCONT')
      m.proc?.kill('SIGKILL')
      await m.exited
      m.proc = undefined
    },
    async start(i) {
      launch(members[i] as Member)
    },
    pause(i) { members[i]?.proc?.kill('SIGSTOP') },
    resume(i) { members[i]?.proc?.kill('SIGCONT') },
    async ready(ms = 20_000) {
      const until = Date.now() + ms
      for (;;) {
        const running = members.filter((m) => m.proc)
        const gone = running.map(exited).find(Boolean)
        if (gone) throw new Error(gone)
        const answers = await Promise.all(running.map(healthy))
        if (answers.every(Boolean)) {
          // Each URL must be answered by its own member of this cluster, not by another one listening on the same port.
          const ids = new Set(answers.map((h) => h?.member_id))
          const clusters = new Set(answers.map((h) => h?.cluster_id))
          if (ids.size === running.length && clusters.size === 1) return
          throw new Error(`etcd members ${running.map((m) => m.clientUrl).join(',')} are answered by members ${answers.map((h) => `${h?.member_id} of cluster ${h?.cluster_id}`).join(', ')}`)
        }
        if (Date.now() > until) throw new Error(`etcd members did not become healthy within ${ms} ms (logs in ${dir})`)
        await new Promise((r) => setTimeout(r, 100))
      }
    },
    async leader() {
      for (const [i, m] of members.entries()) {
        if (!m.proc) continue
        const status = await withClient((c) => c.maintenance.status(), [m.clientUrl]).catch(() => undefined)
        if (status && status.leader === status.header.member_id) return i
      }
      throw new Error('no etcd member says it is the leader')
    },
    async compact() {
      await withClient(async (c) => {
        const rev = (await c.kv.range({ key: Buffer.from('\0') })).header.revision
        await c.kv.compact({ revision: rev, physical: true })
      })
    },
  }
  for (const m of members) launch(m)
  await cluster.ready()
  return cluster
}
