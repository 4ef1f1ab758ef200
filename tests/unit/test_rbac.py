"""The RBAC table against the operator's code, and the generated RBAC files against the table.

The code scan reads every module the operator process loads (the import closure of its entry points,
``orchest operator`` and ``orchest_operator.handlers``; the CLI's own calls run with the user's
credentials and are not the operator's) and finds every resource it touches:

* kopf handlers ``@kopf.on.<event>(...)``, ``@kopf.index``, ``@kopf.daemon``, ``@kopf.timer`` (list and
  watch; patch too for change handlers, which keep finalizers and progress annotations on the object),
  and ``kopf.event/info/warn/exception`` (create core Events);
* pykube classes (``pykube.Job``, ``from pykube import Pod``), classes subclassing pykube's ``APIObject``
  and ``object_factory(api, apiVersion, kind)``;
* manifests built as dicts with ``apiVersion`` and ``kind``;
* calls of the official ``kubernetes`` client, by method name (verb and path from the client itself).

Arguments may be literals or module constants (``models.GROUP``): they are evaluated in the imported
module. What cannot be resolved is reported, so the check never passes by not seeing something.
"""

from __future__ import annotations

import ast
import functools
import importlib
import inspect
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pykube
import pytest
import yaml
from pykube.objects import APIObject

from orchest_operator import crds, rbac
from tests.support.deploy import validate

ROOT = Path(__file__).resolve().parents[2]
OPERATOR = ROOT / "operator"
PACKAGE = "orchest_operator"
ENTRY_POINTS = ("orchest_operator.cli.operator", "orchest_operator.handlers")
KOPF_NON_RESOURCE = {"startup", "cleanup", "login", "probe"}
KOPF_EVENTS = {"event", "info", "warn", "exception"}


@dataclass(frozen=True)
class Use:
    group: str
    resource: str
    verbs: frozenset[str]  # empty when the verb cannot be seen in the code
    where: str


def group_of(api_version: str) -> str:
    return api_version.rpartition("/")[0]


@functools.cache
def known_kinds() -> dict[str, tuple[str, str]]:
    """Kind → (group, plural) for every kind pykube knows and orchest's own."""
    for module in operator_modules():  # the operator's own APIObject classes (its Lease) too
        importlib.import_module(module)
    classes, todo = set(), [APIObject]
    while todo:
        cls = todo.pop()
        classes.add(cls)
        todo += cls.__subclasses__()
    classes |= {c for c in vars(pykube.objects).values() if inspect.isclass(c) and issubclass(c, APIObject)}
    kinds = {
        cls.kind: (group_of(cls.version), cls.endpoint)
        for cls in classes
        if getattr(cls, "endpoint", None) and getattr(cls, "kind", None)
    }
    for crd in crds.all_crds().values():
        kinds[crd["spec"]["names"]["kind"]] = (crd["spec"]["group"], crd["spec"]["names"]["plural"])
    return kinds


def resolve_name(name: str, group: str | None) -> tuple[str, str] | None:
    """A kopf-style resource name (plural, kind or singular, optionally ``name.group``) → (group, plural)."""
    for candidate_group, plural in known_kinds().values():
        kind = next(k for k, v in known_kinds().items() if v == (candidate_group, plural))
        for spelling in (plural, kind.lower(), kind):
            for qualified in (spelling, f"{spelling}.{candidate_group}"):
                if name == qualified and group in (None, candidate_group):
                    return candidate_group, plural
    return None


_SAFE_NODES = (ast.Constant, ast.Name, ast.Attribute, ast.Load, ast.JoinedStr, ast.FormattedValue)


def evaluate(node: ast.AST | None, namespace: Mapping[str, Any]) -> Any:
    """The value of a literal or constant expression, or None when it is anything else."""
    if node is None or not all(isinstance(n, _SAFE_NODES) for n in ast.walk(node)):
        return None
    try:
        code = compile(ast.Expression(node), "<scan>", "eval")
        return eval(code, {"__builtins__": {}}, dict(namespace))
    except Exception:
        return None


def chain(node: ast.AST) -> list[str]:
    """``a.b.c`` → ['a', 'b', 'c']; anything else → []."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.insert(0, node.attr)
        node = node.value
    return [node.id, *parts] if isinstance(node, ast.Name) else []


@functools.cache
def kubernetes_methods() -> dict[str, list[type]]:
    import kubernetes.client

    index: dict[str, list[type]] = {}
    for name in dir(kubernetes.client):
        cls = getattr(kubernetes.client, name)
        if name.endswith("Api") and inspect.isclass(cls):
            for method in vars(cls):
                if hasattr(cls, f"_{method}_serialize"):
                    index.setdefault(method, []).append(cls)
    return index


def kubernetes_call(
    cls: type, method: str, call: ast.Call, namespace: Mapping[str, Any]
) -> tuple[str, str, str]:
    """(group, resource, verb) of one client method, from the path and HTTP method the client sends."""
    source = inspect.getsource(getattr(cls, f"_{method}_serialize"))
    http = re.search(r"method='(\w+)'", source)
    path = re.search(r"resource_path='([^']+)'", source)
    assert http and path, f"cannot read {cls.__name__}.{method}"
    segments = path.group(1).strip("/").split("/")
    if segments[0] == "api":
        group, rest = "", segments[2:]
    else:
        group, rest = segments[1], segments[3:]
    if rest[:2] == ["namespaces", "{namespace}"]:
        rest = rest[2:]
    if len(rest) == 0:
        return group, "", ""
    params = inspect.signature(getattr(cls, method)).parameters
    bound = dict(zip(list(params)[1:], call.args, strict=False))
    bound.update({k.arg: k.value for k in call.keywords if k.arg})
    if group == "{group}":
        group = evaluate(bound.get("group"), namespace) or "?"
    resource = rest[0]
    if resource == "{plural}":
        resource = evaluate(bound.get("plural"), namespace) or "?"
    item = len(rest) > 1 and rest[1] == "{name}"
    if len(rest) > 2:
        resource = f"{resource}/{rest[2]}"
    verb = {"POST": "create", "PUT": "update", "PATCH": "patch"}.get(http.group(1))
    if http.group(1) == "GET":
        watch = evaluate(bound.get("watch"), namespace)
        verb = "get" if item else ("watch" if watch else "list")
    if http.group(1) == "DELETE":
        verb = "delete" if item else "deletecollection"
    return group, resource, verb or http.group(1).lower()


class Scanner(ast.NodeVisitor):
    """Collects the resources one module touches; what it cannot resolve goes to ``unresolved``."""

    def __init__(self, where: str, namespace: Mapping[str, Any]) -> None:
        self.where = where
        self.namespace = namespace
        self.uses: list[Use] = []
        self.unresolved: list[str] = []
        self.pykube_names: set[str] = set()

    def use(self, node: ast.AST, group: str, resource: str, *verbs: str) -> None:
        self.uses.append(Use(group, resource, frozenset(verbs), f"{self.where}:{getattr(node, 'lineno', 0)}"))

    def kind(self, node: ast.AST, api_version: Any, kind: Any, *verbs: str) -> None:
        if not isinstance(kind, str):
            self.unresolved.append(f"{self.where}:{node.lineno}: kind is not a constant")
        elif kind not in known_kinds():
            self.unresolved.append(f"{self.where}:{node.lineno}: unknown kind {kind}")
        else:
            group, plural = known_kinds()[kind]
            self.use(node, group_of(api_version) if isinstance(api_version, str) else group, plural, *verbs)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.module in ("pykube", "pykube.objects"):
            self.pykube_names |= {a.asname or a.name for a in node.names}

    def visit_Name(self, node: ast.Name) -> None:
        if node.id in self.pykube_names and node.id in known_kinds():
            self.kind(node, None, node.id)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        parts = chain(node)
        if parts[:1] == ["pykube"] and parts[-1] in known_kinds():
            self.kind(node, None, parts[-1])
        self.generic_visit(node)

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        if any(chain(base)[-1:] and chain(base)[-1].endswith("APIObject") for base in node.bases):
            body = {
                t.id: stmt.value
                for stmt in node.body
                if isinstance(stmt, ast.Assign)
                for t in stmt.targets
                if isinstance(t, ast.Name)
            }
            version, endpoint = (
                evaluate(body.get("version"), self.namespace),
                evaluate(body.get("endpoint"), self.namespace),
            )
            if isinstance(version, str) and isinstance(endpoint, str):
                self.use(node, group_of(version), endpoint)
            else:
                self.unresolved.append(
                    f"{self.where}:{node.lineno}: class {node.name} has no constant endpoint"
                )
        self.generic_visit(node)

    def visit_Dict(self, node: ast.Dict) -> None:
        keys = {evaluate(k, {}): v for k, v in zip(node.keys, node.values, strict=True) if k is not None}
        if "apiVersion" in keys and "kind" in keys:
            kind = evaluate(keys["kind"], self.namespace)
            if kind is not None:  # owner references copy their kind from the owner at run time
                self.kind(node, evaluate(keys["apiVersion"], self.namespace), kind)
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        parts = chain(node.func)
        if (parts[:2] == ["kopf", "on"] and len(parts) == 3) or parts in (
            ["kopf", p] for p in ("index", "daemon", "timer")
        ):
            self.kopf_handler(node, parts[-1])
        elif parts[:1] == ["kopf"] and parts[-1] in KOPF_EVENTS and len(parts) == 2:
            self.use(node, "", "events", "create")
        elif parts and parts[-1].endswith("object_factory"):
            args = [evaluate(a, self.namespace) for a in node.args[1:3]]
            self.kind(node, *[*args, None, None][:2])
        elif isinstance(node.func, ast.Attribute) and node.func.attr in kubernetes_methods():
            for cls in kubernetes_methods()[node.func.attr]:
                group, resource, verb = kubernetes_call(cls, node.func.attr, node, self.namespace)
                if "?" in (group, resource):
                    self.unresolved.append(
                        f"{self.where}:{node.lineno}: {node.func.attr} on a non-constant resource"
                    )
                elif resource:
                    self.use(node, group, resource, verb)
        self.generic_visit(node)

    def kopf_handler(self, node: ast.Call, event: str) -> None:
        if event in KOPF_NON_RESOURCE:
            return
        args: list[Any] = []
        for arg in node.args:  # `*PIPELINES` spreads a constant tuple of selector parts
            if isinstance(arg, ast.Starred):
                spread = evaluate(arg.value, self.namespace)
                args += list(spread) if isinstance(spread, tuple | list) else [None]
            else:
                args.append(evaluate(arg, self.namespace))
        kw = {k.arg: evaluate(k.value, self.namespace) for k in node.keywords if k.arg}
        if any(not isinstance(a, str) for a in args):
            self.unresolved.append(f"{self.where}:{node.lineno}: kopf.{event} with a non-constant resource")
            return
        group, name = kw.get("group"), kw.get("plural") or kw.get("kind")
        if len(args) == 3:
            group, name = args[0], args[2]
        elif len(args) == 2:
            group, name = args[0].partition("/")[0] if "/" in args[0] else args[0], args[1]
        elif len(args) == 1:
            name = args[0]
        resolved = resolve_name(name, group) if isinstance(name, str) else None
        if resolved is None:
            self.unresolved.append(f"{self.where}:{node.lineno}: kopf.{event} on unknown resource {name!r}")
            return
        verbs = ("list", "watch") if event in ("event", "index") else ("list", "watch", "patch")
        self.use(node, *resolved, *verbs)


def scan_source(text: str, where: str, namespace: Mapping[str, Any] | None = None) -> Scanner:
    scanner = Scanner(where, namespace or {})
    scanner.visit(ast.parse(text))
    return scanner


def module_file(module: str) -> Path | None:
    """The source file of an ``orchest_operator`` module under ``operator/``, None for anything else."""
    if module != PACKAGE and not module.startswith(PACKAGE + "."):
        return None
    base = OPERATOR.joinpath(*module.split(".")[1:])
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def imported_modules(tree: ast.AST) -> set[str]:
    """Modules an AST imports: import statements and ``importlib.import_module("...")`` with a literal."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Call) and chain(node.func)[-1:] == ["import_module"] and node.args:
            target = evaluate(node.args[0], {})
            if isinstance(target, str):
                names.add(target)
    return names


def operator_modules() -> dict[str, Path]:
    """Every orchest module the operator process loads, with parent packages, by following imports."""
    found: dict[str, Path] = {}
    todo = list(ENTRY_POINTS)
    while todo:
        module = todo.pop()
        path = module_file(module)
        if module in found or path is None:
            continue
        found[module] = path
        parts = module.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]
        todo += sorted(imported_modules(ast.parse(path.read_text())))
    return dict(sorted(found.items()))


def scan_operator() -> tuple[list[Use], list[str]]:
    uses, unresolved = [], []
    for module, path in operator_modules().items():
        scanner = scan_source(
            path.read_text(), str(path.relative_to(ROOT)), vars(importlib.import_module(module))
        )
        uses += scanner.uses
        unresolved += scanner.unresolved
    return uses, unresolved


def uncovered_uses(uses: list[Use]) -> list[str]:
    missing = []
    for u in uses:
        rows = [p for p in rbac.RULES if (p.group, p.resource) == (u.group, u.resource)]
        if not rows:
            missing.append(f"{u.where}: {u.group or 'core'}/{u.resource} is not in rbac.RULES")
            continue
        for verb in sorted(u.verbs):
            if not any(p.allows(verb) for p in rows):
                missing.append(f"{u.where}: {verb} {u.group or 'core'}/{u.resource} is not in rbac.RULES")
    return missing


# --- the operator's code against the table ------------------------------------------------------------


def test_operator_code_touches_only_resources_in_the_table() -> None:
    uses, unresolved = scan_operator()
    assert unresolved == []
    assert uncovered_uses(uses) == []
    # The scan reads the real tree: the step Job builder is always there.
    assert ("batch", "jobs") in {(u.group, u.resource) for u in uses}


def test_operator_modules_follow_imports_from_the_entry_points() -> None:
    modules = operator_modules()
    assert {"orchest_operator", "orchest_operator.handlers", "orchest_operator.builders.job"} <= set(modules)
    # The CLI's subcommands other than `orchest operator` run as the user, not as the operator.
    assert "orchest_operator.rbac" not in modules


# --- the scanner finds each way of touching a resource ------------------------------------------------


SCANNED = """
import kopf, pykube
from pykube import Secret
from pykube.objects import NamespacedAPIObject

@kopf.on.create(GROUP, "v1alpha1", "pipelineruns")
def a(**_): kopf.info({}, reason="x", message="y")

@kopf.timer(*RUNS, interval=5)
def t(**_): pass

@kopf.index("batch", "v1", "jobs")
def b(**_): pass

@kopf.on.event("pods")
def c(**_): pass

@kopf.on.startup()
def d(**_): pass

class Lease(NamespacedAPIObject):
    version = "coordination.k8s.io/v1"
    endpoint = "leases"

def e(api, core, custom):
    pykube.PersistentVolumeClaim.objects(api)
    Secret(api, {})
    pykube.object_factory(api, "networking.k8s.io/v1", "Ingress")
    core.read_namespaced_pod_log("p", "ns")
    custom.list_namespaced_custom_object(GROUP, "v1alpha1", "ns", "pipelines", watch=True)
    return {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {}}
"""


CONSTANTS = {"GROUP": "orchest.io", "RUNS": ("orchest.io", "v1alpha1", "pipelineruns")}


def found(text: str) -> set[tuple[str, str, frozenset[str]]]:
    scanner = scan_source(text, "x.py", CONSTANTS)
    assert scanner.unresolved == []
    return {(u.group, u.resource, u.verbs) for u in scanner.uses}


def test_scanner_finds_every_kind_of_use() -> None:
    assert found(SCANNED) == {
        ("orchest.io", "pipelineruns", frozenset({"list", "watch", "patch"})),
        ("", "events", frozenset({"create"})),
        ("batch", "jobs", frozenset({"list", "watch"})),
        ("", "pods", frozenset({"list", "watch"})),
        ("coordination.k8s.io", "leases", frozenset()),
        ("", "persistentvolumeclaims", frozenset()),
        ("", "secrets", frozenset()),
        ("networking.k8s.io", "ingresses", frozenset()),
        ("", "pods/log", frozenset({"get"})),
        ("orchest.io", "pipelines", frozenset({"watch"})),
        ("apps", "statefulsets", frozenset()),
    }


def test_scanner_reports_what_the_table_lacks() -> None:
    scanner = scan_source(SCANNED, "x.py", CONSTANTS)
    assert uncovered_uses(scanner.uses) == [
        "x.py:26: core/persistentvolumeclaims is not in rbac.RULES",
        "x.py:28: networking.k8s.io/ingresses is not in rbac.RULES",
        "x.py:29: core/pods/log is not in rbac.RULES",
        "x.py:31: apps/statefulsets is not in rbac.RULES",
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("@kopf.on.event(SOMEWHERE)\ndef f(): pass", "x.py:1: kopf.event with a non-constant resource"),
        ("@kopf.on.event('gadgets')\ndef f(): pass", "x.py:1: kopf.event on unknown resource 'gadgets'"),
        ("x = {'apiVersion': 'v1', 'kind': 'Gadget'}", "x.py:1: unknown kind Gadget"),
        ("class G(APIObject):\n    endpoint = name()", "x.py:1: class G has no constant endpoint"),
        ("def f(c, p): c.list_namespaced_custom_object('g', 'v1', 'ns', p)", "non-constant resource"),
    ],
)
def test_scanner_reports_what_it_cannot_resolve(text: str, message: str) -> None:
    unresolved = scan_source(text, "x.py").unresolved
    assert len(unresolved) == 1 and message in unresolved[0]


def test_dynamic_kinds_such_as_owner_references_are_not_guessed() -> None:
    assert found("def ref(o): return {'apiVersion': o['apiVersion'], 'kind': o['kind']}") == set()


# --- the table ----------------------------------------------------------------------------------------


def test_table_is_least_privilege() -> None:
    for p in (*rbac.RULES, *rbac.USER_EDIT_RULES, *rbac.USER_VIEW_RULES):
        assert "*" not in (p.group, p.resource, *p.verbs), p
        assert p.why.strip(), p
        assert len(set(p.verbs)) == len(p.verbs), p
    secrets = next(p for p in rbac.RULES if p.resource == "secrets")
    assert not {"list", "watch"} & set(secrets.verbs)
    resources = {(p.group, p.resource) for p in rbac.RULES}
    assert len(resources) == len(rbac.RULES), "one row per resource"
    assert not resources & {("rbac.authorization.k8s.io", r) for r in ("clusterroles", "clusterrolebindings")}


def test_uncovered_names_every_grant_the_operator_does_not_hold() -> None:
    eg_role = [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["create", "delete", "get", "list", "watch"]}
    ]
    assert rbac.uncovered(eg_role) == []
    greedy = [
        {"apiGroups": [""], "resources": ["pods", "pods/exec"], "verbs": ["create"]},
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["list"]},
        {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["x"], "verbs": ["get"]},
    ]
    assert rbac.uncovered(greedy) == [
        "create core/pods/exec",
        "list core/secrets",
        "unsupported rule " + str(greedy[2]),
    ]


def test_cluster_role_holds_the_whole_table_and_nothing_else() -> None:
    role = rbac.operator_cluster_role()
    granted = {
        (g, r, v)
        for rule in role["rules"]
        for g in rule["apiGroups"]
        for r in rule["resources"]
        for v in rule["verbs"]
    }
    assert granted == {(p.group, p.resource, v) for p in rbac.RULES for v in p.verbs if not p.own_namespace}


def test_leases_are_granted_in_the_operators_namespace_and_by_name() -> None:
    role, binding = rbac.operator_leader_role("ops")
    assert role["metadata"] == {
        "name": "orchest-operator-leader-election",
        "namespace": "ops",
        "labels": rbac.PART_OF,
    }
    # RBAC cannot limit create by name: create alone is unnamed, get and update reach only the one Lease
    assert role["rules"] == [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "verbs": ["get", "update"],
            "resourceNames": ["orchest-operator"],
        },
    ]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "orchest-operator", "namespace": "ops"}]
    assert "leases" not in str(rbac.operator_cluster_role()) + str(rbac.operator_namespace_roles(["a"]))


def test_namespaced_mode_keeps_cluster_scoped_rules_in_the_cluster_role() -> None:
    cluster = rbac.operator_cluster_role(all_namespaces=False)
    assert {r for rule in cluster["rules"] for r in rule["resources"]} == {
        "customresourcedefinitions",
        "namespaces",
    }
    objects = rbac.operator_namespace_roles(["team-a", "team-b"])
    assert [(o["kind"], o["metadata"]["namespace"]) for o in objects] == [
        ("Role", "team-a"),
        ("RoleBinding", "team-a"),
        ("Role", "team-b"),
        ("RoleBinding", "team-b"),
    ]
    assert objects[1]["subjects"] == [
        {"kind": "ServiceAccount", "name": "orchest-operator", "namespace": "orchest-system"}
    ]


def test_user_roles_aggregate_into_the_built_in_roles() -> None:
    edit, view = rbac.user_cluster_roles()
    assert edit["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-edit"] == "true"
    assert view["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"] == "true"
    assert {v for rule in view["rules"] for v in rule["verbs"]} == {"get", "list", "watch"}


# --- the generated files ------------------------------------------------------------------------------


def test_generated_files_are_up_to_date() -> None:
    for relative, text in rbac.generated_files().items():
        path = ROOT / relative
        assert path.exists() and path.read_text() == text, (
            f"{relative} is stale: run `python -m orchest_operator.rbac --write`"
        )


def test_generated_objects_are_valid_kubernetes() -> None:
    objects = [
        rbac.service_account(),
        rbac.operator_cluster_role(),
        rbac.operator_cluster_role_binding(),
        *rbac.user_cluster_roles(),
        *rbac.operator_namespace_roles(["team-a"]),
        *rbac.operator_leader_role(),
    ]
    for obj in objects:
        validate(obj)
    rules = yaml.safe_load((ROOT / "charts/orchest/files/rbac-rules.yaml").read_text())
    assert set(rules) == {"cluster", "namespaced", "leaderElection", "edit", "view"}


def test_main_writes_into_a_repository_root(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert rbac.main(["--write", str(tmp_path)]) == 2
    assert "is not the repository root (no manifests/ folder)" in capsys.readouterr().err
    (tmp_path / "manifests").mkdir()
    assert rbac.main(["--write", str(tmp_path)]) == 0
    assert (tmp_path / "manifests/rbac/operator_cluster_role.yaml").read_text() == (
        ROOT / "manifests/rbac/operator_cluster_role.yaml"
    ).read_text()


def test_main_prints_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert rbac.main([]) == 0
    assert "core/secrets [namespaced] create,delete,get,patch:" in capsys.readouterr().out
