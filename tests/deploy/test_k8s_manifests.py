"""compose/k8s as the overlays render it: valid for a pinned Kubernetes release, and naming only
roles, commands, options, ports, routes and TASKER_* variables that Tasker has."""

from __future__ import annotations

import ast
import copy
import re
from typing import Any

import kubernetes_validate
import pytest
import typer
from aiohttp import web

from backend.adapters.cassandra import parse_target
from backend.adapters.rabbitmq import parse_broker_url
from backend.bootstrap import Backend
from backend.http import ops
from backend.http.app import build_app
from backend.http.context import ApiContext
from backend.roles import ROLES
from backend.services.telemetry import Telemetry
from tasker.cli import app as tasker_app
from tasker.config import load_settings, split_listen
from tests.deploy.manifests import (
    KUBERNETES_VERSION,
    OVERLAYS,
    REPO,
    containers,
    env_names,
    expand,
    named,
    pod_spec,
    render,
    roles_of,
    selects,
    tasker_containers,
    tasker_invocations,
)

DATABASES = ("cassandra", "rabbitmq", "mongodb")
SAMPLE_SECRET = "s3cretvalue"


@pytest.fixture(scope="module", params=OVERLAYS)
def docs(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    return render(request.param)


@pytest.fixture(scope="module")
def small() -> list[dict[str, Any]]:
    return render("small")


def refusal(doc: dict[str, Any]) -> str | None:
    """Why the pinned release's schema (strict: no unknown fields) refuses `doc`, or None."""
    try:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return f"{'.'.join(map(str, exc.path))}: {exc.message}"
    return None


def test_every_rendered_manifest_meets_the_pinned_kubernetes_schemas(docs: list[dict[str, Any]]) -> None:
    # A kind without a schema (a custom resource) raises SchemaNotFoundError: none is expected.
    problems = {f"{d['kind']}/{d['metadata']['name']}": refusal(d) for d in docs}
    assert {name: why for name, why in problems.items() if why} == {}


def test_a_broken_manifest_is_refused(small: list[dict[str, Any]]) -> None:
    api = copy.deepcopy(named(small, "Deployment", "tasker-api"))
    assert refusal(api) is None
    pod_spec(api)["containers"][0]["ports"][0]["containerPort"] = "eighty"
    assert "containerPort" in (refusal(api) or "")
    misspelt = copy.deepcopy(named(small, "Deployment", "tasker-api"))
    misspelt["spec"]["replica"] = 2
    assert refusal(misspelt) is not None


def test_every_role_runs_in_a_deployment_of_its_own(docs: list[dict[str, Any]]) -> None:
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    by_role = {}
    for workload, container in tasker_containers(docs):
        for role in roles_of(container):
            by_role.setdefault(role, []).append(workload["metadata"]["name"])
    assert set(by_role) == set(ROLES), "a role of backend/roles has no Deployment, or one names no role"
    for role, names in by_role.items():
        assert names == [f"tasker-{role}"]
        assert deployments[names[0]]["spec"]["replicas"] >= 1
        budgets = [
            d
            for d in docs
            if d["kind"] == "PodDisruptionBudget"
            and selects(d["spec"]["selector"]["matchLabels"], pod_labels(deployments[names[0]]))
        ]
        assert len(budgets) == 1, f"{role}: expected one PodDisruptionBudget"


def pod_labels(workload: dict[str, Any]) -> dict[str, str]:
    return workload["spec"]["template"]["metadata"]["labels"]


def test_backend_probes_ask_paths_the_backend_serves(docs: list[dict[str, Any]]) -> None:
    served = web.Application()
    ops.add_routes(served)
    paths = {resource.canonical for resource in served.router.resources()}
    for _, container in tasker_containers(docs):
        if not roles_of(container):
            continue
        probes = {kind: container[kind]["httpGet"] for kind in ("startupProbe", "livenessProbe", "readinessProbe")}
        assert probes["readinessProbe"]["path"] == "/readyz"
        assert probes["livenessProbe"]["path"] == probes["startupProbe"]["path"] == "/healthz"
        ports = {port["name"] for port in container["ports"]}
        for probe in probes.values():
            assert probe["path"] in paths
            assert probe["port"] in ports


def command_named(group: Any, words: list[str]) -> tuple[Any, list[str]]:
    """The command `tasker <words>` runs and the words left for its options and arguments
    (typer's own click: a group is what has `commands`)."""
    command = group
    while hasattr(command, "commands") and words:
        assert words[0] in command.commands, f"tasker has no command {words[0]!r} under {command.name!r}"
        command, words = command.commands[words[0]], words[1:]
    assert not hasattr(command, "commands"), f"{command.name!r} needs a subcommand"
    return command, words


def test_every_tasker_command_and_option_exists(docs: list[dict[str, Any]]) -> None:
    root = typer.main.get_command(tasker_app)
    seen = set()
    for workload, container in tasker_containers(docs):
        for words in tasker_invocations(container):
            command, rest = command_named(root, words)
            seen.add(command.name)
            options = {opt for param in command.params for opt in param.opts + param.secondary_opts}
            for word in rest:
                if word.startswith("-"):
                    assert word.split("=")[0] in options, (
                        f"{workload['metadata']['name']}: tasker {command.name} has no option {word}"
                    )
    assert {"backend", "agent", "host"} <= seen


def tasker_variables() -> set[str]:
    """Every TASKER_* name that Tasker's own code spells out as a string (not in a docstring)."""
    names = set()
    for package in ("tasker", "backend", "sensors", "agents", "tasker_tui"):
        for path in (REPO / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if (
                    isinstance(node, ast.Constant)
                    and isinstance(node.value, str)
                    and re.fullmatch(r"TASKER_[A-Z0-9_]+", node.value)
                ):
                    names.add(node.value)
    return names


def test_every_tasker_variable_named_exists(docs: list[dict[str, Any]]) -> None:
    known = tasker_variables()
    named_here = set()
    for _, container in containers(docs):
        named_here |= {name for name in env_names(container) if name.startswith("TASKER_")}
        if container.get("command", [None])[0] == "sh":  # variables set inside a script
            script = " ".join(container["command"] + container.get("args", []))
            named_here |= set(re.findall(r"\bTASKER_[A-Z0-9_]+", script))
    for doc in docs:
        if doc["kind"] == "ConfigMap":
            named_here |= {key for key in doc.get("data", {}) if key.startswith("TASKER_")}
    assert named_here, "no TASKER_* variable found in the manifests"
    assert named_here - known == set()


def backend_environment(docs: list[dict[str, Any]], container: dict[str, Any]) -> dict[str, str]:
    """What a backend container's environment holds, with a sample value for each secret."""
    environ: dict[str, str] = {}
    for source in container.get("envFrom", []):
        environ.update(named(docs, "ConfigMap", source["configMapRef"]["name"])["data"])
    for entry in container.get("env", []):
        environ[entry["name"]] = expand(entry["value"], environ) if "value" in entry else SAMPLE_SECRET
    return environ


def test_settings_accept_the_backend_environment(docs: list[dict[str, Any]]) -> None:
    for workload, container in tasker_containers(docs):
        if not roles_of(container):
            continue
        settings = load_settings(backend_environment(docs, container))
        # The adapters the role needs take these URLs (creating them connects nothing).
        Backend.create(settings, roles_of(container))
        host, port = split_listen(settings.listen)
        assert host == "0.0.0.0", "the backend must listen beyond the pod's loopback"
        assert [p["containerPort"] for p in container["ports"] if p["name"] == "http"] == [port]
        assert settings.broker_url.startswith("amqp://tasker:" + SAMPLE_SECRET)
        assert settings.timeseries_url.startswith("cassandra://")
        assert settings.registry_url.startswith(f"mongodb://tasker:{SAMPLE_SECRET}@")


def test_the_backend_uses_the_clusters_replication(docs: list[dict[str, Any]]) -> None:
    """Quorum queues on a RabbitMQ cluster, and as many copies of each reading as Cassandra has
    nodes (QUORUM reads and writes then survive one node down)."""
    rabbitmq = named(docs, "StatefulSet", "rabbitmq")["spec"]["replicas"]
    cassandra = named(docs, "StatefulSet", "cassandra")["spec"]["replicas"]
    assert rabbitmq == cassandra == 3
    for _, container in tasker_containers(docs):
        if roles_of(container):
            settings = load_settings(backend_environment(docs, container))
            assert parse_broker_url(settings.broker_url).queue_type == "quorum"
            target = parse_target(settings.timeseries_url)
            assert target.replication == cassandra
            assert len(target.hosts) == cassandra


def resolvable_names(docs: list[dict[str, Any]]) -> dict[str, set[int]]:
    """The DNS names (within the namespace) that Services and StatefulSet pods get, with ports."""
    services = {d["metadata"]["name"]: {p["port"] for p in d["spec"]["ports"]} for d in docs if d["kind"] == "Service"}
    names = dict(services)
    for doc in docs:
        if doc["kind"] == "StatefulSet":
            governing = doc["spec"]["serviceName"]
            for i in range(doc["spec"]["replicas"]):
                names[f"{doc['metadata']['name']}-{i}.{governing}"] = services[governing]
    return names


def test_service_urls_name_hosts_and_ports_of_the_manifests(docs: list[dict[str, Any]]) -> None:
    names = resolvable_names(docs)
    default_ports = {"amqp": 5672, "cassandra": 9042, "mongodb": 27017, "http": 80}
    checked = 0
    for _, container in tasker_containers(docs):
        environ = (
            backend_environment(docs, container)
            if roles_of(container)
            else {e["name"]: e.get("value", SAMPLE_SECRET) for e in container.get("env", [])}
        )
        for name, value in environ.items():
            match = re.fullmatch(r"(amqp|cassandra|mongodb|http)://(?:[^@/]*@)?([^/?]+)(.*)", value)
            if not name.startswith("TASKER_") or not match:
                continue
            scheme, hosts = match.group(1), match.group(2).split(",")
            port = int(hosts[-1].rpartition(":")[2]) if ":" in hosts[-1] else default_ports[scheme]
            for host in hosts:
                host = host.split(":")[0]
                assert host in names, f"{name} names {host!r}, which no Service or StatefulSet pod is"
                assert port in names[host], f"{name}: {host} has no port {port}"
                checked += 1
    assert checked >= 10


def test_ingress_sends_each_path_to_pods_that_serve_it(docs: list[dict[str, Any]]) -> None:
    ingress = named(docs, "Ingress", "tasker")
    services = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Service"}
    deployments = [d for d in docs if d["kind"] == "Deployment"]
    routed = set()
    for rule in ingress["spec"]["rules"]:
        for path in rule["http"]["paths"]:
            service = services[path["backend"]["service"]["name"]]
            assert path["backend"]["service"]["port"]["name"] in {p["name"] for p in service["spec"]["ports"]}
            behind = [d for d in deployments if selects(service["spec"]["selector"], pod_labels(d))]
            assert len(behind) == 1
            roles = roles_of(pod_spec(behind[0])["containers"][0])
            app = build_app(ApiContext(Telemetry()), roles)
            served = [re.sub(r"\{[^}]+\}", "srv_1", r.canonical) for r in app.router.resources()]
            kind, pattern = path["pathType"], path["path"]
            matching = [
                p
                for p in served
                if (
                    p == pattern
                    if kind == "Exact"
                    else p.startswith(pattern)
                    if kind == "Prefix"
                    else re.fullmatch(pattern, p)
                )
            ]
            assert matching, f"{pattern} goes to {roles}, which serve none of it"
            routed |= set(matching)
    # The websocket, readings and history each reach the role that serves them.
    assert {"/api/v1/ws", "/api/v1/readings", "/api/v1/servers/srv_1/history"} <= routed


def test_only_tasker_pods_reach_the_databases(docs: list[dict[str, Any]]) -> None:
    policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
    deny = [p for p in policies if p["spec"]["podSelector"] == {} and "ingress" not in p["spec"]]
    assert deny, "no default deny of ingress"
    workloads = [d for d in docs if d["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job")]
    for database in DATABASES:
        own = [
            p for p in policies if p["spec"]["podSelector"].get("matchLabels") == {"app.kubernetes.io/name": database}
        ]
        assert len(own) == 1, f"{database}: expected one NetworkPolicy"
        allowed = set()
        for rule in own[0]["spec"]["ingress"]:
            for peer in rule["from"]:
                assert set(peer) == {"podSelector"}, f"{database} is open beyond this namespace's pods"
                allowed |= {
                    d["metadata"]["name"]
                    for d in workloads
                    if selects(peer["podSelector"]["matchLabels"], pod_labels(d))
                }
        backend = {f"tasker-{role}" for role in ROLES}
        assert allowed - backend - {database, "mongodb-init"} == set(), f"{database} is reachable by {allowed}"
        assert backend <= allowed


def test_rabbitmq_node_names_are_in_the_rendered_namespace(docs: list[dict[str, Any]]) -> None:
    statefulset = named(docs, "StatefulSet", "rabbitmq")
    conf = named(docs, "ConfigMap", "rabbitmq-config")["data"]["rabbitmq.conf"]
    suffix = re.search(r"hostname_suffix = (\S+)", conf).group(1)
    assert suffix == f".{statefulset['spec']['serviceName']}.{statefulset['metadata']['namespace']}.svc.cluster.local"


def test_no_secret_is_committed_and_every_one_used_is_documented(docs: list[dict[str, Any]]) -> None:
    assert [d for d in docs if d["kind"] == "Secret"] == []
    guide = (REPO / "docs" / "deploy.md").read_text()
    used = set()
    for workload, container in containers(docs):
        for entry in container.get("env", []):
            ref = entry.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                used.add((ref["name"], ref["key"]))
        for volume in pod_spec(workload).get("volumes", []):
            if "secret" in volume:
                used |= {(volume["secret"]["secretName"], item["key"]) for item in volume["secret"]["items"]}
    assert used
    for ingress in (d for d in docs if d["kind"] == "Ingress"):
        for tls in ingress["spec"].get("tls", []):
            assert f"secret tls {tls['secretName']}" in guide
    for name, key in used:
        assert f"secret generic {name}" in guide and f"--from-literal={key}=" in guide, (
            f"docs/deploy.md does not say how to make Secret {name} key {key}"
        )


def test_workloads_resources_and_images_are_pinned(docs: list[dict[str, Any]]) -> None:
    for workload, container in containers(docs):
        where = f"{workload['metadata']['name']}/{container['name']}"
        assert ":" in container["image"] and not container["image"].endswith(":latest"), where
        if container in pod_spec(workload)["containers"]:
            assert container.get("resources", {}).get("requests"), f"{where}: no resource requests"
