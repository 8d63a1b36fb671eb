/**
 * Fields whose values are maps with the caller's own keys (metadata, env,
 * labels): their keys are never converted. The spec test fails when a map
 * field of api/openapi.yaml is missing here.
 */
export declare const MAP_FIELDS: ReadonlySet<string>;
/**
 * isDateField reports whether a wire field holds an RFC 3339 time, which
 * the SDK gives as a Date: every "*_at" field and "created". The spec test
 * checks that every date-time field of api/openapi.yaml is named so.
 */
export declare function isDateField(name: string): boolean;
/** toCamel is the SDK's name of a wire field: memory_mb -> memoryMB. */
export declare function toCamel(name: string): string;
/** toSnake is the wire name of an SDK field: memoryMB -> memory_mb. */
export declare function toSnake(name: string): string;
/** fromWire converts a decoded JSON body of the API to the SDK's shape. */
export declare function fromWire<T = unknown>(v: unknown): T;
/**
 * toWire converts a request object of the SDK to the API's JSON shape:
 * keys to snake_case (not inside map fields), Dates to RFC 3339, and
 * undefined fields dropped.
 */
export declare function toWire(v: unknown): unknown;
