/** Small statistics for the benchmark reports. */
export function quantile(xs: readonly number[], q: number): number {
  if (xs.length === 0) return NaN
  const s = [...xs].sort((a, b) => a - b)
  const i = Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))
  return s[i] as number
}
export const median = (xs: readonly number[]) => quantile(xs, 0.5)
export const p90 = (xs: readonly number[]) => quantile(xs, 0.9)
export const p99 = (xs: readonly number[]) => quantile(xs, 0.99)
export const fmt = (x: number, digits = 1) => (Number.isFinite(x) ? x.toFixed(digits) : '-')
/** `xs` started at position `r` (mod its length): interleaved rounds take turns going first. */
export const rotated = <T>(xs: readonly T[], r: number): T[] => [...xs.slice(r % xs.length), ...xs.slice(0, r % xs.length)]
/** "median [min-max]" of a sample. */
export const spread = (xs: readonly number[], digits = 1) => `${fmt(median(xs), digits)} [${fmt(Math.min(...xs), digits)}–${fmt(Math.max(...xs), digits)}]`

/**
 * A bootstrap interval (central `level`, 90 % by default) of median(a)/median(b), where a[i] and
 * b[i] were measured as a pair: pairs are resampled together, so what the machine did during one
 * pair stays in both halves. Seeded, so a report's interval is reproducible from its samples.
 */
export function pairedRatioInterval(a: readonly number[], b: readonly number[], level = 0.9, draws = 2000, seed = 1): [number, number] {
  const n = Math.min(a.length, b.length)
  if (n === 0) return [NaN, NaN]
  let s = seed >>> 0
  const next = () => { s = (Math.imul(s, 1664525) + 1013904223) >>> 0; return s / 2 ** 32 }
  const ratios: number[] = []
  for (let d = 0; d < draws; d++) {
    const ra: number[] = []
    const rb: number[] = []
    for (let i = 0; i < n; i++) {
      const k = Math.floor(next() * n)
      ra.push(a[k] as number)
      rb.push(b[k] as number)
    }
    ratios.push(median(ra) / median(rb))
  }
  return [quantile(ratios, (1 - level) / 2), quantile(ratios, 1 - (1 - level) / 2)]
}
