/**
 * @den/sdk: the TypeScript SDK of den, self-hostable sandboxes for AI
 * agents.
 *
 * ```ts
 * import { Sandbox } from '@den/sdk'
 * const sb = await Sandbox.create({ image: 'busybox' })
 * const r = await sb.commands.run('echo hi')
 * console.log(r.stdout, r.exitCode)
 * await sb.kill()
 * ```
 *
 * The client reads DEN_URL and DEN_API_KEY, else the env file `den up`
 * writes in its data directory. Every call returns a Promise; streams are
 * async iterators. Errors are DenError, and APIError subclasses per
 * server error code.
 */
export { Client, Snapshots, Pools, SSHKeys, Tenants, APIKeys, JoinTokens, Nodes, Cluster } from './client.js';
export { Sandbox, Sandboxes } from './sandbox.js';
export { Commands, CommandHandle, Pty, } from './commands.js';
export { Files, Watcher } from './files.js';
export { Images } from './images.js';
export { portSignature } from './ports.js';
export { resolveConfig, readEnvFile, defaultDataDir, ENV_URL, ENV_API_KEY, ENV_DATA_DIR, ENV_SANDBOX_URL } from './config.js';
export { DenError, NotConfiguredError, TimeoutError, APIError, InternalError, NotFoundError, InvalidArgumentError, ConflictError, AlreadyExistsError, FailedPreconditionError, ResourceExhaustedError, UnavailableError, UnsupportedError, UnauthenticatedError, PermissionDeniedError, InsufficientStorageError, CanceledError, TooLargeError, } from './errors.js';
