/**
 * A generated request and how it becomes bytes on the wire.
 *
 * Bodies are plain JSON values, except for placeholder strings (starting with \u0001) that are
 * expanded late: references to state that only exists at run time (the k-th pool tsnet handed
 * out, the k-th address it leased) and payloads too big or too deep to keep in the generated value
 * (a 1 MiB string, 100,000 nested arrays, a number token JSON.stringify cannot write). Expanding
 * late keeps generated values small, printable and shrinkable.
 */
import type { Json } from '../../fixtures/wire/loader.js'

export type Kind = 'valid' | 'semantic' | 'malformed'

/** Changes made to the encoded text (invalid JSON, odd bytes). */
export type TextMut =
  | { t: 'truncate'; at: number } // keep this fraction of the text
  | { t: 'append'; s: string }
  | { t: 'prepend'; s: string }
  | { t: 'replace'; s: string } // the whole body
  | { t: 'bytes'; at: number; hex: string } // splice raw bytes (invalid UTF-8 …) in at a fraction
  | { t: 'empty' }

export interface Op {
  /** Docker method, e.g. NetworkDriver.CreateNetwork (the URL path is "/" + this). */
  method: string
  kind: Kind
  /** Which generator made it, e.g. "semantic:CreateNetwork:gateway-outside". */
  tag: string
  /** null: an empty body, as Docker sends for calls without arguments. */
  body: Json
  text?: TextMut
  /** HTTP verb other than POST, or a different URL than "/" + method. */
  http?: { verb?: 'GET' | 'PUT' | 'DELETE'; url?: string; contentType?: string }
}

/** Two requests sent at the same time. */
export interface Parallel {
  parallel: [Op, Op]
}

export type Step = Op | Parallel

export const isParallel = (s: Step): s is Parallel => 'parallel' in s

// ---------------------------------------------------------------- placeholders

const P = '\u0001'
export const poolRef = (k: number) => `${P}POOL:${k}`
export const leasePoolRef = (k: number) => `${P}LEASEPOOL:${k}`
/**
 * The address of the k-th lease: as leased (form 0), with the pool's mask (1), or, for an IPv4
 * lease a.b.c.d, written as the IPv6 addresses ::a.b.c.d (2, same 32-bit value) and ::ffff:a.b.c.d (3).
 */
export const leaseRef = (k: number, form: boolean | 0 | 1 | 2 | 3 = 0) => `${P}LEASE:${k}:${Number(form)}`
/** A string of n copies of a unit (see UNITS), written into the JSON text directly. */
export const huge = (n: number, unit: keyof typeof UNITS) => `${P}HUGE:${n}:${unit}`
/** `depth` nested arrays or objects around 1. */
export const deep = (depth: number, shape: 'arr' | 'obj') => `${P}DEEP:${depth}:${shape}`
/** A number token JSON.stringify cannot produce (1e400, -0, 1E+2, 20 digits …). */
export const numTok = (tok: string) => `${P}NUM:${tok}`

/** Units of huge strings, as JSON-encoded text (escapes are left for the parser to decode). */
export const UNITS = {
  a: 'a',
  digit: '7',
  nul: '\\u0000',
  nl: '\\n',
  quote: '\\"',
  backslash: '\\\\',
  emoji: '\u{1F600}',
  rtl: '\u202E',
  lone: '\\ud800',
  zwj: '\u200D',
  cjk: '\u7F51',
} as const

export interface RenderContext {
  /** PoolIDs tsnet handed out and not yet released, oldest first. */
  pools: string[]
  /** Leases tsnet handed out and not yet released. */
  leases: Array<{ poolId: string; address: string; bits: number }>
}

const FALLBACK_POOL = 'LocalDefault/10.210.0.0/24'

function resolveRefs(v: Json, ctx: RenderContext): Json {
  if (typeof v === 'string') {
    if (!v.startsWith(P)) return v
    const [what, a, b] = v.slice(1).split(':')
    const k = Number(a)
    if (!Number.isSafeInteger(k) || k < 0) return v // a mutation wrote into the placeholder: send it as it is
    if (what === 'POOL') return ctx.pools.length ? (ctx.pools[k % ctx.pools.length] as string) : FALLBACK_POOL
    if (what === 'LEASEPOOL') return ctx.leases.length ? ctx.leases[k % ctx.leases.length]!.poolId : FALLBACK_POOL
    if (what === 'LEASE') {
      const l = ctx.leases.length ? ctx.leases[k % ctx.leases.length]! : { address: '10.210.0.9', bits: 24 }
      if (b === '1') return `${l.address}/${l.bits}`
      if (b === '2' && !l.address.includes(':')) return `::${l.address}`
      if (b === '3' && !l.address.includes(':')) return `::ffff:${l.address}`
      return l.address
    }
    return v
  }
  if (Array.isArray(v)) return v.map((x) => resolveRefs(x, ctx))
  if (v !== null && typeof v === 'object') {
    const out: Record<string, Json> = {}
    for (const [key, x] of Object.entries(v)) Object.defineProperty(out, key, { value: resolveRefs(x, ctx), enumerable: true, writable: true, configurable: true })
    return out
  }
  return v
}

const TOKEN_RE = /"\\u0001(HUGE|DEEP|NUM):([^"\\]*)"/g

function expandTokens(text: string): string {
  return text.replace(TOKEN_RE, (_m, what: string, arg: string) => {
    const [a, b] = arg.split(/:(.*)/s)
    if (what === 'HUGE') return `"${(UNITS[b as keyof typeof UNITS] ?? 'a').repeat(Number(a))}"`
    if (what === 'DEEP') {
      const d = Number(a)
      return b === 'obj' ? `${'{"a":'.repeat(d)}1${'}'.repeat(d)}` : `${'['.repeat(d)}1${']'.repeat(d)}`
    }
    return arg // NUM: the token itself
  })
}

export interface Rendered {
  verb: string
  url: string
  payload: string | Buffer
  headers: Record<string, string>
  /** The JSON value sent when the payload is valid JSON (for the oracle), else undefined. */
  parsed(): unknown
  bytes: number
}

/** Headers Docker's plugin client sends (pkg/plugins/client.go); deliberately no Content-Type. */
export const DOCKER_HEADERS = { accept: 'application/vnd.docker.plugins.v1.2+json', host: 'plugin.moby.localhost' }

export function render(op: Op, ctx: RenderContext): Rendered {
  const body = resolveRefs(op.body, ctx)
  let text = body === null ? '' : `${expandTokens(JSON.stringify(body))}\n`
  let payload: string | Buffer = text
  const m = op.text
  if (m) {
    if (m.t === 'truncate') text = text.slice(0, Math.floor(text.length * m.at))
    else if (m.t === 'append') text += m.s
    else if (m.t === 'prepend') text = m.s + text
    else if (m.t === 'replace') text = expandTokens(m.s)
    else if (m.t === 'empty') text = ''
    payload = text
    if (m.t === 'bytes') {
      const buf = Buffer.from(text)
      const at = Math.floor(buf.length * m.at)
      payload = Buffer.concat([buf.subarray(0, at), Buffer.from(m.hex, 'hex'), buf.subarray(at)])
    }
  }
  const headers: Record<string, string> = { ...DOCKER_HEADERS }
  if (op.http?.contentType) headers['content-type'] = op.http.contentType
  const bytes = typeof payload === 'string' ? Buffer.byteLength(payload) : payload.length
  if (bytes === 0) headers['content-length'] = '0'
  const parsed = () => {
    try {
      const s = (typeof payload === 'string' ? payload : payload.toString('utf8')).trim()
      return s === '' ? {} : (JSON.parse(s) as unknown)
    } catch {
      return undefined
    }
  }
  return { verb: op.http?.verb ?? 'POST', url: op.http?.url ?? `/${op.method}`, payload, headers, parsed, bytes }
}

// ---------------------------------------------------------------- printing

function shortString(s: string): string {
  if (s.startsWith(P)) {
    const [what, a, b] = s.slice(1).split(':')
    if (what === 'HUGE') return `<${a} × ${b}>`
    if (what === 'DEEP') return `<${a} nested ${b === 'obj' ? 'objects' : 'arrays'}>`
    if (what === 'NUM') return `<number ${s.slice(5)}>`
    if (what === 'POOL') return `<pool #${a}>`
    if (what === 'LEASEPOOL') return `<pool of lease #${a}>`
    if (what === 'LEASE') return `<address of lease #${a}${['', ' with mask', ' as ::a.b.c.d', ' as ::ffff:a.b.c.d'][Number(b)] ?? ''}>`
  }
  return s.length > 120 ? `${s.slice(0, 100)}…(${s.length} chars)` : s
}

function shortJson(v: Json): Json {
  if (typeof v === 'string') return shortString(v)
  if (Array.isArray(v)) return v.length > 8 ? [...v.slice(0, 8).map(shortJson), `…(${v.length} items)`] : v.map(shortJson)
  if (v !== null && typeof v === 'object') {
    const out: Record<string, Json> = {}
    for (const [k, x] of Object.entries(v)) Object.defineProperty(out, shortString(k), { value: shortJson(x), enumerable: true })
    return out
  }
  return v
}

/** One line per request, readable, with placeholders and huge values shown symbolically. */
export function describeOp(op: Op): string {
  const verb = op.http?.verb ? `${op.http.verb} ` : ''
  const url = op.http?.url ? ` (url ${JSON.stringify(op.http.url)})` : ''
  const ct = op.http?.contentType ? ` (content-type ${op.http.contentType})` : ''
  let text = op.body === null ? '<empty body>' : JSON.stringify(shortJson(op.body))
  const m = op.text
  if (m) {
    if (m.t === 'truncate') text += `  [truncated to ${Math.round(m.at * 100)}%]`
    if (m.t === 'append') text += `  [+ ${JSON.stringify(shortString(m.s))}]`
    if (m.t === 'prepend') text = `[${JSON.stringify(shortString(m.s))} +] ${text}`
    if (m.t === 'replace') text = `raw ${JSON.stringify(shortString(m.s))}`
    if (m.t === 'bytes') text += `  [bytes ${m.hex} spliced in at ${Math.round(m.at * 100)}%]`
    if (m.t === 'empty') text = '<empty body>'
  }
  return `${verb}${op.method}${url}${ct} ${text}   {${op.kind}: ${op.tag}}`
}

export function describeStep(s: Step): string {
  return isParallel(s) ? `PARALLEL:\n      | ${describeOp(s.parallel[0])}\n      | ${describeOp(s.parallel[1])}` : describeOp(s)
}
