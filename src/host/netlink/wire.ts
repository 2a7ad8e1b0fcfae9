/**
 * The netlink wire format: message headers, attributes (TLVs, nested or not) and the fixed
 * headers of the rtnetlink families. Pure byte work, no socket. Netlink uses the host's byte
 * order; tsnet runs on little-endian machines only (x64, arm64) and the socket refuses others.
 */

const NLMSG_HDRLEN = 16
const NLA_HDRLEN = 4
/** The top two bits of an attribute type are flags (nested, network byte order). */
const NLA_TYPE_MASK = 0x3fff

export const align4 = (n: number): number => (n + 3) & ~3

// ---------------------------------------------------------------- attribute payloads

export const u8 = (n: number): Buffer => Buffer.from([n & 0xff])
export function u16(n: number): Buffer {
  const b = Buffer.alloc(2)
  b.writeUInt16LE(n)
  return b
}
export function u32(n: number): Buffer {
  const b = Buffer.alloc(4)
  b.writeUInt32LE(n >>> 0)
  return b
}
export function u16be(n: number): Buffer {
  const b = Buffer.alloc(2)
  b.writeUInt16BE(n)
  return b
}
/** A NUL-terminated string, as the kernel expects for names, kinds and aliases. */
export const str = (s: string): Buffer => Buffer.concat([Buffer.from(s, 'utf8'), Buffer.alloc(1)])

/** One attribute: header, payload, padding to 4 bytes. */
export function attr(type: number, payload: Buffer): Buffer {
  const len = NLA_HDRLEN + payload.length
  if (len > 0xffff) throw new RangeError(`netlink attribute ${type} is ${len} bytes, more than an attribute can hold`)
  const b = Buffer.alloc(align4(len))
  b.writeUInt16LE(len, 0)
  b.writeUInt16LE(type, 2)
  payload.copy(b, NLA_HDRLEN)
  return b
}

/** An attribute whose payload is other attributes (or, for VETH_INFO_PEER, a header then attributes). */
export const nest = (type: number, children: readonly Buffer[]): Buffer => attr(type, Buffer.concat(children))

// ---------------------------------------------------------------- attribute parsing

/** The attributes of one level, by type (a repeated type keeps its first occurrence, as the kernel does). */
export class Attrs {
  private readonly byType = new Map<number, Buffer>()

  constructor(buf: Buffer) {
    let off = 0
    while (off + NLA_HDRLEN <= buf.length) {
      const len = buf.readUInt16LE(off)
      const type = buf.readUInt16LE(off + 2) & NLA_TYPE_MASK
      if (len < NLA_HDRLEN || off + len > buf.length) throw new Error(`malformed netlink attribute (type ${type}, length ${len})`)
      if (!this.byType.has(type)) this.byType.set(type, buf.subarray(off + NLA_HDRLEN, off + len))
      off += align4(len)
    }
  }

  has(type: number): boolean {
    return this.byType.has(type)
  }
  raw(type: number): Buffer | undefined {
    return this.byType.get(type)
  }
  /** A fixed-width attribute read by `read`, or undefined when absent or too short. */
  private fixed(type: number, width: number, read: (b: Buffer) => number): number | undefined {
    const b = this.byType.get(type)
    return b && b.length >= width ? read(b) : undefined
  }
  u8(type: number): number | undefined {
    return this.fixed(type, 1, (b) => b.readUInt8(0))
  }
  u16(type: number): number | undefined {
    return this.fixed(type, 2, (b) => b.readUInt16LE(0))
  }
  u16be(type: number): number | undefined {
    return this.fixed(type, 2, (b) => b.readUInt16BE(0))
  }
  u32(type: number): number | undefined {
    return this.fixed(type, 4, (b) => b.readUInt32LE(0))
  }
  /** A string attribute without its terminating NUL (and anything after it). */
  str(type: number): string | undefined {
    const b = this.byType.get(type)
    if (!b) return undefined
    const nul = b.indexOf(0)
    return b.subarray(0, nul < 0 ? b.length : nul).toString('utf8')
  }
  nested(type: number): Attrs | undefined {
    const b = this.byType.get(type)
    return b ? new Attrs(b) : undefined
  }
}

// ---------------------------------------------------------------- messages

export interface NlMessage {
  type: number
  flags: number
  seq: number
  /** The sender's port: 0 for the kernel. */
  port: number
  /** Everything after the 16-byte header. */
  payload: Buffer
}

export function encodeMessage(type: number, flags: number, seq: number, port: number, body: readonly Buffer[]): Buffer {
  const payload = Buffer.concat(body)
  const b = Buffer.alloc(NLMSG_HDRLEN + payload.length)
  b.writeUInt32LE(b.length, 0)
  b.writeUInt16LE(type, 4)
  b.writeUInt16LE(flags, 6)
  b.writeUInt32LE(seq >>> 0, 8)
  b.writeUInt32LE(port >>> 0, 12)
  payload.copy(b, NLMSG_HDRLEN)
  return b
}

/** Splits one datagram into its messages; throws on a malformed header (the datagram is then dropped whole). */
export function decodeMessages(buf: Buffer): NlMessage[] {
  const out: NlMessage[] = []
  let off = 0
  while (off + NLMSG_HDRLEN <= buf.length) {
    const len = buf.readUInt32LE(off)
    if (len < NLMSG_HDRLEN || off + len > buf.length) throw new Error(`malformed netlink message (length ${len} at offset ${off} of ${buf.length})`)
    out.push({
      type: buf.readUInt16LE(off + 4),
      flags: buf.readUInt16LE(off + 6),
      seq: buf.readUInt32LE(off + 8),
      port: buf.readUInt32LE(off + 12),
      payload: buf.subarray(off + NLMSG_HDRLEN, off + len),
    })
    off += align4(len)
  }
  return out
}

/** The errno of an NLMSG_ERROR (0 is an acknowledgement) or of an NLMSG_DONE that ends a failed dump. */
export function errnoOf(msg: NlMessage): number {
  return msg.payload.length >= 4 ? -msg.payload.readInt32LE(0) : 0
}

// ---------------------------------------------------------------- family headers

type FieldType = 'u8' | 'u16' | 'i32' | 'u32'

/**
 * A fixed family header (ifinfomsg, ifaddrmsg, rtmsg, ndmsg) as a table of field offsets and
 * widths, so each header is declared once and encoded and decoded by the same two loops.
 */
function header<T extends { [K in keyof T]: number }>(name: string, len: number, layout: { [K in keyof T]: [offset: number, type: FieldType] }) {
  const fields = Object.entries(layout) as Array<[keyof T & string, [number, FieldType]]>
  return {
    len,
    write(h: Partial<T>): Buffer {
      const b = Buffer.alloc(len)
      for (const [k, [at, type]] of fields) {
        const v = h[k] ?? 0
        if (type === 'u8') b.writeUInt8(v & 0xff, at)
        else if (type === 'u16') b.writeUInt16LE(v & 0xffff, at)
        else if (type === 'i32') b.writeInt32LE(v, at)
        else b.writeUInt32LE(v >>> 0, at)
      }
      return b
    },
    read(p: Buffer): T {
      if (p.length < len) throw new Error(`short ${name}`)
      const out = {} as Record<keyof T, number>
      for (const [k, [at, type]] of fields) {
        out[k] = type === 'u8' ? p.readUInt8(at) : type === 'u16' ? p.readUInt16LE(at) : type === 'i32' ? p.readInt32LE(at) : p.readUInt32LE(at)
      }
      return out as unknown as T
    },
  }
}

export interface IfInfo { family: number; type: number; index: number; flags: number; change: number }
const IFINFO = header<IfInfo>('ifinfomsg', 16, { family: [0, 'u8'], type: [2, 'u16'], index: [4, 'i32'], flags: [8, 'u32'], change: [12, 'u32'] })
export const IFINFOMSG_LEN = IFINFO.len
export const ifinfomsg = (h: Partial<IfInfo> = {}): Buffer => IFINFO.write(h)
export const readIfinfomsg = (p: Buffer): IfInfo => IFINFO.read(p)

export interface IfAddr { family: number; prefixLength: number; flags: number; scope: number; index: number }
const IFADDR = header<IfAddr>('ifaddrmsg', 8, { family: [0, 'u8'], prefixLength: [1, 'u8'], flags: [2, 'u8'], scope: [3, 'u8'], index: [4, 'u32'] })
export const IFADDRMSG_LEN = IFADDR.len
export const ifaddrmsg = (h: IfAddr): Buffer => IFADDR.write(h)
export const readIfaddrmsg = (p: Buffer): IfAddr => IFADDR.read(p)

export interface RtMsg { family: number; dstLength: number; table: number; protocol: number; scope: number; type: number }
const RT = header<RtMsg>('rtmsg', 12, { family: [0, 'u8'], dstLength: [1, 'u8'], table: [4, 'u8'], protocol: [5, 'u8'], scope: [6, 'u8'], type: [7, 'u8'] })
export const RTMSG_LEN = RT.len
export const rtmsg = (h: Partial<RtMsg>): Buffer => RT.write(h)
export const readRtmsg = (p: Buffer): RtMsg => RT.read(p)

export interface NdMsg { family: number; index: number; state: number; flags: number; type: number }
const ND = header<NdMsg>('ndmsg', 12, { family: [0, 'u8'], index: [4, 'i32'], state: [8, 'u16'], flags: [10, 'u8'], type: [11, 'u8'] })
export const NDMSG_LEN = ND.len
export const ndmsg = (h: Partial<NdMsg>): Buffer => ND.write(h)
export const readNdmsg = (p: Buffer): NdMsg => ND.read(p)
