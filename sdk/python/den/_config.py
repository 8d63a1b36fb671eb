"""Where the client finds its server: arguments, the environment, or the env
file ``den up`` writes into its data directory. The same rules as the Go SDK
(sdk/go/config.go) and the den CLI."""

from __future__ import annotations

import ast
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from .errors import ConfigError

ENV_URL = "DEN_URL"
ENV_API_KEY = "DEN_API_KEY"
ENV_DATA_DIR = "DEN_DATA_DIR"
# The sandbox traffic listener (port URLs), as den up writes it.
ENV_SANDBOX_URL = "E2B_SANDBOX_URL"

NOT_CONFIGURED = "den: no server URL: set DEN_URL and DEN_API_KEY, or start den with `den up`"


def default_data_dir() -> Path:
    """den's data directory: $DEN_DATA_DIR, else /var/lib/den for root, else
    ~/.local/share/den."""
    d = os.environ.get(ENV_DATA_DIR)
    if d:
        return Path(d)
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return Path("/var/lib/den")
    return Path.home() / ".local" / "share" / "den"


def read_env_file(path: str | os.PathLike[str]) -> dict[str, str]:
    """Parse a shell-style env file: KEY=VALUE lines, optionally prefixed with
    ``export`` and with single- or double-quoted values; blank lines and
    ``#`` comments are skipped. Raises FileNotFoundError when it is absent and
    ValueError naming the line when one is malformed."""
    out: dict[str, str] = {}
    with open(path, encoding="utf-8") as f:
        for n, raw in enumerate(f, 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("export "):
                line = line[len("export ") :].strip()
            key, sep, value = line.partition("=")
            key = key.strip()
            if not sep or not key:
                raise ValueError(f"read env file {path} line {n}: want KEY=VALUE, got {line!r}")
            out[key] = _unquote(value.strip(), key, path, n)
    return out


def _unquote(value: str, key: str, path: object, n: int) -> str:
    if len(value) >= 2 and value[0] == value[-1] == "'":
        return value[1:-1]
    if len(value) >= 2 and value[0] == value[-1] == '"':
        try:
            v = ast.literal_eval(value)
        except (ValueError, SyntaxError) as e:
            raise ValueError(f"read env file {path} line {n}: bad quoted value for {key}: {e}") from None
        if not isinstance(v, str):
            raise ValueError(f"read env file {path} line {n}: bad quoted value for {key}")
        return v
    return value


@dataclass(frozen=True)
class Config:
    """The resolved settings of a client."""

    url: str
    api_key: str | None
    data_dir: Path


def resolve(url: str | None, api_key: str | None, data_dir: str | os.PathLike[str] | None = None) -> Config:
    """Each of url and api_key: the argument, else $DEN_URL / $DEN_API_KEY,
    else the env file in data_dir (default :func:`default_data_dir`). Raises
    ConfigError when no URL is found or it is not http(s)://host[:port]."""
    ddir = Path(data_dir) if data_dir is not None else default_data_dir()
    url = url or os.environ.get(ENV_URL) or None
    api_key = api_key or os.environ.get(ENV_API_KEY) or None
    if url is None or api_key is None:
        file_vars = _env_file_vars(ddir)
        url = url or file_vars.get(ENV_URL) or None
        api_key = api_key or file_vars.get(ENV_API_KEY) or None
    if not url:
        raise ConfigError(NOT_CONFIGURED)
    return Config(url=check_url(url, "server URL"), api_key=api_key, data_dir=ddir)


def sandbox_url(data_dir: Path) -> str | None:
    """The sandbox traffic listener's URL: $E2B_SANDBOX_URL, else the env file's."""
    v = os.environ.get(ENV_SANDBOX_URL) or _env_file_vars(data_dir).get(ENV_SANDBOX_URL)
    return check_url(v, "sandbox traffic address") if v else None


def _env_file_vars(data_dir: Path) -> dict[str, str]:
    try:
        return read_env_file(data_dir / "env")
    except FileNotFoundError:
        return {}
    except ValueError as e:
        raise ConfigError(str(e)) from None


def check_url(url: str, what: str) -> str:
    """url without its trailing slashes; ConfigError unless http(s)://host."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"den: invalid {what} {url!r}: want http(s)://host[:port]")
    return url.rstrip("/")
