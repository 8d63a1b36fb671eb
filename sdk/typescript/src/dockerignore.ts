// .dockerignore patterns, as moby/patternmatcher reads them (what docker
// build and sdk/go use): one pattern a line, # comments, "!" re-includes,
// "*" and "?" within a path segment, "**" across segments, [classes]; a
// pattern that matches a directory matches everything below it; the last
// matching pattern decides.

/** One compiled pattern. */
interface Pattern {
  text: string
  exclusion: boolean
  re: RegExp
}

/** DockerIgnore decides which paths of a build context are left out. */
export class DockerIgnore {
  private readonly patterns: Pattern[]

  constructor(text: string) {
    this.patterns = []
    for (const raw of text.split('\n')) {
      let line = raw.trim()
      if (line === '' || line.startsWith('#')) continue
      let exclusion = false
      if (line.startsWith('!')) {
        exclusion = true
        line = line.slice(1).trim()
      }
      line = clean(line)
      if (line.length > 1 && line.startsWith('/')) line = line.slice(1)
      if (line === '') continue
      this.patterns.push({ text: line, exclusion, re: compile(line) })
    }
  }

  /** ignored reports whether the slash-separated path rel is left out. */
  ignored(rel: string): boolean {
    const parents = rel.split('/')
    let matched = false
    for (const p of this.patterns) {
      let m = p.re.test(rel)
      for (let i = 1; !m && i < parents.length; i++) m = p.re.test(parents.slice(0, i).join('/'))
      if (m) matched = !p.exclusion
    }
    return matched
  }

  /**
   * mayReinclude reports whether a "!" pattern could let back in something
   * below the directory rel, so that a walk must still enter it.
   */
  mayReinclude(rel: string): boolean {
    return this.patterns.some((p) => p.exclusion && (p.text + '/').startsWith(rel + '/'))
      || this.patterns.some((p) => p.exclusion && /[*?[\\]/.test(p.text))
  }
}

/** clean is Go's path.Clean. */
function clean(p: string): string {
  const abs = p.startsWith('/')
  const out: string[] = []
  for (const part of p.split('/')) {
    if (part === '' || part === '.') continue
    if (part === '..') {
      if (out.length > 0 && out[out.length - 1] !== '..') out.pop()
      else if (!abs) out.push('..')
      continue
    }
    out.push(part)
  }
  const s = (abs ? '/' : '') + out.join('/')
  return s === '' ? '.' : s
}

/** compile turns a pattern into the regular expression patternmatcher builds. */
function compile(pattern: string): RegExp {
  let re = '^'
  for (let i = 0; i < pattern.length; i++) {
    const ch = pattern[i]!
    if (ch === '*') {
      if (pattern[i + 1] === '*') {
        i++
        if (pattern[i + 1] === '/') i++
        re += i + 1 >= pattern.length ? '.*' : '(.*/)?'
      } else {
        re += '[^/]*'
      }
    } else if (ch === '?') {
      re += '[^/]'
    } else if (ch === '[') {
      const end = pattern.indexOf(']', i + 1)
      if (end < 0) {
        re += '\\['
        continue
      }
      let cls = pattern.slice(i + 1, end)
      if (cls.startsWith('^') || cls.startsWith('!')) cls = '^' + cls.slice(1)
      re += `[${cls.replace(/\\/g, '\\\\')}]`
      i = end
    } else if (ch === '\\' && i + 1 < pattern.length) {
      i++
      re += escape(pattern[i]!)
    } else {
      re += escape(ch)
    }
  }
  return new RegExp(re + '$')
}

function escape(ch: string): string {
  return /[.+()|{}$^\]\\]/.test(ch) ? '\\' + ch : ch
}
