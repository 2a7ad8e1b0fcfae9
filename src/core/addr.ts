/**
 * Address arithmetic on bigints. Parsing and validation go through ip-cidr / ip-address;
 * everything after parsing is plain bigint math so the allocator stays fast and exact.
 */
import IPCIDR from 'ip-cidr'
import { Address4, Address6 } from 'ip-address'

export type Family = 4 | 6
export interface Ip {
  readonly family: Family
  readonly value: bigint
}
/** A prefix in canonical form: `network` has no host bits set. */
export interface Prefix {
  readonly family: Family
  readonly network: bigint
  readonly bits: number
}

const DOTTED_QUAD = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/
const V6_CHARS = /^[0-9a-fA-F:.]+$/

export const familyBits = (f: Family): number => (f === 4 ? 32 : 128)

/** Parses a bare address (no mask, no zone). Undefined when it is not one. */
export function parseIp(text: string): Ip | undefined {
  if (typeof text !== 'string' || text.length > 45) return undefined
  if (DOTTED_QUAD.test(text)) return { family: 4, value: BigInt(new Address4(text).bigInteger().toString()) }
  if (V6_CHARS.test(text) && text.includes(':') && Address6.isValid(text)) {
    return { family: 6, value: BigInt(new Address6(text).bigInteger().toString()) }
  }
  return undefined
}

/** Parses `addr/bits`. Returns the address as written and the canonical prefix it lies in. */
export function parseCidr(text: string): { ip: Ip; prefix: Prefix } | undefined {
  if (typeof text !== 'string') return undefined
  const slash = text.indexOf('/')
  if (slash < 0) return undefined
  const ip = parseIp(text.slice(0, slash))
  const bitsText = text.slice(slash + 1)
  if (!ip || !/^\d{1,3}$/.test(bitsText)) return undefined
  const bits = Number(bitsText)
  if (bits > familyBits(ip.family) || !IPCIDR.isValidCIDR(text)) return undefined
  return { ip, prefix: { family: ip.family, network: ip.value & maskOf(ip.family, bits), bits } }
}

export function maskOf(family: Family, bits: number): bigint {
  const total = familyBits(family)
  const all = (1n << BigInt(total)) - 1n
  return all ^ ((1n << BigInt(total - bits)) - 1n)
}

export const prefixSize = (p: Prefix): bigint => 1n << BigInt(familyBits(p.family) - p.bits)
export const lastAddress = (p: Prefix): bigint => p.network + prefixSize(p) - 1n

export function prefixContains(p: Prefix, ip: Ip): boolean {
  return p.family === ip.family && ip.value >= p.network && ip.value <= lastAddress(p)
}

export function prefixesOverlap(a: Prefix, b: Prefix): boolean {
  return a.family === b.family && a.network <= lastAddress(b) && b.network <= lastAddress(a)
}

/** `inner` lies entirely inside `outer`. */
export function prefixWithin(inner: Prefix, outer: Prefix): boolean {
  return inner.family === outer.family && inner.bits >= outer.bits && prefixContains(outer, { family: inner.family, value: inner.network })
}

export function formatIp(ip: Ip): string {
  if (ip.family === 4) {
    const v = ip.value
    return [24n, 16n, 8n, 0n].map((s) => String((v >> s) & 255n)).join('.')
  }
  const groups: string[] = []
  for (let i = 7; i >= 0; i--) groups.push(((ip.value >> BigInt(i * 16)) & 0xffffn).toString(16))
  return new Address6(groups.join(':')).correctForm()
}

export const formatPrefix = (p: Prefix): string => `${formatIp({ family: p.family, value: p.network })}/${p.bits}`
export const formatCidr = (ip: Ip, bits: number): string => `${formatIp(ip)}/${bits}`

/** The `index`-th subnet of length `bits` inside `base`. */
export function nthSubnet(base: Prefix, bits: number, index: bigint): Prefix {
  return { family: base.family, network: base.network + index * (1n << BigInt(familyBits(base.family) - bits)), bits }
}

export const subnetCount = (base: Prefix, bits: number): bigint => (bits < base.bits ? 0n : 1n << BigInt(bits - base.bits))
