// Every fenced block in README.md and docs/*.md says what it is, in an HTML comment on the line
// before it, so that no example can quietly go stale:
//   <!-- example: run -->                 run here, as written, and must succeed (no real network,
//                                         no daemon: `tsnet` is dist/cli.js, the state directory
//                                         and socket are temporary ones)
//   <!-- example: output of COMMAND -->   exactly what COMMAND prints (run and compared)
//   <!-- example: needs WHAT -->          not run (needs root, Docker, a running tsnet, ...); its
//                                         `tsnet ...` lines must parse as the CLI parses them,
//                                         the scripts it names must exist and be executable, and
//                                         every policy in it must parse
//   <!-- example: output, captured from a real run -->   shown as is
//   <!-- example: not a command -->       a diagram, a layout, an error message
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { accessSync, constants, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync, chmodSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { COMMANDS, parseCommand } from '../../src/cli/index.js'
import { parsePolicy } from '../../src/core/policy.js'

const ROOT = join(import.meta.dirname, '../..')
const CLI = join(ROOT, 'dist/cli.js')
const DOCS = ['README.md', ...readdirSync(join(ROOT, 'docs')).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`)]

interface Block {
  file: string
  line: number
  kind: string
  body: string
}

function blocksOf(file: string): { blocks: Block[]; unmarked: string[] } {
  const lines = readFileSync(join(ROOT, file), 'utf8').split('\n')
  const blocks: Block[] = []
  const unmarked: string[] = []
  for (let i = 0; i < lines.length; i++) {
    const open = /^(\s*)```/.exec(lines[i] as string)
    if (!open) continue
    const indent = open[1] as string
    const start = i
    const body: string[] = []
    for (i++; i < lines.length && !(lines[i] as string).startsWith(`${indent}\`\`\``); i++) body.push((lines[i] as string).slice(indent.length))
    const marker = /^\s*<!-- example: (.+?) -->\s*$/.exec(lines[start - 1] ?? '')
    if (!marker) unmarked.push(`${file}:${start + 1}`)
    else blocks.push({ file, line: start + 1, kind: marker[1] as string, body: body.join('\n') })
  }
  return { blocks, unmarked }
}

/**
 * The simple commands of one line as shell words: single and double quotes (adjacent parts
 * joined), `&&`, `||`, `|` and `;` outside quotes between commands; no expansion (the examples need none).
 */
function commands(line: string): string[][] {
  const out: string[][] = [[]]
  let word: string | undefined
  let quote: string | undefined
  const end = () => {
    if (word !== undefined) (out[out.length - 1] as string[]).push(word)
    word = undefined
  }
  for (let i = 0; i < line.length; i++) {
    const c = line[i] as string
    if (quote) {
      if (c === quote) quote = undefined
      else word += c
    } else if (c === "'" || c === '"') {
      quote = c
      word ??= ''
    } else if (/\s/.test(c)) {
      end()
    } else if (c === ';' || c === '|' || c === '&') {
      end()
      if ((out[out.length - 1] as string[]).length) out.push([])
    } else {
      word = (word ?? '') + c
    }
  }
  end()
  return out.filter((w) => w.length > 0)
}

const all = DOCS.map(blocksOf)
const blocks = all.flatMap((b) => b.blocks)

t.test('every fenced block says what it is', async (t) => {
  t.same(all.flatMap((b) => b.unmarked), [], 'no block without an <!-- example: ... --> line before it')
  const kinds = /^(run|output of .+|needs .+|output, captured from a real run|not a command)$/
  for (const b of blocks) t.match(b.kind, kinds, `${b.file}:${b.line}: ${b.kind}`)
  t.ok(blocks.some((b) => b.kind === 'run'), 'some blocks are run')
})

t.test('the commands that need nothing real run as written', { skip: existsSync(CLI) ? false : 'build first (npm run build)' }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tsnet-docs-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const bin = join(dir, 'bin')
  spawnSync('mkdir', ['-p', bin])
  writeFileSync(join(bin, 'tsnet'), `#!/bin/sh\nexec "${process.execPath}" "${CLI}" "$@"\n`)
  chmodSync(join(bin, 'tsnet'), 0o755)
  const env = { PATH: `${bin}:${process.env.PATH ?? '/usr/bin:/bin'}`, TSNET_STATE_DIR: join(dir, 'state'), TSNET_SOCKET: join(dir, 'tsnet.sock'), HOME: dir }
  const sh = (script: string) => spawnSync('bash', ['-e', '-o', 'pipefail', '-c', script], { cwd: ROOT, env, encoding: 'utf8', timeout: 60_000 })
  for (const b of blocks) {
    if (b.kind === 'run') {
      const r = sh(b.body)
      t.equal(r.status, 0, `${b.file}:${b.line} runs:\n${b.body}\n${r.stdout}${r.stderr}`)
    }
    const of = /^output of (.+)$/.exec(b.kind)?.[1]
    if (of) {
      const r = sh(of.replace(/^`|`$/g, ''))
      t.equal(r.status, 0, `${b.file}:${b.line}: ${of} runs`)
      t.equal(r.stdout.trimEnd(), b.body.trimEnd(), `${b.file}:${b.line} is exactly what ${of} prints`)
    }
  }
  t.notOk(existsSync(join(dir, 'state')), 'the examples created no state')
})

t.test('the examples that need a real host still parse, name scripts that exist, and hold valid policies', async (t) => {
  for (const b of blocks.filter((x) => x.kind.startsWith('needs ') || x.kind === 'run')) {
    for (const raw of b.body.split('\n')) {
      const line = raw.replace(/(^|\s+)#(\s.*)?$/, '').trim()
      for (const w of commands(line)) {
        // tsnet itself, or node running the executable (`node /opt/tsnet/dist/cli.js status`)
        const at = w[0] === 'tsnet' ? 0 : w.findIndex((x, i) => i > 0 && x.endsWith('/cli.js') && /(^|\/)node$/.test(w[i - 1] ?? ''))
        if (at >= 0 && !w.some((x) => x.includes('['))) {
          const argv = w.slice(at + 1)
          if (argv[0] === 'help') t.ok(argv.length === 1 || COMMANDS.some((c) => c.name === argv[1]), `${b.file}:${b.line}: tsnet ${argv.join(' ')} names a command`)
          else t.doesNotThrow(() => parseCommand(argv), `${b.file}:${b.line}: tsnet ${argv.join(' ')} parses`)
        }
        for (const s of w.filter((x) => /^(scripts|plugin)\/[\w.-]+\.sh$/.test(x))) {
          t.doesNotThrow(() => accessSync(join(ROOT, s), constants.X_OK), `${b.file}:${b.line}: ${s} exists and is executable`)
        }
        // A placeholder ('SOURCES PORTS') has no lower-case letter or digit.
        if (at >= 0 && w[at + 1] === 'policy' && w[at + 2] === 'set' && /[a-z0-9]/.test(w[at + 4] ?? '')) {
          t.doesNotThrow(() => parsePolicy(w[at + 4] as string), `${b.file}:${b.line}: policy '${w[at + 4]}' parses`)
        }
        for (const x of w) {
          const allow = /^tsnet\.allow=(.+)$/.exec(x)?.[1]
          if (allow) t.doesNotThrow(() => parsePolicy(allow), `${b.file}:${b.line}: tsnet.allow='${allow}' parses`)
        }
      }
    }
  }
})

t.test('the newcomer commands need no sudo: the scripts run as root directly and never call sudo', async (t) => {
  for (const s of ['scripts/start.sh', 'scripts/test.sh', 'scripts/install-test-deps.sh', 'scripts/bench.sh', 'plugin/build.sh']) {
    const text = readFileSync(join(ROOT, s), 'utf8')
    // Comments and quoted messages may mention sudo ("run as root (su -, or sudo ...)"); code may not call it.
    const code = text.split('\n').filter((l) => !/^\s*#/.test(l)).map((l) => l.replace(/"[^"]*"|'[^']*'/g, '""')).join('\n')
    t.notMatch(code, /\bsudo\b/, `${s} does not call sudo`)
  }
  for (const b of blocks) t.notMatch(b.body, /^\s*sudo\s/m, `${b.file}:${b.line}: shown without sudo (the note says sudo works too)`)
})
