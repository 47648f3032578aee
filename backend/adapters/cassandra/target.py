"""What a `cassandra://` URL names: the hosts, port and keyspace, the replicas and consistency.

It is parsed once, when the store is built, so a bad URL stops the process with a sentence
naming the problem before anything connects.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from cassandra import ConsistencyLevel

DEFAULT_PORT = 9042
MAX_REPLICATION = 9
CONSISTENCY_LEVELS = {
    name: getattr(ConsistencyLevel, name)
    for name in ("ONE", "TWO", "THREE", "QUORUM", "ALL", "LOCAL_QUORUM", "EACH_QUORUM", "LOCAL_ONE")
}

_KEYSPACE = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,47}")


@dataclass(frozen=True, slots=True)
class CassandraTarget:
    """What a `cassandra://` URL names: where the cluster is, and how to use it."""

    hosts: list[str]
    port: int
    keyspace: str
    replication: int | None
    """`?replication=N`: replicas of each row (NetworkTopologyStrategy, N in every data centre).
    None: a new keyspace gets 1 and an existing one keeps what it has."""
    consistency: int
    """`?consistency=NAME`: the ConsistencyLevel of every read and write (QUORUM by default: with
    one replica that is the replica, with three it is two of them, so reads see every write)."""


def parse_target(url: str) -> CassandraTarget:
    """The CassandraTarget of `cassandra://host[,host][:port]/keyspace[?replication=N]
    [&consistency=LEVEL]`; ValueError naming what is wrong."""
    expected = "expected cassandra://host[,host][:port]/keyspace[?replication=N&consistency=LEVEL]"
    parts = urlsplit(url)
    keyspace = parts.path.lstrip("/")
    if parts.scheme != "cassandra" or not parts.netloc:
        raise ValueError(f"time-series URL {url!r}: {expected}")
    hosts, ports = [], set()
    for entry in parts.netloc.split(","):
        host, sep, port = entry.rpartition(":") if ":" in entry else (entry, "", "")
        if sep and not port.isdigit() or not host:
            raise ValueError(f"time-series URL {url!r}: bad host {entry!r}; {expected}")
        hosts.append(host)
        if sep:
            ports.add(int(port))
    if len(ports) > 1:
        raise ValueError(f"time-series URL {url!r}: all hosts must use the same port")
    if not _KEYSPACE.fullmatch(keyspace):
        raise ValueError(
            f"time-series URL {url!r}: keyspace must be a letter then up to 47 letters, digits"
            f" or underscores; {expected}"
        )
    options = parse_qs(parts.query, keep_blank_values=True)
    unknown = sorted(set(options) - {"replication", "consistency"})
    if unknown:
        raise ValueError(f"time-series URL {url!r}: unknown option {', '.join(unknown)}; {expected}")
    repeated = sorted(name for name, values in options.items() if len(values) > 1)
    if repeated:
        raise ValueError(f"time-series URL {url!r}: {', '.join(repeated)} given more than once")
    replication = None
    if "replication" in options:
        text = options["replication"][0]
        if not text.isdigit() or not 1 <= int(text) <= MAX_REPLICATION:
            raise ValueError(
                f"time-series URL {url!r}: replication={text!r} is not a number of replicas from 1 to {MAX_REPLICATION}"
            )
        replication = int(text)
    level = options.get("consistency", ["QUORUM"])[0].upper()
    if level not in CONSISTENCY_LEVELS:
        raise ValueError(
            f"time-series URL {url!r}: consistency={level!r} is not one of {', '.join(CONSISTENCY_LEVELS)}"
        )
    return CassandraTarget(
        hosts, ports.pop() if ports else DEFAULT_PORT, keyspace, replication, CONSISTENCY_LEVELS[level]
    )


def parse_url(url: str) -> tuple[list[str], int, str]:
    """(hosts, port, keyspace) of a `cassandra://` URL (see `parse_target`); ValueError if bad."""
    target = parse_target(url)
    return target.hosts, target.port, target.keyspace
