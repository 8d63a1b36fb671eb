// Where the client finds its server: the options, else DEN_URL and
// DEN_API_KEY, else the env file `den up` writes into its data directory.
// The same rules as sdk/go/config.go and the den CLI.
import { readFileSync } from 'node:fs'
import { homedir, tmpdir } from 'node:os'
import { join } from 'node:path'
import { NotConfiguredError } from './errors.js'

/** Environment variables that configure the client. */
export const ENV_URL = 'DEN_URL'
export const ENV_API_KEY = 'DEN_API_KEY'
export const ENV_DATA_DIR = 'DEN_DATA_DIR'
/** The sandbox traffic listener, where port URLs point (`den up` writes it). */
export const ENV_SANDBOX_URL = 'E2B_SANDBOX_URL'

/**
 * defaultDataDir is den's data directory: $DEN_DATA_DIR, else /var/lib/den
 * for root, else ~/.local/share/den.
 */
export function defaultDataDir(): string {
  const d = process.env[ENV_DATA_DIR]
  if (d) return d
  if (process.getuid?.() === 0) return '/var/lib/den'
  try {
    return join(homedir(), '.local', 'share', 'den')
  } catch {
    return join(tmpdir(), 'den')
  }
}

/**
 * readEnvFile parses a shell-style env file: KEY=VALUE lines, optionally
 * prefixed with "export " and with single- or double-quoted values; blank
 * lines and # comments are skipped. A missing file is an empty map.
 */
export function readEnvFile(path: string): Record<string, string> {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return {}
    throw e
  }
  const vars: Record<string, string> = {}
  text.split('\n').forEach((raw, i) => {
    let line = raw.trim()
    if (line === '' || line.startsWith('#')) return
    if (line.startsWith('export ')) line = line.slice('export '.length).trim()
    const eq = line.indexOf('=')
    const key = eq < 0 ? '' : line.slice(0, eq).trim()
    if (key === '') throw new Error(`read env file ${path} line ${i + 1}: want KEY=VALUE, got ${JSON.stringify(line)}`)
    let value = line.slice(eq + 1).trim()
    if (value.length >= 2 && value.startsWith("'") && value.endsWith("'")) {
      value = value.slice(1, -1)
    } else if (value.length >= 2 && value.startsWith('"') && value.endsWith('"')) {
      try {
        value = JSON.parse(value) as string
      } catch {
        throw new Error(`read env file ${path} line ${i + 1}: bad quoted value for ${key}`)
      }
    }
    vars[key] = value
  })
  return vars
}

/** Resolved connection settings. */
export interface ResolvedConfig {
  url: string
  apiKey: string
  /** The sandbox traffic listener (port URLs); "" when unknown. */
  sandboxUrl: string
}

/** Settings given in code; unset ones come from the environment. */
export interface ConfigOptions {
  /** Server base URL, e.g. "http://127.0.0.1:7070". Default: $DEN_URL, else den up's env file. */
  url?: string
  /** API key. Default: $DEN_API_KEY, else den up's env file. */
  apiKey?: string
  /** The sandbox traffic listener for port URLs. Default: $E2B_SANDBOX_URL, else den up's env file. */
  sandboxUrl?: string
  /** Data directory whose env file is read. Default: defaultDataDir(). */
  dataDir?: string
}

/**
 * resolveConfig fills the unset options from the environment and then
 * from <dataDir>/env, the file `den up` writes. It throws
 * NotConfiguredError when no URL is found.
 */
export function resolveConfig(opts: ConfigOptions = {}): ResolvedConfig {
  const cfg: ResolvedConfig = {
    url: opts.url || process.env[ENV_URL] || '',
    apiKey: opts.apiKey || process.env[ENV_API_KEY] || '',
    sandboxUrl: opts.sandboxUrl || process.env[ENV_SANDBOX_URL] || '',
  }
  if (!cfg.url || !cfg.apiKey || !cfg.sandboxUrl) {
    const vars = readEnvFile(join(opts.dataDir || defaultDataDir(), 'env'))
    if (!cfg.url || !cfg.apiKey) {
      cfg.url ||= vars[ENV_URL] ?? ''
      cfg.apiKey ||= vars[ENV_API_KEY] ?? ''
    }
    // The file's sandbox listener belongs to the file's server only.
    if (!cfg.sandboxUrl && trimSlash(cfg.url) === trimSlash(vars[ENV_URL] ?? '')) {
      cfg.sandboxUrl = vars[ENV_SANDBOX_URL] ?? ''
    }
  }
  if (!cfg.url) {
    throw new NotConfiguredError('den: no server URL: set DEN_URL and DEN_API_KEY, or start den with `den up`')
  }
  let u: URL
  try {
    u = new URL(cfg.url)
  } catch {
    throw new NotConfiguredError(`den: invalid server URL ${JSON.stringify(cfg.url)}: want http(s)://host[:port]`)
  }
  if ((u.protocol !== 'http:' && u.protocol !== 'https:') || !u.host) {
    throw new NotConfiguredError(`den: invalid server URL ${JSON.stringify(cfg.url)}: want http(s)://host[:port]`)
  }
  cfg.url = trimSlash(cfg.url)
  cfg.sandboxUrl = trimSlash(cfg.sandboxUrl)
  return cfg
}

function trimSlash(u: string): string {
  return u.replace(/\/+$/, '')
}
