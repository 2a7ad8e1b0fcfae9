/** Links and addresses through iproute2: JSON output for reads, `ip -batch` so one change is one process. */
import type { Logger } from 'pino'
import { conflict, invalid, withContext } from '../errors.js'
import { parseCidr } from '../core/addr.js'
import { MTU_MAX, MTU_MIN } from '../core/network-plan.js'
import { type Runner, HostCommandError, runOk } from './exec.js'
import type { BridgeSpec, LinkInfo, VethSpec } from './host.js'
import { checkIfName, checkMac, checkTag } from '../core/names.js'

interface IpLinkJson {
  ifname: string
  ifalias?: string
  master?: string
  mtu: number
  address?: string
  flags?: string[]
  linkinfo?: { info_kind?: string }
}

function checkMtu(mtu: number): void {
  if (!Number.isInteger(mtu) || mtu < MTU_MIN || mtu > MTU_MAX) throw invalid(`MTU ${mtu} is outside ${MTU_MIN}..${MTU_MAX}`)
}

function checkCidrText(text: string): void {
  if (!parseCidr(text)) throw invalid(`address "${text}" is not a valid CIDR`)
}

/** Throws when an existing link is not the one tsnet means: another owner's, or another kind. */
function refuseUnowned(name: string, hasAlias: string | undefined, hasKind: string | undefined, alias: string, kind: string): void {
  if (hasAlias !== alias) {
    throw conflict(`a link named ${name} already exists and is not tsnet's (${hasAlias ? `it belongs to ${hasAlias}` : 'it has no tsnet tag'})`)
  }
  if (hasKind !== kind) throw conflict(`link ${name} exists but is a ${hasKind ?? 'plain'} device, not a ${kind}`)
}

export class Links {
  constructor(private readonly runner: Runner) {}

  async get(name: string): Promise<LinkInfo | undefined> {
    checkIfName(name)
    const r = await this.runner.run('ip', ['-j', '-d', 'link', 'show', 'dev', name])
    if (r.code !== 0) {
      if (/does not exist|Cannot find device/i.test(r.stderr)) return undefined
      throw new HostCommandError(['ip', '-j', '-d', 'link', 'show', 'dev', name], r)
    }
    const [link] = JSON.parse(r.stdout) as IpLinkJson[]
    if (!link) return undefined
    return {
      name: link.ifname,
      ...(link.linkinfo?.info_kind ? { kind: link.linkinfo.info_kind } : {}),
      ...(link.ifalias ? { alias: link.ifalias } : {}),
      ...(link.master ? { master: link.master } : {}),
      mtu: link.mtu,
      ...(link.address ? { mac: link.address } : {}),
      up: (link.flags ?? []).includes('UP'),
    }
  }

  private batch(lines: string[]): Promise<string> {
    return runOk(this.runner, 'ip', ['-batch', '-'], { input: lines.join('\n') + '\n' })
  }

  private async checkOwned(name: string, alias: string, kind: string): Promise<LinkInfo | undefined> {
    const link = await this.get(name)
    if (link) refuseUnowned(name, link.alias, link.kind, alias, kind)
    return link
  }

  /** The `ip -batch` lines that bring one bridge to spec, given what the kernel has under its name. */
  private bridgeLines(spec: BridgeSpec, existing: LinkInfo | undefined): string[] {
    const lines: string[] = []
    if (!existing) {
      // The MTU is set after creation: only then does the kernel keep it when the last port goes
      // (an MTU given to `link add` is auto-adjusted back to 1500).
      lines.push(`link add name ${spec.name} address ${spec.mac} type bridge`)
      lines.push(`link set dev ${spec.name} alias ${spec.alias}`)
      lines.push(`link set dev ${spec.name} mtu ${spec.mtu}`)
    } else if (existing.mtu !== spec.mtu) {
      lines.push(`link set dev ${spec.name} mtu ${spec.mtu}`)
    }
    lines.push(`link set dev ${spec.name} group ${spec.group}`)
    for (const a of spec.addresses) lines.push(`addr replace ${a} dev ${spec.name}${a.includes(':') ? ' nodad' : ''}`)
    lines.push(`link set dev ${spec.name} up`)
    return lines
  }

  private checkBridgeSpec(spec: BridgeSpec): void {
    checkIfName(spec.name, 'bridge name')
    checkTag(spec.alias, 'link alias')
    checkMac(spec.mac)
    checkMtu(spec.mtu)
    spec.addresses.forEach(checkCidrText)
    if (!Number.isInteger(spec.group) || spec.group < 0 || spec.group > 0xffffffff) throw invalid(`device group ${spec.group} is not a 32-bit number`)
  }

  async ensureBridge(spec: BridgeSpec, log: Logger): Promise<void> {
    this.checkBridgeSpec(spec)
    const existing = await this.checkOwned(spec.name, spec.alias, 'bridge')
    try {
      await this.batch(this.bridgeLines(spec, existing))
    } catch (err) {
      if (!existing) await this.deleteQuietly(spec.name, spec.alias, log)
      throw withContext(err, `setting up bridge ${spec.name}${existing ? '' : ' (rolled back: bridge removed)'}`)
    }
    log.info({ host: existing ? 'bridge.updated' : 'bridge.created', bridge: spec.name, mtu: spec.mtu, addresses: spec.addresses }, existing ? 'bridge brought to spec' : 'bridge created')
  }

  /**
   * Many bridges with one read of the link table and one `ip -batch` (the boot reconcile of
   * thousands of networks). If the batch fails, each bridge is retried alone so one bad bridge
   * does not hold back the others; the errors come back per bridge.
   */
  async ensureBridges(specs: BridgeSpec[], log: Logger): Promise<Map<string, unknown>> {
    const failed = new Map<string, unknown>()
    const json = await runOk(this.runner, 'ip', ['-j', '-d', 'link', 'show'])
    const links = new Map((JSON.parse(json || '[]') as IpLinkJson[]).map((l) => [l.ifname.split('@')[0] as string, l]))
    const lines: string[] = []
    const todo: BridgeSpec[] = []
    for (const spec of specs) {
      try {
        this.checkBridgeSpec(spec)
        const l = links.get(spec.name)
        if (l) refuseUnowned(spec.name, l.ifalias, l.linkinfo?.info_kind, spec.alias, 'bridge')
        lines.push(...this.bridgeLines(spec, l ? { name: spec.name, mtu: l.mtu, up: true } : undefined))
        todo.push(spec)
      } catch (err) {
        failed.set(spec.name, err)
      }
    }
    if (lines.length === 0) return failed
    try {
      await this.batch(lines)
      log.info({ host: 'bridges.ensured', bridges: todo.length, created: todo.filter((s) => !links.has(s.name)).map((s) => s.name) }, 'bridges brought to spec')
    } catch {
      for (const spec of todo) await this.ensureBridge(spec, log).catch((err: unknown) => failed.set(spec.name, err))
    }
    return failed
  }

  async ensureVeth(spec: VethSpec, log: Logger): Promise<void> {
    checkIfName(spec.hostName)
    checkIfName(spec.peerName)
    checkIfName(spec.bridge, 'bridge name')
    checkTag(spec.alias, 'link alias')
    checkMac(spec.mac)
    checkMtu(spec.mtu)
    const attach = `link set dev ${spec.hostName} master ${spec.bridge} up`
    // The usual case first, in one process: the pair does not exist yet.
    const created = await this.batch([
      `link add name ${spec.hostName} mtu ${spec.mtu} type veth peer name ${spec.peerName} mtu ${spec.mtu} address ${spec.mac}`,
      `link set dev ${spec.hostName} alias ${spec.alias}`,
      attach,
    ]).then(() => true, async (err: unknown) => {
      if (err instanceof HostCommandError && /File exists/i.test(err.result.stderr)) return false
      await this.deleteQuietly(spec.hostName, spec.alias, log)
      throw withContext(err, `setting up veth ${spec.hostName} (rolled back: veth removed)`)
    })
    if (created) {
      log.info({ host: 'veth.created', veth: spec.hostName, peer: spec.peerName, bridge: spec.bridge, mac: spec.mac, mtu: spec.mtu }, 'veth pair created')
      return
    }
    // A name is taken: a retried call (our veth) is brought to spec; anything else is refused.
    const existing = await this.checkOwned(spec.hostName, spec.alias, 'veth')
    if (!existing) throw conflict(`cannot create veth ${spec.hostName}/${spec.peerName}: a link with one of these names already exists`)
    try {
      await this.batch([attach])
    } catch (err) {
      throw withContext(err, `setting up veth ${spec.hostName}`)
    }
  }

  async deleteOwned(name: string, alias: string, log: Logger): Promise<void> {
    checkTag(alias, 'link alias')
    const link = await this.get(name)
    if (!link) return
    if (link.alias !== alias) {
      log.warn({ link: name, alias: link.alias }, 'not deleting a link tsnet does not own')
      return
    }
    const r = await this.runner.run('ip', ['link', 'del', 'dev', name])
    if (r.code !== 0 && !/Cannot find device|does not exist/i.test(r.stderr)) throw new HostCommandError(['ip', 'link', 'del', 'dev', name], r)
    log.info({ host: 'link.deleted', link: name }, 'link deleted')
  }

  /** Rollback: deletes the link if it is ours or untagged (made by the failed call before its alias was set). */
  private async deleteQuietly(name: string, alias: string, log: Logger): Promise<void> {
    const link = await this.get(name).catch(() => undefined)
    if (!link || (link.alias !== undefined && link.alias !== alias)) return
    const r = await this.runner.run('ip', ['link', 'del', 'dev', name])
    if (r.code === 0) log.info({ host: 'link.deleted', link: name }, 'rolled back: link deleted')
  }

  async listOwned(prefix: string): Promise<Array<{ name: string; alias: string }>> {
    const json = await runOk(this.runner, 'ip', ['-j', 'link', 'show'])
    return (JSON.parse(json || '[]') as IpLinkJson[]).flatMap((l) =>
      l.ifalias?.startsWith(prefix) ? [{ name: l.ifname.split('@')[0] as string, alias: l.ifalias }] : [])
  }

  async routedPrefixes(): Promise<string[]> {
    const out: string[] = []
    for (const family of ['-4', '-6']) {
      const json = await runOk(this.runner, 'ip', ['-j', family, 'route', 'show', 'table', 'main'])
      for (const r of JSON.parse(json || '[]') as Array<{ dst?: string }>) {
        if (!r.dst || r.dst === 'default') continue
        out.push(r.dst.includes('/') ? r.dst : `${r.dst}/${family === '-4' ? 32 : 128}`)
      }
    }
    return out
  }

  async defaultRouteMtu(): Promise<number | undefined> {
    const json = await runOk(this.runner, 'ip', ['-j', '-4', 'route', 'show', 'default'])
    const [route] = JSON.parse(json || '[]') as Array<{ dev?: string }>
    if (!route?.dev) return undefined
    return (await this.get(route.dev))?.mtu
  }
}
