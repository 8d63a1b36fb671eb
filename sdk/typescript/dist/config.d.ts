/** Environment variables that configure the client. */
export declare const ENV_URL = "DEN_URL";
export declare const ENV_API_KEY = "DEN_API_KEY";
export declare const ENV_DATA_DIR = "DEN_DATA_DIR";
/** The sandbox traffic listener, where port URLs point (`den up` writes it). */
export declare const ENV_SANDBOX_URL = "E2B_SANDBOX_URL";
/**
 * defaultDataDir is den's data directory: $DEN_DATA_DIR, else /var/lib/den
 * for root, else ~/.local/share/den.
 */
export declare function defaultDataDir(): string;
/**
 * readEnvFile parses a shell-style env file: KEY=VALUE lines, optionally
 * prefixed with "export " and with single- or double-quoted values; blank
 * lines and # comments are skipped. A missing file is an empty map.
 */
export declare function readEnvFile(path: string): Record<string, string>;
/** Resolved connection settings. */
export interface ResolvedConfig {
    url: string;
    apiKey: string;
    /** The sandbox traffic listener (port URLs); "" when unknown. */
    sandboxUrl: string;
}
/** Settings given in code; unset ones come from the environment. */
export interface ConfigOptions {
    /** Server base URL, e.g. "http://127.0.0.1:7070". Default: $DEN_URL, else den up's env file. */
    url?: string;
    /** API key. Default: $DEN_API_KEY, else den up's env file. */
    apiKey?: string;
    /** The sandbox traffic listener for port URLs. Default: $E2B_SANDBOX_URL, else den up's env file. */
    sandboxUrl?: string;
    /** Data directory whose env file is read. Default: defaultDataDir(). */
    dataDir?: string;
}
/**
 * resolveConfig fills the unset options from the environment and then
 * from <dataDir>/env, the file `den up` writes. It throws
 * NotConfiguredError when no URL is found.
 */
export declare function resolveConfig(opts?: ConfigOptions): ResolvedConfig;
