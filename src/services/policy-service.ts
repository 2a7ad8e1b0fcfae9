/**
 * Policies after creation: `tsnet policy show|set|clear`, and keeping the rules that name
 * Docker networks in step with Docker's names (learnt in the background).
 */
import type { Logger } from 'pino'
import { canonicalPolicy, parsePolicy, policyNetworkNames } from '../core/policy.js'
import type { NetworkRecord } from '../core/records.js'
import { invalid, notFound, quote, withContext } from '../errors.js'
import { modeOf } from '../modes/index.js'
import type { NetworkDriver } from './network-driver.js'
import { netOwner } from './network-state.js'

export class PolicyService {
  constructor(private readonly driver: NetworkDriver) {}

  private get state() {
    return this.driver.state
  }

  /** `tsnet policy set`: replaces a network's policy (the empty text removes it) and applies it at once. */
  setPolicy(ref: string, text: string, log: Logger) {
    const n = this.findNetwork(ref)
    const policy = canonicalPolicy(text)
    if (n.internal && policy !== '') throw invalid(`network ${this.state.label(n)} is internal: it accepts no traffic from other networks, so it takes no policy`)
    if (policy !== '' && !modeOf(n).supports.policy) throw invalid(`network ${this.state.label(n)} is a ${n.mode} network: host netfilter never sees its traffic, so it takes no policy`)
    return this.driver.lock.run(n.id, async () => {
      const current = this.state.knownNetwork(n.id)
      const { policy: _old, ...rest } = current
      const updated = (policy === '' ? rest : { ...rest, policy }) as NetworkRecord
      const doing = `changing the policy of network ${this.state.label(n)}`
      let objects
      try {
        objects = this.state.renderNetwork(updated) // a policy too large for the network's containers is refused here
      } catch (err) {
        throw withContext(err, doing)
      }
      await this.driver.engine.change(new Map([[netOwner(n.id), objects]]), {
        doing,
        persist: () => this.state.store.put('networks', n.id, updated),
        log,
      })
      this.state.networks.set(n.id, updated)
      log.info({ network: n.id, policy }, 'network policy changed')
      return this.policyOf(updated)
    })
  }

  /** Policies of one network or all, with the names they resolve to right now. */
  policies(ref?: string) {
    const list = ref ? [this.findNetwork(ref)] : [...this.state.networks.values()]
    return list.map((n) => this.policyOf(n))
  }

  private policyOf(n: NetworkRecord) {
    const rules = n.policy ? parsePolicy(n.policy) : []
    const resolved = Object.fromEntries(policyNetworkNames(rules).map((name) => [name, this.state.directory.resolve(name)]))
    return { network: n.id, name: this.state.directory.nameOf(n.id) ?? '', internal: n.internal, allow: n.policy ?? '', resolved }
  }

  /** A tsnet network by Docker name, full ID, or unique ID prefix. */
  private findNetwork(ref: string): NetworkRecord {
    if (typeof ref !== 'string' || ref === '' || ref.length > 128) throw invalid('name a network by its Docker name or ID')
    const byName = this.state.directory.lookup(ref)
    const named = byName ? this.state.networks.get(byName.id) : undefined
    if (named) return named
    const byId = [...this.state.networks.values()].filter((n) => n.id.startsWith(ref))
    if (byId.length === 1) return byId[0] as NetworkRecord
    if (byId.length > 1) throw invalid(`${quote(ref)} matches ${byId.length} tsnet networks; give more of the ID`)
    throw notFound(`no tsnet network is called ${quote(ref)} (names come from Docker's API in the background: is Docker reachable, and is the network a tsnet one?)`)
  }

  /**
   * After Docker's names changed: every network keeps Docker's own subnets out, and policies
   * may name networks; each network's objects are rendered again and only what changed is applied.
   */
  async namesChanged(log: Logger): Promise<void> {
    for (const n of [...this.state.networks.values()]) {
      await this.driver.lock.run(n.id, async () => {
        const current = this.state.networks.get(n.id)
        if (!current) return
        await this.driver.engine.change(new Map([[netOwner(n.id), this.state.renderNetwork(current)]]), { doing: `following Docker's names for network ${this.state.label(current)}`, log })
      })
    }
  }
}
