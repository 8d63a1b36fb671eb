#!/usr/bin/env node
// Fails when a committed generated file is stale: src/types.gen.ts against
// api/openapi.yaml (scripts/gen-types.mjs), and dist/ against src/ (tsc).
// Both are committed so that `npm install ./sdk/typescript` needs no build
// step; `npm run build` refreshes them. It also type-checks
// test/types/usage.ts, which uses the public API as a caller would.
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import { generate, specPath } from './gen-types.mjs'

const pkg = join(dirname(fileURLToPath(import.meta.url)), '..')
const tsc = join(pkg, 'node_modules', 'typescript', 'bin', 'tsc')
const problems = []

if (generate(readFileSync(specPath, 'utf8')) !== readFileSync(join(pkg, 'src', 'types.gen.ts'), 'utf8')) {
  problems.push('src/types.gen.ts differs from what api/openapi.yaml generates')
}

function files(dir) {
  const out = []
  for (const e of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile()) out.push(relative(dir, join(e.parentPath ?? e.path, e.name)))
  }
  return out.sort()
}

const tmp = mkdtempSync(join(tmpdir(), 'den-sdk-dist-'))
try {
  execFileSync(process.execPath, [tsc, '-p', join(pkg, 'tsconfig.json'), '--outDir', tmp], { stdio: 'inherit' })
  const want = files(tmp)
  const have = files(join(pkg, 'dist'))
  for (const f of want) {
    if (!have.includes(f)) problems.push(`dist/${f} is missing`)
    else if (readFileSync(join(tmp, f), 'utf8') !== readFileSync(join(pkg, 'dist', f), 'utf8')) problems.push(`dist/${f} is stale`)
  }
  for (const f of have) if (!want.includes(f)) problems.push(`dist/${f} has no source`)
} finally {
  rmSync(tmp, { recursive: true, force: true })
}

execFileSync(process.execPath, [tsc, '-p', join(pkg, 'test', 'types', 'tsconfig.json')], { stdio: 'inherit' })

if (problems.length > 0) {
  console.error(`${problems.join('\n')}\nrun \`npm run build\` in sdk/typescript and commit the result`)
  process.exit(1)
}
console.log('check-fresh: src/types.gen.ts and dist/ are up to date; test/types/usage.ts type-checks')
