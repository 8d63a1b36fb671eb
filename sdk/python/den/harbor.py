"""A Harbor environment provider: Harbor trials in den sandboxes.

Harbor (PyPI ``harbor``, the Terminal-Bench harness) runs every trial of a
job in an *environment*. :class:`DenEnvironment` is one, loaded by import
path::

    harbor run --path tasks --agent oracle --env den.harbor:DenEnvironment

(``--environment-import-path den.harbor:DenEnvironment`` is the older
spelling.) It needs Harbor, which needs Python >= 3.12, installed next to
this SDK; ``import den`` never imports this module. The server and key come
from DEN_URL and DEN_API_KEY, else from the env file ``den up`` writes, as
for every den client. Building images needs an admin key (the one ``den up``
prints).

What a trial gets:

- Its image. A task whose ``[environment]`` names a ``docker_image`` runs
  that image: a den image of that name, else pulled from its registry once.
  Otherwise den builds the task's ``environment/Dockerfile``, with
  ``environment/`` as the build context, into the image
  ``harbor-<hash>``, where the hash is Harbor's hash of every file in
  ``environment/``. Later trials and jobs reuse it until a file changes;
  ``--force-build`` builds it again (once per process), den's build cache
  still applying.
- One sandbox for the trial, made at ``start`` and killed at ``stop``: the
  task's ``cpus``, ``memory_mb`` and ``storage_mb`` (den's defaults where
  unset), the task's ``[environment.env]``, and its network policy. The
  image's ``ENV``, ``WORKDIR`` and ``USER`` apply to commands as under
  ``docker exec``. The sandbox has no running-time limit by default and is
  killed after ``idle_timeout_sec`` (an hour) without a command or a file
  transfer, so one a crashed Harbor left behind does not run forever.
- Network policies: ``public`` is den's ``{"internet": true}``,
  ``no-network`` is ``{"internet": false}``, ``allowlist`` is
  ``{"internet": false, "allow": allowed_hosts}`` (hostnames,
  ``*.domain``, IPv4 addresses and CIDRs; den sandboxes have no IPv6).
  Policies that differ between the agent and verifier phases are applied to
  the running sandbox when Harbor switches phases.

Options (``--ek key=value``): ``idle_timeout_sec``, ``sandbox_timeout_sec``
and ``runtime``; see :class:`DenEnvironmentOptions`.
"""

from __future__ import annotations

import asyncio
import shlex
import stat
from pathlib import Path
from typing import Any

try:
    from harbor.environments.base import (
        BaseEnvironment,
        ExecResult,
        SandboxBuildFailedError,
    )
    from harbor.environments.capabilities import (
        EnvironmentCapabilities,
        EnvironmentResourceCapabilities,
    )
    from harbor.environments.definition import (
        COMPOSE_FILE_NAME,
        DOCKERFILE_NAME,
        require_agent_environment_definition,
        should_use_prebuilt_docker_image,
    )
    from harbor.environments.options import EnvironmentOptions
    from harbor.models.task.config import NetworkMode, NetworkPolicy
    from pydantic import Field
except ImportError as e:  # pragma: no cover - depends on the installation
    raise ImportError(
        "den.harbor needs Harbor (the Terminal-Bench harness), which needs Python >= 3.12: "
        "pip install harbor, in the environment that has den-sdk"
    ) from e

import den

__all__ = ["DenEnvironment", "DenEnvironmentOptions", "den_network_policy"]

# Files Harbor transfers belong to root, as with ``docker cp``: Harbor writes
# root-owned paths such as /tests, /solution and /logs whatever the image's
# USER is.
_ROOT = "root"
# Timeout of the helper commands the provider runs itself (chmod, id).
_HELPER_TIMEOUT_SEC = 60
# The mode den's files API gives a file it writes.
_WRITTEN_MODE = 0o644


class DenEnvironmentOptions(EnvironmentOptions):
    """The options of :class:`DenEnvironment`, set with ``--ek key=value``."""

    idle_timeout_sec: int = Field(
        default=3600,
        ge=0,
        le=2592000,
        description="Seconds without a command or file transfer after which den kills a "
        "trial's sandbox, so one a Harbor process left behind does not run forever; "
        "0: never. A running command counts as activity for as long as it runs.",
    )
    sandbox_timeout_sec: int = Field(
        default=0,
        ge=0,
        le=2592000,
        description="Running life of a trial's sandbox in seconds, after which den kills "
        "it; 0: no limit (stop() or the idle timeout ends it).",
    )
    runtime: str | None = Field(
        default=None,
        description="den runtime of the sandboxes (gvisor, or qemu for a microVM with "
        "its own kernel); default: the server's. `den info` lists them.",
    )


def den_network_policy(policy: NetworkPolicy) -> dict[str, Any]:
    """den's network policy for one of Harbor's: public is the internet,
    no-network nothing, allowlist only the allowed hosts."""
    if policy.network_mode == NetworkMode.PUBLIC:
        return {"internet": True}
    if policy.network_mode == NetworkMode.NO_NETWORK:
        return {"internet": False}
    return {"internet": False, "allow": list(policy.allowed_hosts)}


# One build of an image at a time in this process: trials of the same task
# (or of tasks with the same environment/) start together, and the first
# builds while the others wait, then reuse it. Keyed by tag; a lock belongs
# to the event loop that made it, so a new loop gets new locks.
_build_locks: dict[str, tuple[asyncio.AbstractEventLoop, asyncio.Lock]] = {}
# Tags force_build has rebuilt in this process: --force-build builds each
# image once per job, not once per trial.
_rebuilt: set[str] = set()


def _build_lock(tag: str) -> asyncio.Lock:
    loop = asyncio.get_running_loop()
    entry = _build_locks.get(tag)
    if entry is None or entry[0] is not loop:
        entry = (loop, asyncio.Lock())
        _build_locks[tag] = entry
    return entry[1]


class DenEnvironment(BaseEnvironment):
    """Runs a Harbor trial in a den sandbox; see the module's documentation.

    A trial's environment is used from one event loop. ``start`` makes the
    sandbox and ``stop`` kills it; every other method needs a started
    environment and raises RuntimeError otherwise.
    """

    options_model = DenEnvironmentOptions
    options: DenEnvironmentOptions

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._client: den.AsyncClient | None = None
        self._sandbox: den.AsyncSandbox | None = None
        self._user_names: dict[int, str] = {}
        super().__init__(*args, **kwargs)

    @staticmethod
    def type() -> str:
        return "den"

    @classmethod
    def resource_capabilities(cls) -> EnvironmentResourceCapabilities:
        # den places a sandbox by its cpus and memory (a reservation) and
        # holds it to them (a limit), in fractions of a CPU if asked.
        return EnvironmentResourceCapabilities(
            cpu_limit=True,
            cpu_request=True,
            memory_limit=True,
            memory_request=True,
            fractional_cpus=True,
        )

    @property
    def capabilities(self) -> EnvironmentCapabilities:
        return EnvironmentCapabilities(
            disable_internet=True,
            network_allowlist=True,
            network_allowlist_hostnames=True,
            network_allowlist_wildcard_hostnames=True,
            network_allowlist_ipv4_addresses=True,
            network_allowlist_ipv4_cidrs=True,
            dynamic_network_policy=True,
        )

    @classmethod
    def preflight(cls, kwargs: dict[str, Any] | None = None) -> None:
        """Checks, before a job queues trials, that den answers with the key
        this process would use. It runs in Harbor's event loop, so it uses
        the synchronous client (one short request)."""
        super().preflight(kwargs)
        where = (
            "DEN_URL and DEN_API_KEY (what `den up` printed), or DEN_DATA_DIR (the data "
            "directory whose env file `den up` wrote; default /var/lib/den for root)"
        )
        try:
            with den.Client(timeout=10.0) as client:
                client.info()
        except den.ConfigError as e:
            raise SystemExit(f"den.harbor:DenEnvironment: {e}; it reads {where}") from None
        except den.UnauthorizedError as e:
            raise SystemExit(f"den.harbor:DenEnvironment: den refused the API key ({e}); set {where}") from None
        except den.ConnectionError as e:
            raise SystemExit(f"den.harbor:DenEnvironment: cannot reach den ({e}): is `den up` running? It reads {where}") from None
        except den.DenError as e:
            raise SystemExit(f"den.harbor:DenEnvironment: GET /v1/info failed: {e}") from None

    def _validate_definition(self) -> None:
        docker_image = self.task_env_config.docker_image
        require_agent_environment_definition(self.environment_dir, docker_image=docker_image)
        if not docker_image and not (self.environment_dir / DOCKERFILE_NAME).exists():
            raise ValueError(
                f"{self.environment_dir / COMPOSE_FILE_NAME}: den runs one container per trial, "
                f"not a Docker Compose project; give the task an {DOCKERFILE_NAME} in "
                f"{self.environment_dir} or an [environment] docker_image"
            )

    # ----- lifecycle ----------------------------------------------------------

    async def start(self, force_build: bool) -> None:
        """Makes the trial's image (see the module's documentation) and
        starts its sandbox."""
        self._client = den.AsyncClient()
        image = await self._image(force_build)
        self._sandbox = await den.AsyncSandbox.create(
            image,
            client=self._client,
            cpus=self._effective_cpus,
            memory_mb=self._effective_memory_mb,
            disk_mb=self._effective_storage_mb,
            env=self._startup_env() or None,
            metadata=self._metadata(),
            timeout=self.options.sandbox_timeout_sec,
            idle_timeout=self.options.idle_timeout_sec,
            runtime=self.options.runtime,
            network=den_network_policy(self.network_policy),
        )
        self.logger.debug(f"den sandbox {self._sandbox.id} runs {self.session_id}")
        if workdir := self.task_env_config.workdir:
            # As Docker does for a working_dir the image lacks.
            await self._run_as_root(f"mkdir -p {shlex.quote(workdir)}")
        await self.ensure_dirs(self._mount_targets(writable_only=True))
        await self._upload_environment_dir_after_start()

    async def stop(self, delete: bool) -> None:
        """Kills the sandbox. With delete False it keeps running for a look
        inside (den exec ID, den ssh); its idle timeout still ends it."""
        sandbox, self._sandbox = self._sandbox, None
        client, self._client = self._client, None
        try:
            if sandbox is None:
                return
            if not delete:
                self.logger.info(
                    f"den sandbox {sandbox.id} of {self.session_id} keeps running (delete=False); "
                    f"`den rm {sandbox.id}` removes it"
                )
                return
            try:
                await sandbox.kill()
            except den.NotFoundError:
                pass  # already gone: its timeout or someone else removed it
            except den.DenError as e:
                idle = self.options.idle_timeout_sec
                self.logger.warning(
                    f"could not kill den sandbox {sandbox.id} of {self.session_id}: {e}; "
                    + (f"den kills it after {idle}s idle" if idle else f"`den rm {sandbox.id}` removes it")
                )
        finally:
            if client is not None:
                await client.aclose()

    def _metadata(self) -> dict[str, str]:
        # Traces a sandbox, in `den ls` or GET /v1/sandboxes, to its trial.
        md = {
            "harbor.session_id": self.session_id,
            "harbor.environment": self.environment_name,
            "harbor.environment_id": self.environment_id,
            "harbor.trial_name": self.trial_paths.trial_dir.name,
        }
        if self.context_id is not None:
            md["harbor.context_id"] = str(self.context_id)
        return md

    # ----- images -------------------------------------------------------------

    async def _image(self, force_build: bool) -> str:
        """The ID of the trial's image, pulled or built as needed. An ID,
        not a name: a later build under the same name cannot change what a
        running job's trials start from."""
        ref = self.task_env_config.docker_image
        if should_use_prebuilt_docker_image(self.environment_dir, docker_image=ref, force_build=force_build):
            assert ref is not None
            return await self._prebuilt_image(ref)
        return await self._built_image(force_build)

    async def _prebuilt_image(self, ref: str) -> str:
        client = self._require_client()
        try:
            return (await client.images.get(ref)).id
        except den.NotFoundError:
            pass
        self.logger.info(f"den has no image {ref}; pulling it")
        try:
            return (await client.images.pull(ref)).id
        except den.DenError as e:
            # Harbor's error policy: the environment could not be made, so
            # the trial is not graded (and is retried under --max-retries).
            raise SandboxBuildFailedError(
                f"den could not pull the task's docker_image {ref!r}: {e}. Pull it with "
                f"`den image pull {ref}` (an admin key; credentials for a private registry), "
                f"or import it with `docker save {ref} | den image import --name {ref} -`"
            ) from e

    @property
    def image_name(self) -> str:
        """The name of the image built from the task's environment/:
        ``harbor-`` and the first 16 hex digits of Harbor's hash of it."""
        return f"harbor-{self.environment_id[:16]}"

    async def _built_image(self, force_build: bool) -> str:
        client = self._require_client()
        tag = self.image_name
        async with _build_lock(tag):
            if not force_build or tag in _rebuilt:
                try:
                    image = await client.images.get(tag)
                except den.NotFoundError:
                    pass
                else:
                    # Debug: one line per trial would crowd Harbor's console.
                    self.logger.debug(f"reusing den image {tag} ({image.id[:19]}) for {self.environment_name}")
                    return image.id
            dockerfile = self.environment_dir / DOCKERFILE_NAME
            self.logger.info(f"building den image {tag} from {dockerfile}")

            def on_log(line: str) -> None:
                self.logger.debug(f"den build {tag}: {line}")

            try:
                result = await client.images.build(self.environment_dir, tag=tag, on_log=on_log)
            except den.PermissionDeniedError as e:
                raise SandboxBuildFailedError(
                    f"den refused to build {dockerfile}: {e}. Building images needs an admin key, "
                    "such as the DEN_API_KEY `den up` printed"
                ) from e
            except den.DenError as e:
                # A failed step, a refused context, an unreachable den: the
                # environment could not be made, so Harbor does not grade the
                # trial (and retries it under --max-retries).
                tail = "\n".join(e.log[-20:]) if isinstance(e, den.BuildError) else ""
                raise SandboxBuildFailedError(
                    f"den could not build {dockerfile}: {e}" + (f"\nlast lines of the build log:\n{tail}" if tail else "")
                ) from e
            if force_build:
                _rebuilt.add(tag)
            self.logger.info(f"built den image {tag} ({result.id[:19]})")
            return result.id

    # ----- network ------------------------------------------------------------

    async def _apply_network_policy(self, network_policy: NetworkPolicy) -> None:
        # Harbor calls this, through set_network_policy, when the agent or
        # verifier phase has a policy other than the sandbox's baseline. den
        # answers once the new rules are in place.
        sandbox = self._require_sandbox()
        policy = den_network_policy(network_policy)
        await sandbox.set_network(policy)
        self.logger.debug(f"den sandbox {sandbox.id} network: {policy}")

    # ----- commands -----------------------------------------------------------

    async def exec(
        self,
        command: str,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        timeout_sec: int | None = None,
        user: str | int | None = None,
    ) -> ExecResult:
        """Runs command with bash -c, as user (default: Harbor's default
        user, else the image's USER), in cwd (default: the task's workdir,
        else the image's WORKDIR), with the image's ENV under the task's,
        the trial's and env. A command still running after timeout_sec is
        killed and RuntimeError raised, as Harbor's docker environment does.
        """
        sandbox = self._require_sandbox()
        name = await self._user_name(self._resolve_user(user))
        emit = self._output_callback()
        on_stdout = on_stderr = None
        if emit is not None:

            async def on_stdout(text: str) -> None:
                await emit(text, "stdout")

            async def on_stderr(text: str) -> None:
                await emit(text, "stderr")

        try:
            result = await sandbox.commands.run(
                command,
                cwd=cwd or self.task_env_config.workdir,
                envs=self._merge_env(env),
                user=name,
                timeout=timeout_sec or None,
                on_stdout=on_stdout,
                on_stderr=on_stderr,
            )
        except den.TimeoutError as e:
            raise RuntimeError(f"Command timed out after {timeout_sec} seconds") from e
        return ExecResult(stdout=result.stdout, stderr=result.stderr, return_code=result.exit_code)

    async def _user_name(self, user: str | int | None) -> str | None:
        """den names users by name; Harbor may give a UID."""
        if isinstance(user, str) and user.isdigit():
            user = int(user)
        if not isinstance(user, int):
            return user
        if user not in self._user_names:
            r = await self._require_sandbox().commands.run(
                f"id -un {user}", user=_ROOT, timeout=_HELPER_TIMEOUT_SEC
            )
            if r.exit_code != 0:
                raise RuntimeError(f"no user with UID {user} in the sandbox's image: {r.stderr.strip()}")
            self._user_names[user] = r.stdout.strip()
        return self._user_names[user]

    # ----- files --------------------------------------------------------------

    async def upload_file(self, source_path: Path | str, target_path: str) -> None:
        """Writes the local file to target_path as root, keeping its
        permission bits; parents are created."""
        sandbox = self._require_sandbox()
        source = Path(source_path)
        await sandbox.files.write(target_path, source, user=_ROOT)  # streamed from the file
        mode = stat.S_IMODE(source.stat().st_mode)
        if mode != _WRITTEN_MODE:
            await self._run_as_root(f"chmod {mode:o} {shlex.quote(target_path)}")

    async def upload_dir(self, source_dir: Path | str, target_dir: str) -> None:
        """Copies the local directory's contents into target_dir (created
        when missing) as one tar stream, unpacked as root: modes, symbolic
        links and empty directories survive, as with docker cp."""
        source = Path(source_dir)
        if not source.is_dir():
            raise FileNotFoundError(f"upload_dir: {source} is not a directory")
        await self._require_sandbox().files.upload_dir(source, target_dir, user=_ROOT)

    async def download_file(self, source_path: str, target_path: Path | str) -> None:
        """Copies the sandbox's file to the local path, streamed; parents are
        created."""
        sandbox = self._require_sandbox()
        target = Path(target_path)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            with target.open("wb") as f:
                async for chunk in sandbox.files.read_stream(source_path, user=_ROOT):
                    f.write(chunk)
        except BaseException:
            target.unlink(missing_ok=True)
            raise

    async def download_dir(self, source_dir: str, target_dir: Path | str) -> None:
        """Copies the sandbox's directory's contents into the local
        target_dir (created when missing, existing files overwritten) as one
        tar stream."""
        await self._require_sandbox().files.download_dir(source_dir, target_dir, user=_ROOT)

    # ----- helpers ------------------------------------------------------------

    async def _run_as_root(self, command: str) -> None:
        r = await self._require_sandbox().commands.run(command, user=_ROOT, cwd="/", timeout=_HELPER_TIMEOUT_SEC)
        if r.exit_code != 0:
            raise RuntimeError(f"{command} failed (exit {r.exit_code}): {r.stderr.strip()}")

    def _require_client(self) -> den.AsyncClient:
        if self._client is None:
            raise RuntimeError("den environment not started: call start() first")
        return self._client

    def _require_sandbox(self) -> den.AsyncSandbox:
        if self._sandbox is None:
            raise RuntimeError("den environment has no sandbox: call start() first (or it was stopped)")
        return self._sandbox
