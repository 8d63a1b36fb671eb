import { test } from 'node:test'
import assert from 'node:assert/strict'
import { stats } from './run.mjs'

test('stats trims the top and bottom 5% before the percentiles', () => {
  const values = Array.from({ length: 100 }, (_, i) => i + 1) // 1..100, then 1 -> 100000
  values[0] = 100000 // an outlier the trim must drop
  const s = stats(values)
  assert.equal(s.trimmed, 90)
  assert.equal(s.median, 51) // kept: 7..96, nearest rank 45
  assert.equal(s.p95, 92) // nearest rank 86
  assert.equal(s.max, 100000)
})

test('stats of nothing is empty, not a crash', () => {
  const s = stats([])
  assert.ok(Number.isNaN(s.median))
})
