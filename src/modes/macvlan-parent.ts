/**
 * The parent of a macvlan network, decided purely from what the host showed at plan time: an
 * interface that is there (used as it is), or an 802.1Q sub-interface `<link>.<VLAN ID>` that
 * tsnet makes on an interface that is there. Every refusal says what to do instead.
 */
import { invalid, quote } from '../errors.js'
import type { HostFacts } from '../core/host-facts.js'
import { checkIfName } from '../core/names.js'
import { type LinkObject, TSNET_TAG_PREFIX } from '../core/objects.js'
import type { MacvlanSpec } from '../core/records.js'

/** The tag of a sub-interface tsnet made: one for every network that uses it, so all want the same object. */
export const VLAN_ALIAS = 'tsnet:vlan'

/** `eth0.10` → eth0 and VLAN 10, as Docker reads it (one dot, a number after it). */
export function vlanForm(name: string): { link: string; id: number } | undefined {
  const m = /^([A-Za-z0-9_-]+)\.(\d{1,5})$/.exec(name)
  return m ? { link: m[1] as string, id: Number(m[2]) } : undefined
}

/** The links planning must see for `-o parent=name`: the parent, and the link its sub-interface would sit on. */
export function parentLinks(name: string): string[] {
  checkIfName(name, 'parent interface (-o parent)')
  const form = vlanForm(name)
  return form ? [name, form.link] : [name]
}

export interface ParentPlan {
  spec: Pick<MacvlanSpec, 'parent' | 'parentCreated' | 'vlan'>
  /** The MTU and MAC the parent has (or, for a sub-interface still to make, will have). */
  mtu: number
  mac?: string
}

const opt = (name: string) => `-o parent=${name}`

/** A link that can carry macvlan children: a LAN interface that is up, not tsnet's, not a bridge port. */
function checkUsable(l: LinkObject, parent: string): void {
  const what = l.name === parent ? l.name : `${l.name} (which ${parent} would be made on)`
  if (l.alias.startsWith(TSNET_TAG_PREFIX) && l.alias !== VLAN_ALIAS) {
    throw invalid(`${opt(parent)}: ${what} is a link tsnet made for itself (${l.alias}), not an interface on a LAN`)
  }
  if (l.master !== undefined) {
    throw invalid(`${opt(parent)}: ${what} is a port of ${l.master}, and the kernel hands every frame of a bridge port to its bridge; use ${l.master} as the parent instead`)
  }
  if (!l.up) {
    throw invalid(`${opt(parent)}: ${what} is down, so the containers' interfaces would have no link; bring it up first (ip link set ${l.name} up)`)
  }
}

export function planParent(parent: string, links: ReadonlyMap<string, LinkObject>, facts: HostFacts): ParentPlan {
  checkIfName(parent, 'parent interface (-o parent)')
  if (parent === 'lo') throw invalid(`${opt(parent)}: the loopback interface carries no LAN, so it cannot be a macvlan parent`)
  const have = links.get(parent)
  if (have) {
    checkUsable(have, parent)
    // A sub-interface tsnet made for another network: this one wants it too, so it stays while either does.
    const ours = have.alias === VLAN_ALIAS && have.type === 'vlan' && have.vlan !== undefined
    return {
      spec: { parent, parentCreated: ours, ...(ours && have.vlan ? { vlan: { link: have.vlan.parent, id: have.vlan.id, mtu: have.mtu } } : {}) },
      mtu: have.mtu,
      ...(have.mac ? { mac: have.mac } : {}),
    }
  }
  const form = vlanForm(parent)
  if (!form) {
    throw invalid(`${opt(parent)}: there is no interface named ${quote(parent)} on this host (tsnet creates only 802.1Q sub-interfaces, named <interface>.<VLAN ID> such as eth0.10)`)
  }
  const base = links.get(form.link)
  if (!base) throw invalid(`${opt(parent)}: there is no interface named ${parent} on this host, nor ${form.link} to make it on as an 802.1Q sub-interface with VLAN ${form.id}`)
  if (form.id < 1 || form.id > 4094) throw invalid(`${opt(parent)}: there is no interface named ${parent}, and ${form.id} is not a VLAN ID tsnet can make it with (1 to 4094)`)
  checkUsable(base, parent)
  if (!facts.linkKinds.has('vlan')) {
    throw invalid(`${opt(parent)}: there is no interface named ${parent}, and tsnet cannot create it as an 802.1Q sub-interface of ${base.name} with VLAN ${form.id}: ` +
      `this kernel has no vlan support (it refuses to create a vlan link: operation not supported); create ${parent} another way, or use a kernel with 802.1Q (CONFIG_VLAN_8021Q)`)
  }
  return {
    spec: { parent, parentCreated: true, vlan: { link: base.name, id: form.id, mtu: base.mtu } },
    mtu: base.mtu,
    ...(base.mac ? { mac: base.mac } : {}),
  }
}

/** The sub-interface tsnet makes for a network whose parent it created. */
export function vlanObject(spec: MacvlanSpec): LinkObject | undefined {
  if (!spec.parentCreated || !spec.vlan) return undefined
  return {
    kind: 'link', name: spec.parent, type: 'vlan', alias: VLAN_ALIAS, mtu: spec.vlan.mtu, up: true, recreate: true,
    vlan: { parent: spec.vlan.link, id: spec.vlan.id },
  }
}
