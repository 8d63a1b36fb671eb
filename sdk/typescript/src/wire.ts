// The REST API's JSON names fields in snake_case; the SDK in camelCase.
// fromWire and toWire convert whole bodies by one rule (camel, below) so
// that no field needs its own code; the spec test checks the rule against
// every field of api/openapi.yaml.

/**
 * Fields whose values are maps with the caller's own keys (metadata, env,
 * labels): their keys are never converted. The spec test fails when a map
 * field of api/openapi.yaml is missing here.
 */
export const MAP_FIELDS: ReadonlySet<string> = new Set(['metadata', 'env', 'labels', 'by_kind'])

/**
 * isDateField reports whether a wire field holds an RFC 3339 time, which
 * the SDK gives as a Date: every "*_at" field and "created". The spec test
 * checks that every date-time field of api/openapi.yaml is named so.
 */
export function isDateField(name: string): boolean {
  return name.endsWith('_at') || name === 'created'
}

/** toCamel is the SDK's name of a wire field: memory_mb -> memoryMB. */
export function toCamel(name: string): string {
  return name
    .split('_')
    .map((part, i) => (i === 0 ? part : part === 'mb' ? 'MB' : part.charAt(0).toUpperCase() + part.slice(1)))
    .join('')
}

/** toSnake is the wire name of an SDK field: memoryMB -> memory_mb. */
export function toSnake(name: string): string {
  return name.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toLowerCase()
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Date) && !ArrayBuffer.isView(v)
}

/** fromWire converts a decoded JSON body of the API to the SDK's shape. */
export function fromWire<T = unknown>(v: unknown): T {
  return convertIn(v) as T
}

function convertIn(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(convertIn)
  if (!isPlainObject(v)) return v
  const out: Record<string, unknown> = {}
  for (const [k, val] of Object.entries(v)) {
    if (MAP_FIELDS.has(k)) out[toCamel(k)] = val
    else if (isDateField(k) && typeof val === 'string') out[toCamel(k)] = new Date(val)
    else out[toCamel(k)] = convertIn(val)
  }
  return out
}

/**
 * toWire converts a request object of the SDK to the API's JSON shape:
 * keys to snake_case (not inside map fields), Dates to RFC 3339, and
 * undefined fields dropped.
 */
export function toWire(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(toWire)
  if (v instanceof Date) return v.toISOString()
  if (!isPlainObject(v)) return v
  const out: Record<string, unknown> = {}
  for (const [k, val] of Object.entries(v)) {
    if (val === undefined) continue
    const key = toSnake(k)
    out[key] = MAP_FIELDS.has(key) ? val : toWire(val)
  }
  return out
}
