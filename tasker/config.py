"""Settings from the environment (TASKER_*), an optional TOML file, and command-line flags.

Precedence: flag > environment variable > `$XDG_CONFIG_HOME/tasker/config.toml` > default.
A value that cannot be used raises ConfigError with one line naming where it came from (the
variable, the flag or the file) and what is expected. Passwords in URLs are never echoed.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from urllib.parse import SplitResult, urlsplit, urlunsplit


class ConfigError(Exception):
    """A setting is missing or malformed; the message names it and says what is expected."""


def xdg_data_home() -> Path:
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")


def xdg_config_home() -> Path:
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")


def config_file() -> Path:
    """The optional TOML file (follows XDG_CONFIG_HOME at call time)."""
    return xdg_config_home() / "tasker" / "config.toml"


def _default_sqlite(name: str) -> str:
    return f"sqlite:///{xdg_data_home() / 'tasker' / name}"


def redact_url(url: str) -> str:
    """`url` with any password replaced by `***`, for messages and logs."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
    except ValueError:
        return re.sub(r"(//[^:/@]*:)[^@/]*@", r"\1***@", url)
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user = userinfo.split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{hostport}"))


def split_listen(listen: str) -> tuple[str, int]:
    """(host, port) of a `host:port` listen address (`[::1]:8470` for IPv6); ValueError if bad."""
    host, sep, port = listen.strip().rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError("expected host:port with a port from 0 to 65535, e.g. 127.0.0.1:8470")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host or "127.0.0.1", int(port)


@dataclass(frozen=True, slots=True)
class Settings:
    """Where the backend finds its broker and stores, and where clients find the backend."""

    broker_url: str = "memory://"
    """TASKER_BROKER_URL: `memory://` (in-process, journaled in `queue.db` next to the SQLite time
    series, or in the file of `memory:///path/to/queue.db`) or `amqp://user:pass@host:5672/vhost`;
    a RabbitMQ cluster lists its nodes, `amqp://user:pass@h1,h2,h3/vhost` (quorum queues, and a
    reconnect to another node when one goes away; `?queue_type=quorum|classic` overrides)."""
    timeseries_url: str = ""
    """TASKER_TIMESERIES_URL: `sqlite:///path.db` or `cassandra://host[,host]:9042/keyspace`, with
    `?replication=N` (copies of each row; a new keyspace gets 1 without it) and
    `?consistency=LEVEL` (of every read and write: QUORUM unless given) for a cluster, e.g.
    `cassandra://h1,h2,h3/tasker?replication=3`."""
    registry_url: str = ""
    """TASKER_REGISTRY_URL: `sqlite:///path.db` or `mongodb://host:27017/dbname`."""
    listen: str = "127.0.0.1:8470"
    """TASKER_LISTEN: host:port the backend serves HTTP and the websocket on."""
    url: str = "http://127.0.0.1:8470"
    """TASKER_URL: where clients (TUI, sensors, CLI) find the backend."""
    retention_days: int = 400
    """TASKER_RETENTION_DAYS: how long raw readings are kept (Cassandra TTL) before expiring."""
    header_timeout_s: float = 10.0
    """TASKER_HEADER_TIMEOUT: seconds a connection may go without a complete request head (from
    when it opened or its previous answer ended; so also how long an idle keep-alive lasts)."""
    body_timeout_s: float = 30.0
    """TASKER_BODY_TIMEOUT: seconds a client has to send a request body, per started MiB; then 408."""

    def __post_init__(self) -> None:
        if not self.timeseries_url:
            object.__setattr__(self, "timeseries_url", _default_sqlite("timeseries.db"))
        if not self.registry_url:
            object.__setattr__(self, "registry_url", _default_sqlite("registry.db"))

    @property
    def listen_host_port(self) -> tuple[str, int]:
        try:
            return split_listen(self.listen)
        except ValueError as exc:
            raise ConfigError(f"TASKER_LISTEN={self.listen!r}: {exc}") from None


ENV = {
    "broker_url": "TASKER_BROKER_URL",
    "timeseries_url": "TASKER_TIMESERIES_URL",
    "registry_url": "TASKER_REGISTRY_URL",
    "listen": "TASKER_LISTEN",
    "url": "TASKER_URL",
    "retention_days": "TASKER_RETENTION_DAYS",
    "header_timeout_s": "TASKER_HEADER_TIMEOUT",
    "body_timeout_s": "TASKER_BODY_TIMEOUT",
}
_FLAGS = {"listen": "--listen", "url": "--url"}
_NUMBERS = ("retention_days", "header_timeout_s", "body_timeout_s")

_EXPECTED = {
    "broker_url": "memory://, memory:///path/to/queue.db or amqp://user:pass@host:5672/vhost",
    "timeseries_url": "sqlite:///path/to/file.db or cassandra://host[,host][:9042]/keyspace",
    "registry_url": "sqlite:///path/to/file.db or mongodb://host[:27017]/database",
    "url": "http://host:port, e.g. http://127.0.0.1:8470",
}
_SCHEMES = {
    "broker_url": ("memory", "amqp", "amqps"),
    "timeseries_url": ("sqlite", "cassandra"),
    "registry_url": ("sqlite", "mongodb"),
    "url": ("http", "https"),
}
_KEYSPACE = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,47}")
_MONGO_DB = re.compile(r"[A-Za-z0-9_-]{1,63}")
_HOST = re.compile(r"[A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\]")


def split_hosts(netloc: str, several: bool = True) -> list[tuple[str, str]]:
    """(host, port) of each entry of a URL's `[user[:pass]@]host[:port][,host[:port]]`; a bracketed
    IPv6 host keeps its brackets, a missing port is ''."""
    hostport = netloc.rpartition("@")[2]
    pairs = []
    for entry in hostport.split(",") if several else [hostport]:
        host, port = entry, ""
        if ":" in entry and not entry.endswith("]"):
            host, _, port = entry.rpartition(":")
        pairs.append((host, port))
    return pairs


def _check_hosts(netloc: str, several: bool) -> str | None:
    """What is wrong with the host[:port] list of a URL, or None."""
    for host, port in split_hosts(netloc, several):
        if not host:
            return "no host"
        if not _HOST.fullmatch(host):
            return f"bad host {host!r}"
        if port and (not port.isdigit() or not 1 <= int(port) <= 65535):
            return f"port {port!r} is not a number from 1 to 65535"
    return None


def _check_url(name: str, value: str) -> str | None:
    """What is wrong with the URL setting `name`, or None when it is usable."""
    try:
        parts: SplitResult = urlsplit(value)
    except ValueError as exc:
        return f"cannot be parsed ({exc})"
    schemes = _SCHEMES[name]
    if parts.scheme not in schemes:
        return "unknown scheme " + (f"{parts.scheme!r}" if parts.scheme else "(none)")
    if parts.scheme in ("memory", "sqlite"):
        return None  # the SQLite file is checked when the backend opens it
    if not parts.netloc.rpartition("@")[2]:
        return "no host"
    problem = _check_hosts(parts.netloc, several=parts.scheme in ("cassandra", "mongodb", "amqp", "amqps"))
    if problem:
        return problem
    path = parts.path.strip("/")
    if parts.scheme == "cassandra" and not _KEYSPACE.fullmatch(path):
        return (
            "no keyspace"
            if not path
            else f"keyspace {path!r} is not a letter then up to 47 letters, digits or underscores"
        )
    if parts.scheme == "mongodb" and path and not _MONGO_DB.fullmatch(path):
        return f"database name {path!r} must be 1-63 letters, digits, _ or -"
    return None


def backend_url_problem(value: str) -> str | None:
    """What is wrong with a backend URL given outside Settings (e.g. `--ingest-url`), with the
    form expected; None when it is usable."""
    problem = _check_url("url", value)
    return f"{problem}; expected {_EXPECTED['url']}" if problem else None


def load_settings(environ: dict[str, str] | None = None, **overrides: object) -> Settings:
    """Build Settings; `overrides` (from flags) win over the environment and the file."""
    env = os.environ if environ is None else environ
    values: dict[str, object] = {}
    origin: dict[str, str] = {}
    path = config_file()
    known = [f.name for f in fields(Settings)]
    if path.is_file():
        try:
            data = tomllib.loads(path.read_text())
        except (tomllib.TOMLDecodeError, OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: {exc}") from None
        for key, value in data.items():
            if key not in known:
                raise ConfigError(f"{path}: unknown setting {key!r}; known: {', '.join(known)}")
            values[key] = value
            origin[key] = f"{key} in {path}"
    for name, var in ENV.items():
        if env.get(var):
            values[name] = env[var]
            origin[name] = var
    for name, value in overrides.items():
        if value is not None:
            values[name] = value
            origin[name] = _FLAGS.get(name, name)

    def fail(name: str, problem: str) -> ConfigError:
        label = origin.get(name, ENV[name])
        shown = redact_url(str(values.get(name, "")))
        where = f"{label} {shown!r}" if label.startswith("--") else f"{label}={shown!r}"
        if " in " in label:
            where = f"{name} = {shown!r} in {label.split(' in ', 1)[1]}"
        expected = _EXPECTED.get(name)
        return ConfigError(f"{where}: {problem}" + (f"; expected {expected}" if expected else ""))

    for name, value in values.items():
        if name not in _NUMBERS and not isinstance(value, str):
            raise fail(name, "must be text")
    if "retention_days" in values:
        days = values["retention_days"]
        try:
            days = int(str(days).strip()) if not isinstance(days, bool) else None
        except ValueError:
            days = None
        if days is None or days < 1:
            raise fail("retention_days", "expected a whole number of days, at least 1")
        values["retention_days"] = days
    for name in ("header_timeout_s", "body_timeout_s"):
        if name in values:
            try:
                seconds = float(str(values[name]).strip()) if not isinstance(values[name], bool) else 0.0
            except ValueError:
                seconds = 0.0
            if not 0 < seconds <= 3600:
                raise fail(name, "expected a number of seconds above 0 and at most 3600")
            values[name] = seconds
    settings = Settings(**values)  # type: ignore[arg-type]
    for name in _SCHEMES:
        problem = _check_url(name, getattr(settings, name))
        if problem:
            values.setdefault(name, getattr(settings, name))
            raise fail(name, problem)
    try:
        split_listen(settings.listen)
    except ValueError as exc:
        values.setdefault("listen", settings.listen)
        raise fail("listen", str(exc)) from None
    return settings
