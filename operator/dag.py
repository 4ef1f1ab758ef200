"""The pipeline DAG: validation, selection of a partial run, and what may start now.

Pure functions over the models, no I/O. The operator and the local runner both plan with this module;
there is no second implementation of "what runs next".
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import networkx as nx

from orchest_operator.models import (
    DNS1123_LABEL,
    FailurePolicy,
    PipelineSpec,
    SelectionMode,
    Step,
    StepPhase,
    step_phase,
)

_NAME = re.compile(DNS1123_LABEL)


class PlanError(ValueError):
    """The pipeline or the selection cannot be planned; ``problems`` lists every reason, one per line."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = list(problems)


def problems(steps: Sequence[Step]) -> list[str]:
    """Every structural problem of a list of steps, in a stable order (empty when the DAG is sound)."""
    found: list[str] = []
    if not steps:
        return ["pipeline has no steps"]
    seen: set[str] = set()
    for step in steps:
        if step.name in seen:
            found.append(f"step {step.name!r} is defined more than once")
        seen.add(step.name)
        if len(step.name) > 40 or not _NAME.match(step.name):
            found.append(
                f"step name {step.name!r} must be a DNS-1123 label of at most 40 characters "
                "(lowercase letters, digits and '-', starting and ending with a letter or digit)"
            )
    for step in steps:
        for dep in step.depends_on:
            if dep == step.name:
                found.append(f"step {step.name!r} depends on itself")
            elif dep not in seen:
                found.append(f"step {step.name!r} depends on unknown step {dep!r}")
    if not found:
        graph = _graph(steps)
        try:
            cycle = nx.find_cycle(graph)
        except nx.NetworkXNoCycle:
            cycle = None
        if cycle:
            names = [edge[0] for edge in cycle] + [cycle[0][0]]
            found.append("dependency cycle: " + " -> ".join(names))
    return found


def _graph(steps: Sequence[Step]) -> nx.DiGraph:
    graph = nx.DiGraph()
    graph.add_nodes_from(s.name for s in steps)
    graph.add_edges_from((dep, s.name) for s in steps for dep in s.depends_on)
    return graph


@dataclass(frozen=True)
class Dag:
    """A validated DAG. Edges point from a dependency to its dependent."""

    graph: nx.DiGraph
    order: tuple[str, ...]

    @classmethod
    def of(cls, spec: PipelineSpec | Sequence[Step]) -> Dag:
        steps = spec.steps if isinstance(spec, PipelineSpec) else spec
        found = problems(steps)
        if found:
            raise PlanError(found)
        graph = _graph(steps)
        # Topological order with ties broken by declaration order: runs and displays are predictable.
        position = {s.name: i for i, s in enumerate(steps)}
        order = tuple(nx.lexicographical_topological_sort(graph, key=position.__getitem__))
        return cls(graph=graph, order=order)

    def upstream(self, name: str) -> list[str]:
        return list(self.graph.predecessors(name))

    def select(self, mode: SelectionMode | str, names: Iterable[str] = ()) -> list[str]:
        """The steps a run executes, in topological order.

        ``Incoming`` adds every ancestor (Orchest's partial runs); ``Downstream`` adds every descendant.
        """
        mode = SelectionMode(mode)
        wanted = list(dict.fromkeys(names))
        unknown = [n for n in wanted if n not in self.graph]
        if unknown:
            raise PlanError([f"selected step {n!r} does not exist" for n in unknown])
        if mode is SelectionMode.ALL:
            chosen = set(self.graph)
        elif not wanted:
            raise PlanError([f"selection mode {mode.value} needs at least one step"])
        elif mode is SelectionMode.SELECTED:
            chosen = set(wanted)
        elif mode is SelectionMode.INCOMING:
            chosen = set(wanted).union(*(nx.ancestors(self.graph, n) for n in wanted))
        else:
            chosen = set(wanted).union(*(nx.descendants(self.graph, n) for n in wanted))
        return [n for n in self.order if n in chosen]

    def rerun(
        self, previous: Mapping[str, StepPhase | str], selected: Iterable[str]
    ) -> tuple[list[str], list[str]]:
        """Split an earlier run's selection into (steps to run again, steps whose outputs are reused).

        Every step that did not succeed reruns, and so does everything downstream of it: its inputs change.
        """
        selected_set = set(selected)
        failed = {n for n in selected_set if not step_phase(previous.get(n, StepPhase.PENDING)).ok}
        again = failed.union(*(nx.descendants(self.graph, n) for n in failed)) & selected_set
        run = [n for n in self.order if n in again]
        reused = [n for n in self.order if n in selected_set and n not in again]
        return run, reused

    def blocked(self, selected: Iterable[str], states: Mapping[str, StepPhase | str]) -> list[str]:
        """Pending steps that can never run because a step they need ended without success, or is itself
        blocked: in topological order, so a whole blocked branch is found at once and no caller waits for
        a step that will never start."""
        selected_set = set(selected)
        out: list[str] = []
        found: set[str] = set()
        for name in self.order:
            if (
                name not in selected_set
                or step_phase(states.get(name, StepPhase.PENDING)) is not StepPhase.PENDING
            ):
                continue
            for dep in self.graph.predecessors(name):
                phase = step_phase(
                    states.get(dep, StepPhase.PENDING if dep in selected_set else StepPhase.SUCCEEDED)
                )
                if dep in found or (phase.finished and not phase.ok):
                    out.append(name)
                    found.add(name)
                    break
        return out

    def ready(
        self,
        selected: Iterable[str],
        states: Mapping[str, StepPhase | str],
        *,
        parallelism: int = 0,
        failure_policy: FailurePolicy | str = FailurePolicy.FAIL_FAST,
    ) -> list[str]:
        """Pending steps that may start now, in topological order, honouring parallelism and failure policy.

        A dependency outside the selection counts as satisfied: a partial run uses whatever the shared
        directory already holds, as Orchest's partial runs did.
        """
        selected_set = set(selected)
        selected_list = [n for n in self.order if n in selected_set]
        phases = {n: step_phase(states.get(n, StepPhase.PENDING)) for n in selected_list}
        if FailurePolicy(failure_policy) is FailurePolicy.FAIL_FAST and any(
            p.finished and not p.ok and p is not StepPhase.SKIPPED for p in phases.values()
        ):
            return []
        running = sum(1 for p in phases.values() if p is StepPhase.RUNNING)
        budget = parallelism - running if parallelism > 0 else len(selected_list)
        out: list[str] = []
        for name in selected_list:
            if len(out) >= budget:
                break
            if phases[name] is not StepPhase.PENDING:
                continue
            if all(phases.get(dep, StepPhase.SUCCEEDED).ok for dep in self.graph.predecessors(name)):
                out.append(name)
        return out
