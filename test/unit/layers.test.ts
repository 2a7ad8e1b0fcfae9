// The layering rules, checked on the source: the pure core and the modes import no I/O and nothing
// from the wire protocol or the Docker adapter; no source file grows past 300 lines.
import t from 'tap'
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { join, relative } from 'node:path'

const SRC = join(import.meta.dirname, '../../src')

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name)
    return statSync(p).isDirectory() ? files(p) : p.endsWith('.ts') ? [p] : []
  })
}

const importsOf = (text: string) => [...text.matchAll(/^\s*(?:import|export)\s[^'"]*?from\s+['"]([^'"]+)['"]/gm)].map((m) => m[1] as string)

const PURE_DIRS = ['core', 'modes', 'observe']
const FORBIDDEN = [
  /^node:(fs|fs\/promises|child_process|net|os|dgram|http|https)$/, /^(fs|child_process|net|os|dgram)$/, /^dockerode$/,
  /\/protocol\//, /\/docker\//, /\/host\//, /\/services\//, /\/store\//, /\/server\//, /\/engine\//,
]

t.test('core/, modes/ and observe/ are pure', async (t) => {
  const checked = files(SRC).filter((f) => PURE_DIRS.includes(relative(SRC, f).split('/')[0] as string))
  t.ok(checked.length >= 10, `found the pure modules (${checked.length})`)
  for (const f of checked) {
    const bad = importsOf(readFileSync(f, 'utf8')).filter((i) => FORBIDDEN.some((re) => re.test(i)))
    t.same(bad, [], `${relative(SRC, f)} imports no I/O, protocol, adapter or service module`)
  }
})

t.test('the check itself catches a forbidden import', async (t) => {
  t.same(importsOf("import { readFile } from 'node:fs/promises'\nimport type { X } from '../protocol/types.js'").filter((i) => FORBIDDEN.some((re) => re.test(i))),
    ['node:fs/promises', '../protocol/types.js'])
})

t.test('no source file is over 300 lines', async (t) => {
  for (const f of files(SRC)) {
    const lines = readFileSync(f, 'utf8').split('\n').length
    t.ok(lines <= 301, `${relative(SRC, f)}: ${lines} lines`)
  }
})
