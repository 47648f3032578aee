"""Settings from the environment (TASKER_*), an optional TOML file, and command-line flags.

Precedence: flag > environment variable > `$XDG_CONFIG_HOME/tasker/config.toml` > default.
A value that cannot be parsed raises ConfigError with one line naming the variable.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path
from urllib.parse import urlsplit


class ConfigError(Exception):
    """A setting is missing or malformed; the message names it and says what is expected."""


def xdg_data_home() -> Path:
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")


def xdg_config_home() -> Path:
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")


def _default_sqlite(name: str) -> str:
    return f"sqlite:///{xdg_data_home() / 'tasker' / name}"


@dataclass(frozen=True, slots=True)
class Settings:
    """Where the backend finds its broker and stores, and where clients find the backend."""

    broker_url: str = "memory://"
    """TASKER_BROKER_URL: `memory://` (in-process) or `amqp://user:pass@host:5672/vhost`."""
    timeseries_url: str = ""
    """TASKER_TIMESERIES_URL: `sqlite:///path.db` or `cassandra://host[,host]:9042/keyspace`."""
    registry_url: str = ""
    """TASKER_REGISTRY_URL: `sqlite:///path.db` or `mongodb://host:27017/dbname`."""
    listen: str = "127.0.0.1:8470"
    """TASKER_LISTEN: host:port the backend serves HTTP and the websocket on."""
    url: str = "http://127.0.0.1:8470"
    """TASKER_URL: where clients (TUI, sensors, CLI) find the backend."""
    retention_days: int = 400
    """TASKER_RETENTION_DAYS: how long raw readings are kept (Cassandra TTL) before expiring."""

    def __post_init__(self) -> None:
        if not self.timeseries_url:
            object.__setattr__(self, "timeseries_url", _default_sqlite("timeseries.db"))
        if not self.registry_url:
            object.__setattr__(self, "registry_url", _default_sqlite("registry.db"))

    @property
    def listen_host_port(self) -> tuple[str, int]:
        host, sep, port = self.listen.rpartition(":")
        if not sep or not port.isdigit():
            raise ConfigError(f"TASKER_LISTEN={self.listen!r}: expected host:port, e.g. 127.0.0.1:8470")
        return host or "127.0.0.1", int(port)


_ENV = {
    "broker_url": "TASKER_BROKER_URL",
    "timeseries_url": "TASKER_TIMESERIES_URL",
    "registry_url": "TASKER_REGISTRY_URL",
    "listen": "TASKER_LISTEN",
    "url": "TASKER_URL",
    "retention_days": "TASKER_RETENTION_DAYS",
}

_SCHEMES = {
    "broker_url": ("memory", "amqp", "amqps"),
    "timeseries_url": ("sqlite", "cassandra"),
    "registry_url": ("sqlite", "mongodb"),
    "url": ("http", "https"),
}


def load_settings(environ: dict[str, str] | None = None, **overrides: object) -> Settings:
    """Build Settings; `overrides` (from flags) win over the environment and the file."""
    env = os.environ if environ is None else environ
    values: dict[str, object] = {}
    config_file = xdg_config_home() / "tasker" / "config.toml"
    if config_file.is_file():
        try:
            data = tomllib.loads(config_file.read_text())
        except (tomllib.TOMLDecodeError, OSError) as exc:
            raise ConfigError(f"{config_file}: {exc}") from None
        known = {f.name for f in fields(Settings)}
        values.update({k: v for k, v in data.items() if k in known})
    for name, var in _ENV.items():
        if env.get(var):
            values[name] = env[var]
    values.update({k: v for k, v in overrides.items() if v is not None})
    if "retention_days" in values:
        try:
            values["retention_days"] = int(values["retention_days"])  # type: ignore[arg-type]
        except ValueError:
            raise ConfigError(
                f"TASKER_RETENTION_DAYS={values['retention_days']!r}: expected a whole number of days"
            ) from None
    settings = Settings(**values)  # type: ignore[arg-type]
    for name, schemes in _SCHEMES.items():
        value = getattr(settings, name)
        scheme = urlsplit(value).scheme
        if scheme not in schemes:
            raise ConfigError(
                f"{_ENV[name]}={value!r}: expected a URL starting with "
                + " or ".join(f"{s}://" for s in schemes)
            )
    settings.listen_host_port  # validates
    return replace(settings)
