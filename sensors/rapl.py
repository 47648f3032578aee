"""Reading this machine's power from RAPL energy counters under /sys/class/powercap.

RAPL (Running Average Power Limit, Intel and recent AMD CPUs) exposes cumulative energy
counters in microjoules, one zone per domain:

    /sys/class/powercap/intel-rapl:0/      name=package-0  energy_uj  max_energy_range_uj
    /sys/class/powercap/intel-rapl:0:0/    name=core       (inside the package: not added)
    /sys/class/powercap/intel-rapl:0:2/    name=dram       (memory: added)
    /sys/class/powercap/intel-rapl:1/      name=psys       (whole platform: overlaps, not added)

Power over an interval is the energy difference divided by the elapsed time, summed over the
package and DRAM domains. A counter wraps to zero after `max_energy_range_uj`; a decrease is
read as one wrap. Since Linux 5.10 the counters are readable by root only (CVE-2020-8694).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

POWERCAP = Path("/sys/class/powercap")
_ZONE = re.compile(r"intel-rapl:\d+(:\d+)?")  # intel-rapl-mmio duplicates the package: skipped


class RaplUnavailable(Exception):
    """RAPL cannot be used here; the message says why and what to do, in one line."""

    user_facing = True  # shown to the user as one line by the CLI


@dataclass(frozen=True, slots=True)
class RaplDomain:
    """One counter we add up: a package or a DRAM zone."""

    zone: str  # directory name, e.g. "intel-rapl:0:2"
    name: str  # contents of `name`, e.g. "dram"
    path: Path
    max_range_uj: int

    @property
    def label(self) -> str:
        return self.name if self.name.startswith("package") else f"{self.name} ({self.zone})"

    def read_uj(self) -> int:
        """The counter now, in microjoules."""
        return _read_int(self.path / "energy_uj")


def _read_int(path: Path) -> int:
    try:
        text = path.read_text().strip()
    except PermissionError:
        raise RaplUnavailable(
            f"{path} is not readable by this user (RAPL counters are root-only since Linux 5.10):"
            " run as root, or grant read access, e.g. `sudo chmod a+r /sys/class/powercap/intel-rapl:*/energy_uj`"
        ) from None
    except OSError as exc:
        raise RaplUnavailable(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        return int(text)
    except ValueError:
        raise RaplUnavailable(f"{path} holds {text[:40]!r}, not a whole number of microjoules") from None


def energy_delta_uj(previous: int, current: int, max_range_uj: int) -> int:
    """Energy used between two counter readings, counting one wrap-around when it went down."""
    delta = current - previous
    if delta < 0:
        delta += max_range_uj
    return max(0, delta)


def discover(root: Path = POWERCAP) -> list[RaplDomain]:
    """The package and DRAM domains under `root`; RaplUnavailable when there are none to read."""
    if not root.is_dir():
        raise RaplUnavailable(
            f"no RAPL here: {root} does not exist (RAPL needs an Intel or recent AMD CPU on bare metal"
            " and the intel_rapl driver: try `sudo modprobe intel_rapl_common`)"
        )
    domains = []
    for zone in sorted(p for p in root.iterdir() if _ZONE.fullmatch(p.name)):
        try:
            name = (zone / "name").read_text().strip()
        except OSError:
            continue
        is_package = name.startswith("package") and zone.name.count(":") == 1
        if not (is_package or name == "dram"):
            continue  # core/uncore sit inside the package; psys overlaps everything
        domains.append(RaplDomain(zone.name, name, zone, _read_int(zone / "max_energy_range_uj")))
    if not domains:
        raise RaplUnavailable(
            f"no RAPL package or DRAM domain under {root} (found: "
            + (", ".join(sorted(p.name for p in root.iterdir())) or "nothing")
            + "); this machine does not expose its power through RAPL"
        )
    for domain in domains:
        domain.read_uj()  # fail now, with the permission hint, not at the first sample
    return domains


@dataclass(frozen=True, slots=True)
class PowerSample:
    """Average power over the last interval: total and per domain (W)."""

    watts: float
    by_domain: dict[str, float]
    seconds: float


class RaplMeter:
    """Turns successive counter readings into watts. The first `sample()` only primes it."""

    def __init__(self, domains: list[RaplDomain], clock: Callable[[], float] = time.monotonic):
        self.domains = domains
        self._clock = clock
        self._last: tuple[float, list[int]] | None = None

    @classmethod
    def open(cls, root: Path = POWERCAP) -> RaplMeter:
        return cls(discover(root))

    def sample(self) -> PowerSample | None:
        """Power since the previous call; None on the first call (nothing to compare yet)."""
        now = self._clock()
        counters = [d.read_uj() for d in self.domains]
        last, self._last = self._last, (now, counters)
        if last is None:
            return None
        seconds = now - last[0]
        if seconds <= 0:
            return None
        by_domain = {
            d.label: energy_delta_uj(before, after, d.max_range_uj) / 1e6 / seconds
            for d, before, after in zip(self.domains, last[1], counters)
        }
        return PowerSample(sum(by_domain.values()), by_domain, seconds)
