/** Where a bench's report goes: printed, and written to bench/results/<stem>-<date>.md. */
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { REPO_ROOT } from '../../test/e2e/lib/tsnet.js'

export function writeReport(stem: string, text: string): string {
  const dir = join(REPO_ROOT, 'bench', 'results')
  mkdirSync(dir, { recursive: true })
  const file = join(dir, `${stem}-${new Date().toISOString().slice(0, 10)}.md`)
  writeFileSync(file, text)
  console.log(text)
  console.log(`written to ${file}`)
  return file
}

/** Runs a bench's main, printing a failure and setting the exit code instead of throwing. */
export function runBench(main: () => Promise<void>): void {
  main().catch((err: unknown) => {
    console.error(err)
    process.exitCode = 1
  })
}
