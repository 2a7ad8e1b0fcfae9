/** Tables from a V8 CPU profile (.cpuprofile) and a heap snapshot, for bench/profile.ts. */
import { readFileSync } from 'node:fs'

interface CallFrame { functionName: string; url: string; lineNumber: number }
interface ProfileNode { id: number; callFrame: CallFrame; children?: number[] }
interface CpuProfile { nodes: ProfileNode[]; samples: number[]; timeDeltas: number[] }

export interface Row { ms: number; share: number; what: string }

/** `function file:line`, with the path cut to dist/… or node_modules/…. */
function frameName(f: CallFrame): string {
  const where = f.url.replace(/^.*?\/(dist|node_modules)\//, '$1/').replace(/^file:\/\//, '')
  return `${f.functionName || '(anonymous)'}${where ? ` ${where}:${f.lineNumber + 1}` : ''}`
}

/** Self time by function, and inclusive time (each function counted once per sample) of the functions `keep` selects. */
export function cpuTables(path: string, top: number, keep: (name: string) => boolean): { totalMs: number; self: Row[]; inclusive: Row[] } {
  const p = JSON.parse(readFileSync(path, 'utf8')) as CpuProfile
  const byId = new Map(p.nodes.map((n) => [n.id, n]))
  const parent = new Map<number, number>()
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id)
  const perNode = new Map<number, number>()
  let total = 0
  p.samples.forEach((id, i) => {
    const d = p.timeDeltas[i] ?? 0
    total += d
    perNode.set(id, (perNode.get(id) ?? 0) + d)
  })
  const self = new Map<string, number>()
  const inclusive = new Map<string, number>()
  for (const [id, us] of perNode) {
    const name = frameName((byId.get(id) as ProfileNode).callFrame)
    self.set(name, (self.get(name) ?? 0) + us)
    const seen = new Set<string>()
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const n = frameName((byId.get(cur) as ProfileNode).callFrame)
      if (seen.has(n)) continue
      seen.add(n)
      inclusive.set(n, (inclusive.get(n) ?? 0) + us)
    }
  }
  const rows = (m: Map<string, number>, pick: (n: string) => boolean) => [...m].filter(([n]) => pick(n)).sort((a, b) => b[1] - a[1]).slice(0, top)
    .map(([what, us]) => ({ ms: us / 1000, share: total ? us / total : 0, what }))
  return { totalMs: total / 1000, self: rows(self, () => true), inclusive: rows(inclusive, keep) }
}

/** Live heap by object kind (self sizes): what a snapshot holds. */
export function heapTable(path: string, top: number): { totalMb: number; rows: Array<{ mb: number; count: number; what: string }> } {
  const h = JSON.parse(readFileSync(path, 'utf8')) as {
    snapshot: { meta: { node_fields: string[]; node_types: [string[]] } }
    nodes: number[]
    strings: string[]
  }
  const fields = h.snapshot.meta.node_fields
  const types = h.snapshot.meta.node_types[0]
  const [it, iname, isize] = ['type', 'name', 'self_size'].map((f) => fields.indexOf(f)) as [number, number, number]
  const by = new Map<string, { bytes: number; count: number }>()
  let total = 0
  for (let i = 0; i < h.nodes.length; i += fields.length) {
    const type = types[h.nodes[i + it] as number] as string
    const size = h.nodes[i + isize] as number
    total += size
    const what = type === 'object' ? `object ${h.strings[h.nodes[i + iname] as number]}` : type
    const a = by.get(what) ?? { bytes: 0, count: 0 }
    a.bytes += size
    a.count++
    by.set(what, a)
  }
  const rows = [...by].sort((a, b) => b[1].bytes - a[1].bytes).slice(0, top).map(([what, a]) => ({ mb: a.bytes / 2 ** 20, count: a.count, what }))
  return { totalMb: total / 2 ** 20, rows }
}
