/**
 * Checks and byte forms of the values that reach the kernel over netlink: IP addresses, CIDRs,
 * MACs, link references and bounded numbers. Every check throws a TsnetError ('invalid') whose
 * sentence names the value, so bad input is refused before anything is sent.
 */
import { invalid, quote } from '../../errors.js'
import { type Family, formatIp, parseCidr, parseIp } from '../../core/addr.js'
import { checkIfName, checkMac } from '../../core/names.js'
import { AF } from './constants.js'
import { Attrs, type NlMessage } from './wire.js'

export interface IpValue {
  family: Family
  bytes: Buffer
  text: string
}

export const afOf = (family: Family): number => (family === 4 ? AF.INET : AF.INET6)
export const familyOfAf = (af: number): Family | undefined => (af === AF.INET ? 4 : af === AF.INET6 ? 6 : undefined)

/** A dump reply of one message type opened: its fixed header, IP family and attributes; undefined for another type or family. */
export function openReply<H extends { family: number }>(msg: NlMessage, type: number, headerLen: number, read: (p: Buffer) => H): { h: H; family: Family; a: Attrs } | undefined {
  if (msg.type !== type || msg.payload.length < headerLen) return undefined
  const h = read(msg.payload)
  const family = familyOfAf(h.family)
  return family ? { h, family, a: new Attrs(msg.payload.subarray(headerLen)) } : undefined
}

function bytesOf(family: Family, value: bigint): Buffer {
  const n = family === 4 ? 4 : 16
  const b = Buffer.alloc(n)
  for (let i = n - 1; i >= 0; i--) {
    b[i] = Number(value & 0xffn)
    value >>= 8n
  }
  return b
}

export function checkIp(text: string, what = 'IP address'): IpValue {
  const ip = parseIp(text)
  if (!ip) throw invalid(`${what} ${quote(text)} is not an IPv4 or IPv6 address`)
  return { family: ip.family, bytes: bytesOf(ip.family, ip.value), text: formatIp(ip) }
}

export function checkCidrValue(text: string, what = 'address'): IpValue & { prefixLength: number } {
  const c = parseCidr(text)
  if (!c) throw invalid(`${what} ${quote(text)} is not of the form address/prefix-length`)
  return { family: c.ip.family, bytes: bytesOf(c.ip.family, c.ip.value), text: formatIp(c.ip), prefixLength: c.prefix.bits }
}

/** The text form of an address attribute (4 or 16 bytes); undefined for any other length. */
export function ipText(b: Buffer | undefined): string | undefined {
  if (!b || (b.length !== 4 && b.length !== 16)) return undefined
  let v = 0n
  for (const byte of b) v = (v << 8n) | BigInt(byte)
  return formatIp({ family: b.length === 4 ? 4 : 6, value: v })
}

export const macBytes = (mac: string): Buffer => Buffer.from(mac.split(':').map((h) => parseInt(h, 16)))

/** A MAC as the kernel reports it; undefined unless it is 6 bytes (tunnels and lo have other forms). */
export function macText(b: Buffer | undefined): string | undefined {
  if (!b || b.length !== 6) return undefined
  return [...b].map((x) => x.toString(16).padStart(2, '0')).join(':')
}

export const ZERO_MAC = '00:00:00:00:00:00'

/** A MAC for an FDB entry: a unicast MAC, or all zeros (the flood entry). */
export function checkFdbMac(mac: string): string {
  return mac === ZERO_MAC ? mac : checkMac(mac)
}

/** A link named by the caller: a valid interface name, or an ifindex. */
export type LinkRef = string | number

export function checkLinkRef(ref: LinkRef, what = 'interface name'): LinkRef {
  if (typeof ref === 'number') {
    if (!Number.isInteger(ref) || ref < 1 || ref > 0x7fffffff) throw invalid(`link index ${quote(ref)} is not a positive 32-bit number`)
    return ref
  }
  return checkIfName(ref, what)
}

/** How a link is named in sentences. */
export const linkWords = (ref: LinkRef): string => (typeof ref === 'number' ? `link with index ${ref}` : `link ${ref}`)

export function checkInt(value: number, min: number, max: number, what: string): number {
  if (!Number.isInteger(value) || value < min || value > max) throw invalid(`${what} ${quote(value)} is outside ${min}..${max}`)
  return value
}
