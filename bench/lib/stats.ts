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
/** "median [min-max]" of a sample. */
export const spread = (xs: readonly number[], digits = 1) => `${fmt(median(xs), digits)} [${fmt(Math.min(...xs), digits)}–${fmt(Math.max(...xs), digits)}]`
