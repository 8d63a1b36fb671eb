// .dockerignore matching, with the cases of moby/patternmatcher's behaviour
// that build contexts depend on.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { DockerIgnore } from '../../dist/dockerignore.js'

const cases = [
  // [patterns, path, ignored]
  ['*.log', 'a.log', true],
  ['*.log', 'dir/a.log', false], // * stays within a segment, from the root
  ['**/*.log', 'dir/sub/a.log', true],
  ['**/*.log', 'a.log', true],
  ['node_modules', 'node_modules/x/y.js', true], // a directory's contents
  ['/build', 'build/out', true], // a leading slash is the root
  ['./build', 'build', true],
  ['dir/*', 'dir/a', true],
  ['dir/*', 'dir', false],
  ['a?c', 'abc', true],
  ['a?c', 'a/c', false],
  ['[ab].txt', 'b.txt', true],
  ['[!ab].txt', 'c.txt', true],
  ['[!ab].txt', 'a.txt', false],
  ['*\n!keep.log', 'keep.log', false], // the last match decides
  ['*.log\n!keep.log\nkeep.log', 'keep.log', true],
  ['# comment\n\n  *.tmp  ', 'x.tmp', true],
  ['docs/**', 'docs/a/b.md', true],
  ['docs/**\n!docs/keep/**', 'docs/keep/x.md', false],
  ['a.b', 'aab', false], // . is literal
]

for (const [patterns, path, ignored] of cases) {
  test(`${JSON.stringify(patterns)} ${ignored ? 'ignores' : 'keeps'} ${path}`, () => {
    assert.equal(new DockerIgnore(patterns).ignored(path), ignored)
  })
}

test('a directory is entered when a ! pattern may let something below it back in', () => {
  const di = new DockerIgnore('docs\n!docs/keep.md')
  assert.equal(di.ignored('docs'), true)
  assert.equal(di.mayReinclude('docs'), true)
  assert.equal(di.ignored('docs/keep.md'), false)
  assert.equal(di.mayReinclude('other'), false)
})
