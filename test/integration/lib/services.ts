/**
 * tsnet's services, built exactly as `tsnet serve` builds them (main.ts openServices, then the
 * boot reconcile), over a store of their own and the real host layer in a test's namespace
 * (remote-host.ts). A restart is what a new process would be: the host child ends (its held ports
 * go with it), a new one starts, and the services are built again over the same state directory.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Test } from 'tap'
import { DOCKER_DEFAULT_POOLS_TEXT, parseDefaultPools } from '../../../src/core/ipam.js'
import type { NamedNetwork } from '../../../src/docker/docker-view.js'
import type { Host } from '../../../src/host/host.js'
import { openServices, type Services } from '../../../src/main.js'
import { log, type Netns } from './netns.js'
import { RemoteHost } from './remote-host.js'

export interface TsnetInNetns {
  services: Services
  host: RemoteHost
  dir: string
  /** A tsnet restart: the host child and the services go, the state directory and the kernel stay. */
  restart(): Promise<Services>
}

export interface TsnetOptions {
  /** Docker's networks as tsnet's name copy holds them (no Docker API in these tests). */
  names?: NamedNetwork[]
  /** Changes the host the services see (a control that lacks one of tsnet's steps). */
  wrap?: (host: RemoteHost) => Host
  defaultMtu?: number
}

export async function tsnetIn(t: Test, ns: Netns, opts: TsnetOptions = {}): Promise<TsnetInNetns> {
  const dir = await mkdtemp(join(tmpdir(), 'tsnet-it-'))
  const config = {
    socket: join(dir, 'tsnet.sock'), stateDir: dir, logLevel: 'silent', defaultPools: parseDefaultPools(DOCKER_DEFAULT_POOLS_TEXT),
    gcIntervalSec: 0, procSys: '/proc/sys', reconcileIntervalSec: 0, defaultMtu: opts.defaultMtu ?? 1500,
    // With names, tsnet loads its stored copy at start, as with --docker-host (nothing here connects to it).
    ...(opts.names ? { dockerHost: 'unix:///run/tsnet-it-no-docker.sock' } : {}),
  }
  let host = RemoteHost.start(ns.name)
  let services: Services | undefined
  t.teardown(async () => {
    services?.reconciler.stop()
    await host.close()
    await rm(dir, { recursive: true, force: true })
  })
  const open = async () => {
    const s = await openServices(config, opts.wrap ? opts.wrap(host) : host, log)
    // Before the first request, as a refresh from Docker would (a restart finds the same copy stored).
    if (opts.names) await s.names.update(opts.names)
    await s.reconciler.boot()
    return s
  }
  services = await open()
  const handle: TsnetInNetns = {
    services,
    host,
    dir,
    async restart() {
      services?.reconciler.stop()
      await host.close()
      host = RemoteHost.start(ns.name)
      services = await open()
      handle.services = services
      handle.host = host
      return services
    },
  }
  return handle
}

/** `host` with some of its methods replaced. */
export function overriding(host: Host, over: Partial<Host>): Host {
  return new Proxy(host, {
    get(target, p, receiver) {
      if (Object.hasOwn(over, p)) return over[p as keyof Host]
      const v = Reflect.get(target, p, receiver) as unknown
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v
    },
  })
}
