/**
 * The real host: links, addresses, neighbour and FDB entries over in-process rtnetlink; the edge
 * through batched iptables-restore and ipset; kernel settings through /proc/sys; published
 * ports held by sockets. Each kind of object has its driver; this routes between them.
 */
import type { Logger } from 'pino'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import type { HostFacts } from '../core/host-facts.js'
import { type HostObject, type ObjectKind, type Op, type Proto, TSNET_TAG_PREFIX, keyOf, kindOfKey } from '../core/objects.js'
import type { PortFlow } from '../core/flows.js'
import { ConntrackFlows } from './conntrack.js'
import type { KindDriver } from './driver.js'
import { EdgeFirewall } from './edge-firewall.js'
import { createRunner, type Runner } from './exec.js'
import { FirewallDriver } from './firewall-driver.js'
import type { Host, ObserveQuery } from './host.js'
import { LinkDriver } from './link-driver.js'
import { LOWER_DEVICE_KINDS, type Rtnl, kernelHasLinkKind, listAddresses, listLinks, listRoutes, sharedRtnl, watchLinks } from './netlink/index.js'
import { BRIDGE_PREFIX, HOST_VETH_PREFIX, endpointAlias } from '../core/names.js'
import { PortDriver } from './port-driver.js'
import { type Binding, type PortReserver, SocketPortReserver } from './port-reservations.js'
import { SysctlDriver } from './sysctl-driver.js'
import { ProcSysctls, RunnerSysctls, type Sysctls } from './sysctl.js'

const MAIN_TABLE = 254
const ENDPOINT_TAG = endpointAlias('')

export interface LinuxHostParts {
  runner?: Runner
  rtnl?: Rtnl
  sysctls?: Sysctls
  ports?: PortReserver
  /** Where /proc/sys is (the managed plugin mounts the host's elsewhere). */
  procSys?: string
}

export class LinuxHost implements Host {
  private readonly rtnl: Rtnl
  private readonly drivers = new Map<ObjectKind, KindDriver>()
  private readonly links: LinkDriver
  private readonly portDriver: PortDriver
  private readonly procSys: string
  private readonly conntrack: ConntrackFlows
  private known: HostFacts | undefined

  constructor(parts: LinuxHostParts = {}) {
    const runner = parts.runner ?? createRunner()
    this.rtnl = parts.rtnl ?? sharedRtnl()
    this.procSys = parts.procSys ?? '/proc/sys'
    const firewall = new EdgeFirewall(runner)
    this.conntrack = new ConntrackFlows(runner)
    this.portDriver = new PortDriver(parts.ports ?? new SocketPortReserver())
    this.links = new LinkDriver(this.rtnl)
    const all: KindDriver[] = [
      this.links,
      new FirewallDriver(firewall, runner),
      new SysctlDriver(parts.sysctls ?? new ProcSysctls(this.procSys), (f, log) => firewall.dropForwardingByDefault(f, log)),
      this.portDriver,
    ]
    for (const d of all) for (const k of d.kinds) this.drivers.set(k, d)
  }

  private driverOf(kind: ObjectKind): KindDriver {
    const d = this.drivers.get(kind)
    if (!d) throw new Error(`no host driver for ${kind} objects`)
    return d
  }

  async observe(query: ObserveQuery): Promise<Map<string, HostObject>> {
    const byDriver = new Map<KindDriver, string[]>()
    for (const key of query.keys) {
      const d = this.driverOf(kindOfKey(key))
      const keys = byDriver.get(d)
      if (keys) keys.push(key)
      else byDriver.set(d, [key])
    }
    if (query.allOwned) for (const d of new Set(this.drivers.values())) if (!byDriver.has(d)) byDriver.set(d, [])
    // The drivers read different things (rtnetlink, iptables and ipset, /proc/sys, sockets): side by side.
    const seen = await Promise.all([...byDriver].map(([d, keys]) => d.observe({ keys, allOwned: query.allOwned === true, fresh: query.fresh === true })))
    const out = new Map<string, HostObject>()
    for (const objects of seen) for (const o of objects) out.set(keyOf(o), o)
    return out
  }

  async apply(ops: readonly Op[], log: Logger): Promise<void> {
    let i = 0
    while (i < ops.length) {
      const d = this.driverOf((ops[i] as Op).obj.kind)
      let j = i + 1
      while (j < ops.length && this.driverOf((ops[j] as Op).obj.kind) === d && (ops[j] as Op).obj.kind === (ops[i] as Op).obj.kind) j++
      await d.apply(ops.slice(i, j), log)
      i = j
    }
  }

  async facts(): Promise<HostFacts> {
    if (this.known) return this.known
    const kinds = new Set(['bridge', 'veth'])
    for (const l of await listLinks(this.rtnl)) if (l.kind) kinds.add(l.kind)
    // Kinds no link may show yet: asked of the kernel (a vlan parent, ipvlan mode depend on them).
    for (const k of LOWER_DEVICE_KINDS) if (await kernelHasLinkKind(this.rtnl, k)) kinds.add(k)
    // Built in or loaded (a built-in module with a version shows here too): overlay encryption's precondition.
    if (existsSync('/sys/module/wireguard')) kinds.add('wireguard')
    this.known = {
      brNetfilter: existsSync(join(this.procSys, 'net/bridge/bridge-nf-call-iptables')),
      ipv6: existsSync(join(this.procSys, 'net/ipv6/conf/all')),
      linkKinds: kinds,
    }
    return this.known
  }

  async routedPrefixes(): Promise<string[]> {
    const out: string[] = []
    for (const family of [4, 6] as const) {
      for (const r of await listRoutes(this.rtnl, family)) {
        if (r.dst === 'default' || r.table !== MAIN_TABLE) continue
        out.push(r.dst)
      }
    }
    return out
  }

  async defaultRouteMtu(): Promise<number | undefined> {
    const route = (await listRoutes(this.rtnl, 4)).find((r) => r.dst === 'default' && r.table === MAIN_TABLE && r.dev !== undefined)
    if (!route) return undefined
    return (await listLinks(this.rtnl)).find((l) => l.index === route.dev)?.mtu
  }

  async underlayOf(address: string): Promise<{ link: string; mtu: number } | undefined> {
    const found = (await listAddresses(this.rtnl)).find((a) => a.address === address)
    const link = found && (await listLinks(this.rtnl)).find((l) => l.index === found.link)
    return link ? { link: link.name, mtu: link.mtu } : undefined
  }

  reservePort(proto: Proto, bindings: Binding[], candidates: number[] | undefined) {
    return this.portDriver.reserve(proto, bindings, candidates)
  }

  forgetPortFlows(flows: readonly PortFlow[], log: Logger): Promise<void> {
    return this.conntrack.forget(flows, log)
  }

  async watchOwnedLinks(onDrift: (why: string) => void, log: Logger): Promise<() => void> {
    const ours = (name: string | undefined, alias: string | undefined) =>
      (alias ?? '').startsWith(TSNET_TAG_PREFIX) || (name !== undefined && (name.startsWith(BRIDGE_PREFIX) || name.startsWith(HOST_VETH_PREFIX)))
    const watch = watchLinks((e) => {
      // Docker moves a macvlan endpoint's link into its container, which this namespace hears as a delete.
      if (e.type === 'delete' && e.kind === 'macvlan' && (e.alias ?? '').startsWith(ENDPOINT_TAG)) return
      // tsnet's own deletions (DeleteEndpoint, DeleteNetwork, a rollback) are no drift.
      if (e.type === 'delete' && ours(e.name, e.alias) && !this.links.deletedHere(e.name)) onDrift(`link ${e.name} was deleted`)
      else if (e.type === 'change' && e.previousName !== undefined && ours(e.previousName, e.alias)) onDrift(`link ${e.previousName} was renamed ${e.name}`)
    }, {
      onOverflow: () => onDrift('link events were lost'),
      onError: (err) => log.warn({ err }, 'link events: the watch failed; the periodic reconcile still runs'),
    })
    watch.seed(await listLinks(this.rtnl))
    return () => watch.stop()
  }

  releasePorts(): Promise<void> {
    return this.portDriver.releaseAll()
  }
}

/** A LinuxHost whose tools and settings go through `runner` (tests in a namespace: rtnetlink must be opened there too). */
export function linuxHostVia(runner: Runner, rtnl: Rtnl, ports?: PortReserver): LinuxHost {
  return new LinuxHost({ runner, rtnl, sysctls: new RunnerSysctls(runner), ...(ports ? { ports } : {}) })
}
