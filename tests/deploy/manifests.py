"""The Kubernetes manifests of compose/k8s as the overlays render them, and ways to read them.

Rendering uses the kustomize that scripts/setup-k8s-tools builds into .venv/bin (or one on
PATH); a missing kustomize fails the tests, naming that script.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "compose" / "k8s"
OVERLAYS = ("small", "ha")
KUBERNETES_VERSION = "1.33.0"
"""The Kubernetes release whose schemas (shipped with kubernetes-validate) the manifests meet."""
TASKER_IMAGE = "tasker"
WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet", "Job")


def kustomize() -> str:
    local = REPO / ".venv" / "bin" / "kustomize"
    found = str(local) if local.exists() else shutil.which("kustomize")
    if found is None:
        raise AssertionError("kustomize is not installed: run scripts/setup-k8s-tools")
    return found


def render(overlay: str) -> list[dict[str, Any]]:
    """The documents `kustomize build compose/k8s/overlays/<overlay>` prints."""
    done = subprocess.run(
        [kustomize(), "build", str(K8S / "overlays" / overlay)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, f"kustomize build {overlay} failed: {done.stderr}"
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def named(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    return workload["spec"]["template"]["spec"]


def containers(docs: list[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(workload, container) for every container and init container of every workload."""
    for doc in docs:
        if doc["kind"] in WORKLOADS:
            spec = pod_spec(doc)
            for container in spec.get("initContainers", []) + spec["containers"]:
                yield doc, container


def tasker_containers(docs: list[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for workload, container in containers(docs):
        if container["image"].split(":")[0].rsplit("/", 1)[-1] == TASKER_IMAGE:
            yield workload, container


def tasker_invocations(container: dict[str, Any]) -> list[list[str]]:
    """The argument lists given to `tasker` by a container of the Tasker image: its args (the
    image's entrypoint is `tasker`), or each `tasker ...` in a `sh -c` script."""
    command = container.get("command")
    if not command:
        return [list(container.get("args", []))]
    assert command[:2] == ["sh", "-c"], f"{container['name']}: unexpected command {command}"
    script = " ".join(command[2:] + container.get("args", []))
    words = shlex.split(script)
    found = []
    for i, word in enumerate(words):
        if word == "tasker":
            rest = []
            for token in words[i + 1 :]:
                if token in ("&&", "||", ";", "|"):
                    break
                rest.append(token)
            found.append(rest)
    return found


def env_names(container: dict[str, Any]) -> list[str]:
    return [entry["name"] for entry in container.get("env", [])]


def roles_of(container: dict[str, Any]) -> list[str]:
    """The backend roles a `tasker backend --role ...` container runs."""
    args = container.get("args", [])
    if args[:1] != ["backend"]:
        return []
    return [args[i + 1] for i, arg in enumerate(args) if arg in ("--role", "-r")]


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def expand(value: str, values: dict[str, str]) -> str:
    """Kubernetes' `$(NAME)` expansion of an env value."""
    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: values.get(m.group(1), m.group(0)), value)
