// Hostile input against the real host layer: a few hundred generated requests (seeded; FUZZ_SEED
// overrides) through the app over LinuxHost, whose every command runs inside a network namespace
// this test creates (tsfz-<pid>, entered with nsenter). Same properties as in-process, with the
// kernel as the host: after a refused request, links, addresses, routes, iptables/ip6tables
// rules and ipsets of the namespace are unchanged (see lib/kernel-sut.ts for exactly what is compared); after
// every request the kernel holds exactly what the store's records imply, and what tsnet does not
// own is untouched. Each sequence ends by deleting everything through the API: the namespace must
// be back to its baseline, with no tsnet link, no TSNET rule and no tsnet ipset. Requires root.
import { execFileSync } from 'node:child_process'
import t from 'tap'
import { fuzz, seedFromEnv } from './lib/engine.js'
import { KernelSut, NETNS, deleteNetnsSync } from './lib/kernel-sut.js'
import { KNOWN_BUGS } from './lib/known-bugs.js'

// The run bounds itself (at most ~60 s, asserted below); this only keeps the package's 60 s file timeout from cutting it short.
t.setTimeout(120_000)

const seed = seedFromEnv(20240604)
const MIN_REQUESTS = 300

function canRun(): string | false {
  if (process.getuid?.() !== 0) return 'needs root (network namespaces, iptables)'
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
    numRuns: 36,
    timeLimitMs: 42_000,
    shrinkTimeLimitMs: 8_000,
    knownShrinkTimeLimitMs: 8_000,
    totalTimeLimitMs: 54_000,
    minLength: 1,
    maxLength: 17,
    weights: { valid: 34, semantic: 56, malformed: 10, parallel: 6, story: 16 },
    requestTimeoutMs: 30_000,
    knownBugs: KNOWN_BUGS,
    restartShare: 15,
    makeSut: () => KernelSut.start(),
    log: (l) => t.comment(l),
  })
  const s = out.stats
  t.comment(s.summary(`real-kernel (seed ${seed}, ${(out.ms / 1000).toFixed(1)} s, ${((out.totalMs ?? out.ms) / 1000).toFixed(1)} s with shrinking${out.interrupted ? ', stopped by the time limit' : ''})`))
  if (out.failure) t.comment(out.failure.report)
  t.notOk(out.failure, 'every property held after every request', { diagnostic: false })
  t.ok(s.requests >= MIN_REQUESTS, `at least ${MIN_REQUESTS} requests were sent (${s.requests})`)
  t.ok(s.cleanups > 0, `sequences ended by deleting everything through the API, and the namespace was back to its baseline (${s.cleanups})`)
  t.ok((out.totalMs ?? out.ms) < 60_000, `the run took less than 60 s (${((out.totalMs ?? out.ms) / 1000).toFixed(1)} s)`)
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
