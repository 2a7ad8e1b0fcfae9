/**
 * The oracle's own address parsing, independent of tsnet's (src/core/addr.ts): IPv4 as a strict
 * dotted quad, IPv6 through the WHATWG URL parser (which canonicalises), values as bigints.
 */
export interface IpValue {
  family: 4 | 6
  value: bigint
}
export interface CidrValue extends IpValue {
  bits: number
  /** The first address of the prefix. */
  network: bigint
  /** The last address of the prefix. */
  last: bigint
}

const V4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/

export function ipValue(text: unknown): IpValue | undefined {
  if (typeof text !== 'string') return undefined
  if (V4.test(text)) return { family: 4, value: text.split('.').reduce((acc, b) => (acc << 8n) + BigInt(b), 0n) }
  if (!/^[0-9A-Fa-f:.]+$/.test(text) || !text.includes(':')) return undefined
  let host: string
  try {
    host = new URL(`http://[${text}]/`).hostname
  } catch {
    return undefined
  }
  const inner = host.slice(1, -1)
  const [head = '', tail] = inner.split('::')
  const h = head === '' ? [] : head.split(':')
  const t = tail === undefined ? [] : tail === '' ? [] : tail.split(':')
  const groups = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t]
  if (groups.length !== 8) return undefined
  return { family: 6, value: groups.reduce((acc, g) => (acc << 16n) + BigInt(`0x${g}`), 0n) }
}

export function cidrValue(text: unknown): CidrValue | undefined {
  if (typeof text !== 'string') return undefined
  const m = /^([^/]+)\/(\d{1,3})$/.exec(text)
  if (!m) return undefined
  const ip = ipValue(m[1])
  const bits = Number(m[2])
  if (!ip || bits > (ip.family === 4 ? 32 : 128)) return undefined
  const total = ip.family === 4 ? 32 : 128
  const size = 1n << BigInt(total - bits)
  const network = (ip.value / size) * size
  return { ...ip, bits, network, last: network + size - 1n }
}

export const contains = (p: CidrValue, ip: IpValue): boolean => p.family === ip.family && ip.value >= p.network && ip.value <= p.last
export const overlaps = (a: CidrValue, b: CidrValue): boolean => a.family === b.family && a.network <= b.last && b.network <= a.last
export const sameIp = (a: IpValue, b: IpValue): boolean => a.family === b.family && a.value === b.value
