// Hostile input, in-process: at least 10,000 generated requests, as sequences against a live app
// (FileStore in a temporary directory + FakeHost), seeded (FUZZ_SEED overrides the fixed default).
// After every request: an answer came in time; it is 200 + a JSON object, or non-200 + exactly
// {"Err": sentence} and never an internal error; a refused request left the store's files and
// FakeHost.state() byte-identical; an accepted one changed the store only as its method allows,
// and the store, the fake host and the services' memory agree. One sequence in ten ends with a
// restart (nothing may change); every sequence ends with deleting everything through the API (the
// host returns to its baseline). Failing sequences are shrunk and printed; known product bugs
// (lib/known-bugs.ts) are reported as todo. See README.md.
import t from 'tap'
import { fuzz, seedFromEnv } from './lib/engine.js'
import { FakeSut } from './lib/fake-sut.js'
import { KNOWN_BUGS } from './lib/known-bugs.js'

// The run bounds itself (at most ~90 s, asserted below); this only keeps the package's 60 s file timeout from cutting it short.
t.setTimeout(150_000)

const seed = seedFromEnv(20240604)
const MIN_REQUESTS = 10_000

t.test('hostile input against the app over FileStore + FakeHost', async (t) => {
  t.comment(`seed ${seed} (set FUZZ_SEED to change it)`)
  const out = await fuzz({
    label: 'in-process',
    seed,
    numRuns: 640,
    timeLimitMs: 70_000,
    shrinkTimeLimitMs: 15_000,
    knownShrinkTimeLimitMs: 6_000,
    totalTimeLimitMs: 86_000,
    minLength: 1,
    maxLength: 30,
    weights: { valid: 30, semantic: 48, malformed: 22, parallel: 2, story: 7 },
    requestTimeoutMs: 10_000,
    knownBugs: KNOWN_BUGS,
    restartShare: 10,
    makeSut: () => FakeSut.start(),
    log: (l) => t.comment(l),
  })
  const s = out.stats
  t.comment(s.summary(`in-process (seed ${seed}, ${(out.ms / 1000).toFixed(1)} s, ${((out.totalMs ?? out.ms) / 1000).toFixed(1)} s with shrinking${out.interrupted ? ', stopped by the time limit' : ''})`))
  if (out.failure) t.comment(out.failure.report)
  t.notOk(out.failure, 'every property held after every request', { diagnostic: false })
  t.ok(s.requests >= MIN_REQUESTS, `at least ${MIN_REQUESTS} requests were sent (${s.requests})`)
  const share = s.handledByKind.semantic / Math.max(1, s.requests)
  t.ok(share >= 0.3, `at least 30% of the requests were well-formed but semantically wrong and passed the schema (${(share * 100).toFixed(1)}%)`)
  t.ok((out.totalMs ?? out.ms) < 90_000, `the run took less than 90 s (${((out.totalMs ?? out.ms) / 1000).toFixed(1)} s)`)
  for (const bug of KNOWN_BUGS) {
    const hit = s.known.get(bug.id)
    if (hit) t.comment(`known product bug ${bug.id}: hit ${hit.count} times\n${out.shrunkKnown.get(bug.id) ?? hit.example}`)
    t.equal(hit?.count ?? 0, 0, `no request hit: ${bug.id}`, { todo: bug.todo })
  }
})
