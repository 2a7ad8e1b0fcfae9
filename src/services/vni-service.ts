/**
 * AllocateNetwork and FreeNetwork, which Swarm's leader calls for a global-scope driver: every
 * refusal Swarm can still act on, and a VNI that Swarm's raft store then keeps in the options it
 * gives every node's CreateNetwork. Swarm calls AllocateNetwork again for every network when a
 * manager becomes leader, so a VNI in the options is taken as it is (modes/overlay-vni.ts).
 * Allocation is asynchronous for the user: a refusal shows in the daemon's log only, so each is
 * also logged here as an error naming the network.
 */
import type { Logger } from 'pino'
import { DAEMON_KEYS } from '../core/docker-keys.js'
import { checkOptionKeys } from '../core/network-plan.js'
import { checkId } from '../core/names.js'
import { invalid, withContext } from '../errors.js'
import type { Host } from '../host/host.js'
import { overlayMode } from '../modes/overlay.js'
import { OVERLAY_OPTION, encryptionRefusal, parsePort, parseVni, type VniRange } from '../modes/overlay-options.js'
import { claimVni, releaseVni, type VniClaims } from '../modes/overlay-vni.js'
import { COMMON_OPTION } from '../core/docker-keys.js'
import type { AllocateNetworkRequest, NetworkRef } from '../protocol/types.js'
import type { Store } from '../store/store.js'
import { KeyedLock } from '../util/keyed-lock.js'
import { short } from './network-state.js'

export const VNIS_META = 'overlay-vnis'

export interface VniSettings {
  scope: 'local' | 'global'
  range: VniRange
  port: number
}

export class VniService {
  private claims: VniClaims = {}
  private readonly lock = new KeyedLock()

  constructor(private readonly store: Store, private readonly host: Host, private readonly settings: VniSettings) {}

  async load(): Promise<void> {
    const saved = (await this.store.list<{ claims: VniClaims }>('meta')).find((r) => r.id === VNIS_META)?.value
    if (saved) this.claims = saved.claims
  }

  allocate(req: AllocateNetworkRequest, log: Logger): Promise<{ Options: Record<string, string> }> {
    const options = { ...(req.Options ?? {}) }
    // A local-scope plugin is never asked (Swarm allocates only for global drivers): answer as before.
    if (this.settings.scope !== 'global') return Promise.resolve({ Options: options })
    return this.lock.run('claims', async () => {
      try {
        checkId('network ID', req.NetworkID)
        await this.check(options, req)
        const given = options[OVERLAY_OPTION.vni]
        const decision = claimVni(this.claims, req.NetworkID, given !== undefined ? parseVni(given) : undefined, this.settings.range)
        if (decision.claims !== this.claims) {
          await this.store.put('meta', VNIS_META, { claims: decision.claims })
          this.claims = decision.claims
        }
        if (decision.evicted) {
          log.warn({ network: req.NetworkID, vni: decision.vni, previously: decision.evicted }, "Swarm's options give this VNI to this network: the claim left for another network by an earlier term as leader is dropped")
        }
        const port = options[OVERLAY_OPTION.port] ?? String(this.settings.port)
        log.info({ network: req.NetworkID, vni: decision.vni, port: Number(port), how: decision.how },
          'overlay network allocated (services on it need --endpoint-mode dnsrr: VIPs exist only on Docker\'s own overlay driver)')
        return { Options: { ...options, [COMMON_OPTION.mode]: 'overlay', [OVERLAY_OPTION.vni]: String(decision.vni), [OVERLAY_OPTION.port]: port } }
      } catch (err) {
        const failure = withContext(err, `allocating swarm network ${short(req.NetworkID)}`)
        log.error({ network: req.NetworkID, err: failure }, 'overlay network not allocated: Swarm shows this only in the daemon log')
        throw failure
      }
    })
  }

  /** What Swarm must not keep: any refusal CreateNetwork would make on every node later. */
  private async check(options: Record<string, string>, req: AllocateNetworkRequest): Promise<void> {
    const mode = options[COMMON_OPTION.mode]
    if (mode !== undefined && mode !== 'overlay') {
      throw invalid(`${COMMON_OPTION.mode}=${mode} makes a network of one host, which Swarm cannot spread over its nodes: a global-scope tsnet makes overlay networks (leave the option out)`)
    }
    checkOptionKeys(options, overlayMode, DAEMON_KEYS)
    if (options[OVERLAY_OPTION.encrypted] !== undefined) throw invalid(encryptionRefusal((await this.host.facts()).linkKinds.has('wireguard')))
    if (options[COMMON_OPTION.allow] !== undefined) throw invalid(`${COMMON_OPTION.allow} is not for overlay networks: nothing is routed into them on a host`)
    const v4 = req.IPv4Data ?? []
    if (v4.length > 1) throw invalid(`an overlay network takes one IPv4 subnet, not ${v4.length} (${v4.map((d) => d.Pool).join(', ')}): create one network per subnet`)
    if (options[OVERLAY_OPTION.port] !== undefined) parsePort(options[OVERLAY_OPTION.port] ?? '')
  }

  free(req: NetworkRef, log: Logger): Promise<object> {
    return this.lock.run('claims', async () => {
      const next = releaseVni(this.claims, req.NetworkID)
      if (next === this.claims) return {}
      await this.store.put('meta', VNIS_META, { claims: next })
      log.info({ network: req.NetworkID, vni: this.claims[req.NetworkID] }, 'overlay network freed: its VNI can be given again')
      this.claims = next
      return {}
    })
  }
}
