// Hostile input against the real host layer: a fixed number of generated request sequences
// (seeded; FUZZ_SEED overrides) through the app, built as `tsnet serve` builds it, over the real
// host layer running in a network namespace this test creates (tsfz-<pid>; see lib/kernel-sut.ts).
// Same properties as in-process, with the kernel as the host: after a refused request, links,
// addresses, routes, iptables/ip6tables rules and ipsets of the namespace are unchanged (see
// lib/kernel-sut.ts for exactly what is compared); after every request the kernel holds exactly
// what the store's records imply, and what tsnet does not own is untouched. Each sequence ends by
// deleting everything through the API: the namespace must be back to its baseline, with no tsnet
// link, no TSNET rule and no tsnet ipset. Requires root.
//
// The amount of work is fixed (NUM_RUNS sequences from a fixed seed: the same requests every
// run), never "whatever fits in a time budget": on a busy machine the run takes longer, it does
// not test less. The time limits are generous and only catch a hang.
import { execFileSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import fc from 'fast-check'
import t from 'tap'
import { fuzz, seedFromEnv, sequenceOf } from './lib/engine.js'
import { isParallel } from './lib/ops.js'
import { KernelSut, NETNS, deleteNetnsSync } from './lib/kernel-sut.js'
import { KNOWN_BUGS } from './lib/known-bugs.js'

// Generous: only a hang should reach it (the run takes about a minute on an idle 2-core machine,
// several on a loaded one; a single request that hangs is caught after requestTimeoutMs).
const HANG_MS = 840_000
t.setTimeout(HANG_MS + 120_000)

const seed = seedFromEnv(20240604)
/** Sequences run; with the default seed they hold 336 requests. */
const NUM_RUNS = 26
const SHAPE = { minLength: 1, maxLength: 17, weights: { valid: 34, semantic: 56, malformed: 10, parallel: 6, story: 16 }, restartShare: 15 }
/** The requests the seed's first NUM_RUNS sequences hold (fast-check generates them in this order). */
const planned = fc.sample(sequenceOf(SHAPE), { seed, numRuns: NUM_RUNS })
  .reduce((n, seq) => n + seq.chunks.flat().reduce((m, step) => m + (isParallel(step) ? 2 : 1), 0), 0)

function canRun(): string | false {
  if (process.getuid?.() !== 0) return 'needs root (network namespaces, iptables)'
  if (!existsSync(new URL('../../dist/host/linux-host.js', import.meta.url))) return 'build first (npm run build): the host layer runs from dist/ in the namespace'
  for (const tool of ['ip', 'nsenter', 'iptables-save', 'ip6tables-save', 'iptables-restore', 'ip6tables-restore', 'ipset']) {
    try {
      execFileSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' })
    } catch {
      return `needs ${tool}`
    }
  }
  return false
}

const skip = canRun()

t.test('hostile input against the app over LinuxHost in a network namespace', { skip }, async (t) => {
  t.teardown(deleteNetnsSync)
  t.comment(`seed ${seed} (set FUZZ_SEED to change it), namespace ${NETNS}`)
  const out = await fuzz({
    label: 'real-kernel',
    seed,
    numRuns: NUM_RUNS,
    timeLimitMs: HANG_MS,
    shrinkTimeLimitMs: 60_000,
    knownShrinkTimeLimitMs: 30_000,
    totalTimeLimitMs: HANG_MS,
    ...SHAPE,
    requestTimeoutMs: 30_000,
    knownBugs: KNOWN_BUGS,
    makeSut: () => KernelSut.start(),
    log: (l) => t.comment(l),
  })
  const s = out.stats
  t.comment(s.summary(`real-kernel (seed ${seed}, ${(out.ms / 1000).toFixed(1)} s, ${((out.totalMs ?? out.ms) / 1000).toFixed(1)} s with shrinking${out.interrupted ? ', stopped by the time limit' : ''})`))
  if (out.failure) t.comment(out.failure.report)
  t.notOk(out.failure, 'every property held after every request', { diagnostic: false })
  t.notOk(out.interrupted, `nothing was cut short by the hang limit (${HANG_MS / 1000} s)`)
  if (!out.failure && s.known.size === 0) {
    t.equal(s.sequences, NUM_RUNS, `all ${NUM_RUNS} generated sequences ran`)
    t.equal(s.requests, planned, `every one of the ${planned} requests they hold was sent`)
  }
  t.ok(s.cleanups > 0, `sequences ended by deleting everything through the API, and the namespace was back to its baseline (${s.cleanups})`)
  for (const bug of KNOWN_BUGS) {
    const hit = s.known.get(bug.id)
    if (hit) t.comment(`known product bug ${bug.id}: hit ${hit.count} times\n${out.shrunkKnown.get(bug.id) ?? hit.example}`)
    t.equal(hit?.count ?? 0, 0, `no request hit: ${bug.id}`, { todo: bug.todo })
  }
})

t.test('the namespace is gone afterwards', { skip }, async (t) => {
  deleteNetnsSync()
  const list = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })
  t.notMatch(list, new RegExp(`^${NETNS}\\b`, 'm'), `${NETNS} was deleted`)
})
