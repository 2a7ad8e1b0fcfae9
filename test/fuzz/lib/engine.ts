/**
 * Runs generated request sequences against a system under test (the app over a fake host, or over
 * the real kernel in a namespace), checks the properties after every request, and drives
 * fast-check: seeded generation, shrinking of failing sequences, printing the minimal one.
 *
 * Product bugs already known are listed (KnownBug); a violation that matches one is counted and
 * does not fail the property, and afterwards a focused run replays the first sequence that hit it
 * and shrinks it, so the report carries a minimal reproduction for each.
 */
import fc from 'fast-check'
import { type Op, type Rendered, type RenderContext, type Step, describeOp, describeStep, isParallel, render } from './ops.js'
import {
  type StoreView, type Violation, answerProblems, filesDiff, isParseOrSchemaRefusal, sameFiles, storeProblems, transitionProblems,
} from './oracle.js'
import { cidrValue } from './ip.js'
import { type Weights, sequenceArb } from './generators.js'

export interface Answer {
  status: number
  body: string
  ms: number
}

export interface Observation {
  store: StoreView
  /** A canonical text of the host's state: equal texts mean an unchanged host. */
  host: string
  /** The parsed state behind `host`, for the system's own checks. */
  hostData?: unknown
}

export interface Sut {
  readonly hostRoutes: readonly string[]
  send(r: Rendered): Promise<Answer>
  observe(): Promise<Observation>
  /** The host against the store's records. */
  hostProblems(o: Observation): Violation[]
  /** The services' memory against the store. */
  memoryProblems(store: StoreView): Violation[]
  /** Readable differences between two host texts. */
  hostDiff(a: string, b: string): string[]
  /** Whether the last request got past parsing and the schema, and whether it reached a service method. */
  reached(): { handler: boolean; service: boolean }
  /** Restart tsnet over the same state and host; returns what differs afterwards. */
  restart(before: Observation): Promise<Violation[]>
  /** Delete everything through the API and check the host is back to its baseline. */
  finish(): Promise<Violation[]>
  close(): Promise<void>
}

export interface KnownBug {
  id: string
  todo: string
  /** `op` is the request just answered (undefined after a parallel pair or at the end of a sequence). */
  matches(v: Violation, op: Op | undefined, parallel: boolean): boolean
  /** Stop the sequence when it is hit (the state may be wrong from here on). */
  stops: boolean
}

// ---------------------------------------------------------------- statistics

export class Stats {
  sequences = 0
  requests = 0
  parallelPairs = 0
  byKind = { valid: 0, semantic: 0, malformed: 0 }
  /** Requests that got past parsing and the schema, i.e. reached a handler. */
  handledByKind = { valid: 0, semantic: 0, malformed: 0 }
  /** Requests that reached a service method (the planner/allocator). */
  serviceByKind = { valid: 0, semantic: 0, malformed: 0 }
  accepted = 0
  refused = 0
  refusedBySchema = 0
  refusedByService = 0
  notFound = 0
  tooLarge = 0
  internalErrors = 0
  maxMs = 0
  maxErrLength = 0
  bodiesOver1MiB = 0
  restarts = 0
  cleanups = 0
  byMethod = new Map<string, { sent: number; ok: number }>()
  known = new Map<string, { count: number; firstRun: number; example: string }>()

  add(o: Stats): void {
    for (const k of ['sequences', 'requests', 'parallelPairs', 'accepted', 'refused', 'refusedBySchema', 'refusedByService', 'notFound', 'tooLarge', 'internalErrors', 'bodiesOver1MiB', 'restarts', 'cleanups'] as const) this[k] += o[k]
    for (const g of ['byKind', 'handledByKind', 'serviceByKind'] as const) for (const k of ['valid', 'semantic', 'malformed'] as const) this[g][k] += o[g][k]
    this.maxMs = Math.max(this.maxMs, o.maxMs)
    this.maxErrLength = Math.max(this.maxErrLength, o.maxErrLength)
    for (const [m, c] of o.byMethod) {
      const x = this.byMethod.get(m) ?? { sent: 0, ok: 0 }
      x.sent += c.sent
      x.ok += c.ok
      this.byMethod.set(m, x)
    }
    for (const [id, k] of o.known) {
      const x = this.known.get(id)
      if (x) x.count += k.count
      else this.known.set(id, { ...k })
    }
  }

  summary(label: string): string {
    const pct = (n: number) => `${((100 * n) / Math.max(1, this.requests)).toFixed(1)}%`
    const lines = [
      `${label}: ${this.requests} requests in ${this.sequences} sequences (${this.parallelPairs} of them in parallel pairs)`,
      `  generated: ${this.byKind.valid} valid (${pct(this.byKind.valid)}), ${this.byKind.semantic} well-formed but semantically wrong (${pct(this.byKind.semantic)}), ${this.byKind.malformed} malformed (${pct(this.byKind.malformed)})`,
      `  well-formed-but-wrong requests that passed the schema: ${this.handledByKind.semantic} (${pct(this.handledByKind.semantic)} of all requests), ${this.serviceByKind.semantic} of them reached the services/planner (${pct(this.serviceByKind.semantic)})`,
      `  all requests reaching the services: ${this.serviceByKind.valid + this.serviceByKind.semantic + this.serviceByKind.malformed} (${pct(this.serviceByKind.valid + this.serviceByKind.semantic + this.serviceByKind.malformed)}); malformed ones that still reached them: ${this.serviceByKind.malformed}`,
      `  answers: ${this.accepted} accepted (200), ${this.refused} refused (${this.refusedBySchema} by parsing/schema/routing, ${this.refusedByService} by tsnet's handlers; ${this.notFound} unknown routes, ${this.tooLarge} bodies over the limit), ${this.internalErrors} internal errors`,
      `  slowest answer ${this.maxMs.toFixed(1)} ms, longest Err ${this.maxErrLength} characters, ${this.bodiesOver1MiB} bodies of 1 MiB or more, ${this.restarts} restarts checked, ${this.cleanups} cleanups checked`,
      `  per method (sent/200): ${[...this.byMethod.entries()].sort().map(([m, c]) => `${m.replace(/^(NetworkDriver|IpamDriver|Plugin)\./, '')} ${c.sent}/${c.ok}`).join(', ')}`,
    ]
    return lines.join('\n')
  }
}

// ---------------------------------------------------------------- one sequence

export class SequenceFailure extends Error {
  constructor(readonly violations: Violation[], readonly transcript: Array<() => string>, readonly stepIndex: number) {
    super(`${violations.map((x) => `[${x.rule}] ${x.detail}`).join('\n')}`)
  }
}

interface RunOptions {
  requestTimeoutMs: number
  knownBugs: readonly KnownBug[]
  /** Only this known bug fails the sequence (focused shrinking); all other violations are ignored. */
  focus?: string
  runIndex: number
  checkRestart: boolean
}

/** The method a request reaches, or undefined for an unknown route or verb. */
function effectiveMethod(op: Op, r: Rendered): string | undefined {
  if (r.verb !== 'POST') return undefined
  const path = r.url.split(/[?#]/)[0]
  return path === `/${op.method}` ? op.method : undefined
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T | 'timeout'> {
  let timer: NodeJS.Timeout | undefined
  const t = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), ms)
  })
  return Promise.race([p, t]).finally(() => clearTimeout(timer))
}

const shortText = (s: string, n = 240) => (s.length > n ? `${s.slice(0, n)}…(${s.length} chars)` : s)

/** The bytes actually sent, with long runs of one character folded and the rest cut short. */
function sentText(r: Rendered): string {
  const text = typeof r.payload === 'string' ? r.payload : `${r.payload.toString('utf8')} (raw bytes: ${r.payload.length})`
  const folded = text.replace(/([^])\1{39,}/g, (run, ch: string) => `⟨${run.length} × ${JSON.stringify(ch)}⟩`)
  return shortText(JSON.stringify(folded), 600)
}

/** Keeps the references generated requests make (the k-th pool, the k-th lease) in step with the store. */
function updateContext(ctx: RenderContext, store: StoreView): void {
  ctx.pools = ctx.pools.filter((id) => store.recs.pools.has(id))
  for (const id of store.recs.pools.keys()) if (!ctx.pools.includes(id)) ctx.pools.push(id)
  ctx.leases = ctx.leases.filter((l) => store.recs.leases.has(`${l.poolId}#${l.address}`))
  for (const l of store.recs.leases.values()) {
    if (ctx.leases.some((x) => x.poolId === l.poolId && x.address === l.address)) continue
    ctx.leases.push({ poolId: l.poolId, address: l.address, bits: cidrValue(store.recs.pools.get(l.poolId)?.pool)?.bits ?? 32 })
  }
}

/** Runs one sequence; true when it ended clean (everything deleted, the system reusable). */
export async function runSequence(sut: Sut, steps: Step[], stats: Stats, o: RunOptions): Promise<boolean> {
  const ctx: RenderContext = { pools: [], leases: [] }
  /** What was sent and answered, formatted only when a failure is reported. */
  const transcript: Array<() => string> = []
  let before = await sut.observe()
  stats.sequences++

  /** Splits violations into known bugs (recorded) and the rest (returned). */
  const triage = (vs: Violation[], op: Op | undefined, k: number, parallel = false): { fatal: Violation[]; stop: boolean } => {
    const fatal: Violation[] = []
    let stop = false
    for (const x of vs) {
      const bug = o.knownBugs.find((b) => b.matches(x, op, parallel))
      if (o.focus !== undefined) {
        if (bug?.id === o.focus) fatal.push(x)
        else if (bug?.stops || !bug) stop = true // another problem: this sequence proves nothing for the focus
        continue
      }
      if (!bug) {
        fatal.push(x)
        continue
      }
      const rec = stats.known.get(bug.id)
      if (rec) rec.count++
      else {
        const upTo = steps.slice(0, k + 1).map((st, n) => `  #${n} ${describeStep(st)}`)
        stats.known.set(bug.id, { count: 1, firstRun: o.runIndex, example: `${upTo.join('\n')}${k >= steps.length ? '\n  then: restart / delete everything' : ''}\n      → at #${k}: [${x.rule}] ${shortText(x.detail, 600)}` })
      }
      if (bug.stops) stop = true
    }
    return { fatal, stop }
  }

  const account = (op: Op, r: Rendered, a: Answer, reached: { handler: boolean; service: boolean }) => {
    stats.requests++
    stats.byKind[op.kind]++
    if (reached.handler) stats.handledByKind[op.kind]++
    if (reached.service) stats.serviceByKind[op.kind]++
    if (r.bytes >= 1024 * 1024) stats.bodiesOver1MiB++
    stats.maxMs = Math.max(stats.maxMs, a.ms)
    const m = stats.byMethod.get(op.method) ?? { sent: 0, ok: 0 }
    m.sent++
    if (a.status === 200) {
      m.ok++
      stats.accepted++
    } else {
      stats.refused++
      if (a.status === 404) stats.notFound++
      if (a.status === 413 || /too large/i.test(a.body)) stats.tooLarge++
      let err = ''
      try {
        err = String((JSON.parse(a.body) as { Err?: unknown }).Err ?? '')
      } catch {
        // shape problems are reported by answerProblems
      }
      stats.maxErrLength = Math.max(stats.maxErrLength, err.length)
      if (/^internal error/i.test(err)) stats.internalErrors++
      if (!reached.handler || isParseOrSchemaRefusal(err)) stats.refusedBySchema++
      else stats.refusedByService++
    }
    stats.byMethod.set(op.method, m)
  }

  for (let k = 0; k < steps.length; k++) {
    const step = steps[k] as Step
    const violations: Violation[] = []
    let after: Observation
    let lastOp: Op | undefined
    if (!isParallel(step)) {
      const op = step
      lastOp = op
      const r = render(op, ctx)
      const started = performance.now()
      const res = await withTimeout(sut.send(r), o.requestTimeoutMs)
      if (res === 'timeout') {
        transcript.push(() => `#${k} ${describeOp(op)}\n      → no answer within ${o.requestTimeoutMs} ms`)
        throw new SequenceFailure([{ rule: 'hang', detail: `no answer within ${o.requestTimeoutMs} ms` }], transcript, k)
      }
      const a: Answer = { ...res, ms: performance.now() - started }
      const reached = sut.reached()
      account(op, r, a, reached)
      transcript.push(() => `#${k} ${describeOp(op)}\n      sent ${r.verb} ${shortText(r.url, 80)} ${sentText(r)}\n      → ${a.status} ${shortText(a.body)}`)
      after = await sut.observe()
      violations.push(...answerProblems(a.status, a.body))
      const method = effectiveMethod(op, r)
      if (a.status !== 200) {
        // (c) exactly unchanged: every file name and content, and the host's whole state.
        if (!sameFiles(before.store.files, after.store.files)) violations.push({ rule: 'refused-changed-state', detail: `the store changed:\n        ${filesDiff(before.store.files, after.store.files).join('\n        ')}` })
        if (before.host !== after.host) violations.push({ rule: 'refused-changed-state', detail: `the host changed:\n        ${sut.hostDiff(before.host, after.host).slice(0, 20).join('\n        ')}` })
      } else if (method === undefined) {
        violations.push({ rule: 'bad-answer', detail: `${r.verb} ${shortText(r.url, 80)} is no Docker call but was answered 200` })
      } else {
        let resp: unknown
        try {
          resp = JSON.parse(a.body)
        } catch {
          resp = undefined
        }
        violations.push(...transitionProblems(method, r.parsed(), resp, before.store, after.store, sut.hostRoutes))
      }
    } else {
      // Two requests at once: each answer has the right shape, and the invariants hold afterwards.
      stats.parallelPairs++
      const [x, y] = step.parallel
      const rx = render(x, ctx)
      const ry = render(y, ctx)
      const started = performance.now()
      const res = await withTimeout(Promise.all([sut.send(rx), sut.send(ry)]), o.requestTimeoutMs)
      if (res === 'timeout') {
        transcript.push(() => `#${k} ${describeStep(step)}\n      → no answer within ${o.requestTimeoutMs} ms`)
        throw new SequenceFailure([{ rule: 'hang', detail: `no answer within ${o.requestTimeoutMs} ms` }], transcript, k)
      }
      const ms = performance.now() - started
      const none = { handler: false, service: false }
      account(x, rx, { ...res[0], ms }, none)
      account(y, ry, { ...res[1], ms }, none)
      transcript.push(() => `#${k} ${describeStep(step)}\n      → ${res[0].status} ${shortText(res[0].body)}\n      → ${res[1].status} ${shortText(res[1].body)}`)
      after = await sut.observe()
      violations.push(...answerProblems(res[0].status, res[0].body), ...answerProblems(res[1].status, res[1].body))
      if (res[0].status !== 200 && res[1].status !== 200) {
        if (!sameFiles(before.store.files, after.store.files)) violations.push({ rule: 'refused-changed-state', detail: `both refused, yet the store changed:\n        ${filesDiff(before.store.files, after.store.files).join('\n        ')}` })
        if (before.host !== after.host) violations.push({ rule: 'refused-changed-state', detail: `both refused, yet the host changed:\n        ${sut.hostDiff(before.host, after.host).slice(0, 20).join('\n        ')}` })
      }
    }
    violations.push(...storeProblems(after.store), ...sut.hostProblems(after), ...sut.memoryProblems(after.store))
    const { fatal, stop } = triage(violations, lastOp, k, isParallel(step))
    if (fatal.length) throw new SequenceFailure(fatal, transcript, k)
    if (stop) return false
    updateContext(ctx, after.store)
    before = after
  }

  if (o.checkRestart) {
    stats.restarts++
    const { fatal, stop } = triage(await sut.restart(before), undefined, steps.length)
    if (fatal.length) {
      transcript.push(() => '(tsnet restarted over the same state directory and host)')
      throw new SequenceFailure(fatal, transcript, steps.length)
    }
    if (stop) return false
  }
  stats.cleanups++
  const finished = await sut.finish()
  const { fatal } = triage(finished, undefined, steps.length)
  if (fatal.length) {
    transcript.push(() => '(everything deleted through the API: DeleteEndpoint, DeleteNetwork, ReleasePool)')
    throw new SequenceFailure(fatal, transcript, steps.length)
  }
  return finished.length === 0
}

// ---------------------------------------------------------------- fast-check

export interface FuzzConfig {
  label: string
  seed: number
  numRuns: number
  /** Bound of the generating phase. */
  timeLimitMs: number
  /** Bound of shrinking a failure. */
  shrinkTimeLimitMs: number
  /** Bound of shrinking each known bug's first example. */
  knownShrinkTimeLimitMs: number
  /** Nothing starts after this (shrinking is cut short to stay within it). */
  totalTimeLimitMs: number
  minLength: number
  maxLength: number
  weights: Weights
  requestTimeoutMs: number
  knownBugs: readonly KnownBug[]
  /** Percentage of sequences that end with a restart check. */
  restartShare: number
  makeSut(): Promise<Sut>
  log(line: string): void
}

export interface FuzzOutcome {
  stats: Stats
  failure?: { report: string; violations: Violation[] }
  /** Per known bug that was hit: the shrunk reproduction. */
  shrunkKnown: Map<string, string>
  /** Time of the generating phase (without shrinking). */
  ms: number
  totalMs?: number
  interrupted: boolean
}

const plural = (n: number, what: string) => `${n} ${what}${n === 1 ? '' : 's'}`

export interface Sequence {
  /** Generated chunks (single steps, or stories kept together), sent in order. */
  chunks: Step[][]
  /** Restart tsnet at the end and check that nothing changes. */
  restart: boolean
}

export function sequenceOf(cfg: Pick<FuzzConfig, 'weights' | 'minLength' | 'maxLength' | 'restartShare'>): fc.Arbitrary<Sequence> {
  return fc.record({
    chunks: sequenceArb(cfg.weights, cfg.minLength, cfg.maxLength),
    restart: fc.integer({ min: 0, max: 99 }).map((n) => n < cfg.restartShare),
  })
}

function report(cfg: FuzzConfig, steps: Step[], restart: boolean, err: unknown, how: string): { report: string; violations: Violation[] } {
  const ran = err instanceof SequenceFailure ? steps.slice(0, err.stepIndex + 1) : steps
  const atEnd = err instanceof SequenceFailure && err.stepIndex >= steps.length
  const lines = [
    `${cfg.label}: ${how}`,
    `Minimal request sequence (${plural(ran.length, 'request')}${ran.length < steps.length ? `; ${plural(steps.length - ran.length, 'later one')} never ran` : ''}):`,
    ...ran.map((s, k) => `  #${k} ${describeStep(s)}`),
    ...(atEnd && restart ? ['  then: restart tsnet over the same state'] : []),
    ...(atEnd ? ['  then: delete everything through the API'] : []),
  ]
  if (err instanceof SequenceFailure) {
    lines.push('What happened:', ...err.transcript.map((l) => `  ${l()}`), `Violated at step #${err.stepIndex}:`, ...err.violations.map((x) => `  [${x.rule}] ${x.detail}`))
    return { report: lines.join('\n'), violations: err.violations }
  }
  lines.push(`Error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`)
  return { report: lines.join('\n'), violations: [{ rule: 'crash', detail: err instanceof Error ? err.message : String(err) }] }
}

export async function fuzz(cfg: FuzzConfig): Promise<FuzzOutcome> {
  const started = Date.now()
  const deadline = started + cfg.totalTimeLimitMs
  const left = () => deadline - Date.now()
  const stats = new Stats()
  let runIndex = 0
  let recording = true
  /** A system whose last sequence ended clean (everything deleted, host at its baseline) is reused. */
  let idle: Sut | undefined
  /**
   * The run in progress. fast-check's time limit abandons a running predicate without stopping
   * it, so every phase waits for it before the next one touches a system (or the namespace).
   */
  let inflight: Promise<unknown> = Promise.resolve()
  const settle = () => inflight.catch(() => undefined)
  const runSteps = (steps: Step[], restart: boolean, focus: string | undefined, into: Stats, index: number) => {
    const p = settle().then(() => runStepsNow(steps, restart, focus, into, index))
    inflight = p
    return p
  }
  /** Runs steps on a clean system; resolves when the properties held, rejects with what broke. */
  const runStepsNow = async (steps: Step[], restart: boolean, focus: string | undefined, into: Stats, index: number) => {
    const sut = idle ?? (await cfg.makeSut())
    idle = undefined
    let clean = false
    try {
      clean = await runSequence(sut, steps, into, {
        requestTimeoutMs: cfg.requestTimeoutMs, knownBugs: cfg.knownBugs, runIndex: index, checkRestart: restart, ...(focus ? { focus } : {}),
      })
    } finally {
      // A sequence that stopped early may still be cleaned up through the API; the system is reused
      // only when that left it exactly at its baseline (a fresh one is costly on the real kernel).
      if (!clean) clean = await sut.finish().then((v) => v.length === 0, () => false)
      if (clean && !idle) idle = sut
      else await sut.close()
    }
  }
  const stepsOf = (seq: Sequence) => seq.chunks.flat()
  const arb = sequenceOf(cfg)
  const main = fc.asyncProperty(arb, async (seq) => {
    const local = new Stats()
    const index = runIndex++
    try {
      await runSteps(stepsOf(seq), seq.restart, undefined, local, index)
    } finally {
      if (recording) stats.add(local)
    }
  })

  /**
   * After fast-check's shrinking: drop the steps after the failing one, then try the failing step
   * alone, then try removing each earlier step, keeping every removal after which the same rule
   * (and, when focused, the same known bug) still breaks. Bounded by `until`.
   */
  const reduce = async (steps: Step[], restart: boolean, err: unknown, focus: string | undefined, until: number) => {
    if (!(err instanceof SequenceFailure)) return { steps, err }
    const rule = err.violations[0]?.rule
    const atEnd = err.stepIndex >= steps.length
    let cur = steps.slice(0, err.stepIndex + 1)
    let best: SequenceFailure = err
    const attempt = async (cand: Step[]): Promise<boolean> => {
      if (Date.now() > until) return false
      try {
        await runSteps(cand, restart, focus, new Stats(), -1)
        return false
      } catch (e) {
        if (!(e instanceof SequenceFailure) || !e.violations.some((x) => x.rule === rule)) return false
        if (atEnd !== e.stepIndex >= cand.length) return false
        cur = cand.slice(0, e.stepIndex + 1)
        best = e
        return true
      }
    }
    if (cur.length > 1 && !atEnd) await attempt(cur.slice(-1))
    for (let i = cur.length - (atEnd ? 1 : 2); i >= 0 && Date.now() < until; i--) {
      if (i < cur.length - (atEnd ? 0 : 1)) await attempt([...cur.slice(0, i), ...cur.slice(i + 1)])
    }
    return { steps: cur, err: best }
  }

  // Phase 1: generate and run, stopping at the first failure without shrinking (bounded in time).
  const details = await fc.check(main, { seed: cfg.seed, numRuns: cfg.numRuns, endOnFailure: true, plugins: [fc.interruptAfterTimeLimit(cfg.timeLimitMs)] })
  recording = false
  await settle()
  const outcome: FuzzOutcome = { stats, shrunkKnown: new Map(), ms: Date.now() - started, interrupted: details.interrupted }

  // Phase 2: fast-check shrinks the failure, then the step-removal pass, both bounded; print the result.
  if (details.failed && details.counterexamplePath) {
    const budget = Math.max(1000, Math.min(cfg.shrinkTimeLimitMs, left()))
    const until = Date.now() + budget
    const shrunk = await fc.check(main, { seed: cfg.seed, path: details.counterexamplePath, plugins: [fc.interruptAfterTimeLimit(budget * 0.6)] })
    await settle()
    const d = (shrunk.failed && shrunk.counterexample ? shrunk : details) as fc.RunDetails<[Sequence]>
    const seq = d.counterexample?.[0] as Sequence
    const r = await reduce(stepsOf(seq), seq.restart, d.errorInstance, undefined, until)
    outcome.failure = report(cfg, r.steps, seq.restart, r.err,
      `property failed in sequence ${details.numRuns - 1}; shrunk by fast-check ${d.numShrinks} times, then by removing steps.\nReplay: FUZZ_SEED=${cfg.seed} (fast-check path ${d.counterexamplePath})`)
  } else if (details.failed) {
    outcome.failure = { report: `${cfg.label}: fast-check failed without a counterexample (interrupted=${details.interrupted})`, violations: [] }
  }

  // Known bugs: replay the first sequence that hit each one, failing on that bug only; shrink it the same way.
  let pending = stats.known.size
  for (const [id, rec] of stats.known) {
    const budget = Math.min(cfg.knownShrinkTimeLimitMs, left() / pending--)
    if (budget < 500) {
      outcome.shrunkKnown.set(id, `(not shrunk: no time left). The first sequence that hit it (sequence ${rec.firstRun}):\n${rec.example}`)
      continue
    }
    const until = Date.now() + budget
    const focused = fc.asyncProperty(arb, async (seq) => runSteps(stepsOf(seq), seq.restart, id, new Stats(), -1))
    const d = await fc.check(focused, { seed: cfg.seed, path: String(rec.firstRun), plugins: [fc.interruptAfterTimeLimit(budget * 0.6)] })
    await settle()
    if (d.failed && d.counterexample) {
      const seq = (d.counterexample as [Sequence])[0]
      const r = await reduce(stepsOf(seq), seq.restart, d.errorInstance, id, until)
      outcome.shrunkKnown.set(id, report(cfg, r.steps, seq.restart, r.err,
        `known bug ${id}, first hit in sequence ${rec.firstRun}; shrunk by fast-check ${d.numShrinks} times, then by removing steps.\nReplay: FUZZ_SEED=${cfg.seed} (fast-check path ${d.counterexamplePath})`).report)
    } else {
      outcome.shrunkKnown.set(id, `(not shrunk: the replay of sequence ${rec.firstRun} did not fail on ${id} within ${(budget / 1000).toFixed(1)} s). The first sequence that hit it:\n${rec.example}`)
    }
  }
  await settle()
  if (idle) await (idle as Sut).close()
  outcome.totalMs = Date.now() - started
  return outcome
}

/** FUZZ_SEED from the environment, else the fixed default. */
export function seedFromEnv(fallback: number): number {
  const text = process.env.FUZZ_SEED
  if (text === undefined || text === '') return fallback
  const n = Number(text)
  if (!Number.isInteger(n)) throw new Error(`FUZZ_SEED=${text} is not an integer`)
  return n | 0
}
