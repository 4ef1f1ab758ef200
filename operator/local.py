"""The local runner: a PipelineRun on this machine, one ``orchest step`` process per step.

It plans exactly as the operator does (``Dag`` and ``facts.decide``); only the way steps are observed
differs: a worker thread per running step waits for its process and reports back through a queue, and the
main thread folds each report into the run and asks ``decide`` what to start next. Everything it learns is
written to ``.orchest/runs/<run-id>/run.json`` beside the pipeline file, in the shape of
``PipelineRun.status``, next to each step's ``<step>.log`` and executed ``<step>.ipynb``.
"""

from __future__ import annotations

import os
import queue
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import BinaryIO, Protocol

from orchest_operator import workspace
from orchest_operator.cache.index import key_maker
from orchest_operator.cache.key import recipes
from orchest_operator.cache.steps import StepCache
from orchest_operator.dag import Dag
from orchest_operator.executor import environment_for, parse_termination_message
from orchest_operator.facts import Decision, Reason, decide, progress
from orchest_operator.models import (
    Condition,
    PipelineRunSpec,
    PipelineRunStatus,
    PipelineSpec,
    RunPhase,
    RunSnapshot,
    StepFailure,
    StepPhase,
    StepStatus,
    Workspace,
)
from orchest_operator.workspace import workspace_of

RUNS_DIR = Path(".orchest", "runs")
STOP_GRACE_SECONDS = 5.0
"""How long a stopped step may take to exit after SIGTERM before it is killed."""


def new_run_id(now: datetime | None = None) -> str:
    """A sortable timestamp plus a short random suffix: runs list in order and two runs started in the same
    second never collide. It is a valid DNS-1123 label, like a PipelineRun name."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{secrets.token_hex(2)}"


def timestamp(moment: datetime | None = None) -> str:
    """RFC 3339 in UTC with milliseconds: local steps are often shorter than a second."""
    return (moment or datetime.now(UTC)).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Reporter(Protocol):
    """Shows a run while it goes; receives a copy of the status after every change."""

    def update(self, status: PipelineRunStatus) -> None: ...

    def close(self, status: PipelineRunStatus) -> None: ...


@dataclass(frozen=True)
class _Finished:
    """A worker's report: its step's process ended (after any retries)."""

    step: str
    ok: bool
    message: str
    failure: StepFailure | None
    attempts: int
    when: datetime


_INTERRUPTED = "interrupted"


class LocalRun:
    """One run of a pipeline on this machine. Create it, then call :meth:`execute` once."""

    def __init__(
        self,
        spec: PipelineSpec,
        base: Path,
        request: PipelineRunSpec,
        *,
        run_id: str | None = None,
    ) -> None:
        """Plan the run; raises ``dag.PlanError`` when the pipeline or the selection cannot be planned."""
        self.spec = spec
        self.base = base
        self.request = request
        self.id = run_id or new_run_id()
        self.dir = base / RUNS_DIR / self.id
        self.isolated = request.workspace is Workspace.ISOLATED
        self.workdir = Path(workspace_of(base, self.id)) if self.isolated else base
        """Where the steps run: the pipeline's directory, or the run's own copy of it."""
        self.reporter: Reporter | None = None
        self.dag = Dag.of(spec)
        self.selected = self.dag.select(request.selection.mode, request.selection.steps)
        self.status = PipelineRunStatus(
            steps={name: StepStatus() for name in self.selected},
            snapshot=RunSnapshot(pipeline=spec, selected=self.selected),
            progress=progress(dict.fromkeys(self.selected, StepPhase.PENDING)),
        )
        # SimpleQueue.put is reentrant: the signal handler may call it while the main thread is in get().
        self._events: queue.SimpleQueue[_Finished | str] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._processes: dict[str, subprocess.Popen[bytes]] = {}
        self._stopping: set[str] = set()
        self._workers: list[threading.Thread] = []
        self._cancel = False
        self._scratch = Path()
        # An isolated run works in a copy: the cache's index and the outputs it checks are in the pipeline's
        # directory, so such a run neither reuses nor records.
        self._cache = (
            None
            if self.isolated
            else StepCache(
                base,
                request.pipeline_ref.name,
                self.id,
                key_maker(base, recipes(spec, request.parameters)),
                lookup=request.cache,
            )
        )

    def cancel(self) -> None:
        """Cancel the run from another thread (as SIGINT does): running steps are stopped and recorded."""
        self._events.put(_INTERRUPTED)

    @property
    def record(self) -> Path:
        return self.dir / "run.json"

    def execute(self, reporter: Reporter | None = None) -> PipelineRunStatus:
        """Run until every selected step has finished or the run was cancelled (SIGINT or SIGTERM)."""
        self.reporter = reporter
        self.dir.mkdir(parents=True, exist_ok=True)
        self.status.start_time = timestamp()
        if self.isolated and not self._copy_workspace():
            return self.status
        with tempfile.TemporaryDirectory(prefix="orchest-") as scratch, self._interruptible():
            self._scratch = Path(scratch)
            decision = self._decide()
            while not decision.finished:
                event = self._events.get()
                if event == _INTERRUPTED:
                    self._cancel = True
                elif isinstance(event, _Finished):
                    self._record(event)
                decision = self._decide()
            self._reap()
        self.status.completion_time = timestamp()
        self._save()
        if self.reporter is not None:
            self.reporter.close(self.status.model_copy(deep=True))
        return self.status

    def _copy_workspace(self) -> bool:
        """Make the run's copy of the pipeline's directory; on failure the run fails before any step."""
        try:
            workspace.copy(self.base, self.workdir, self.request.workspace_exclude)
        except OSError as err:
            message = f"cannot copy the pipeline's directory to {self.workdir}: {err}"
            now = timestamp()
            for step in self.status.steps.values():
                step.phase, step.message = StepPhase.SKIPPED, "not run: the workspace could not be made"
            self.status.phase = RunPhase.FAILED
            self.status.completion_time = now
            self.status.conditions = [
                Condition(
                    type="Succeeded",
                    status="False",
                    reason=Reason.WORKSPACE_FAILED,
                    message=message,
                    last_transition_time=now,
                )
            ]
            self._save()
            if self.reporter is not None:
                self.reporter.close(self.status.model_copy(deep=True))
            return False
        return True

    # --- planning -----------------------------------------------------------------------------------

    def _decide(self) -> Decision:
        # A step found in the cache is done at once, which may make its dependents ready: decide again
        # until a pass reuses nothing.
        reused = True
        while reused:
            observed = {name: step.phase for name, step in self.status.steps.items()}
            decision = decide(
                self.dag,
                self.selected,
                observed,
                parallelism=self.request.parallelism,
                failure_policy=self.request.failure_policy,
                cancel=self._cancel,
            )
            for name in decision.stop:
                self._stop(name)
            now = timestamp()
            for name, phase in decision.phases.items():
                step = self.status.steps[name]
                if phase is step.phase:
                    continue
                if step.phase is StepPhase.RUNNING:
                    step.completion_time = now
                step.message = self._why(name, phase, decision.phases)
                step.phase = phase
            reused = False
            for name in decision.start:
                if self._reuse(name):
                    reused = True
                else:
                    self._launch(name)
        self.status.phase = decision.phase
        self.status.progress = progress(decision.phases)
        self._condition(decision)
        self._save()
        if self.reporter is not None:
            self.reporter.update(self.status.model_copy(deep=True))
        return decision

    def _reuse(self, name: str) -> bool:
        """Ask the cache about a step that may start now: mark it ``Cached`` and say True, or leave it
        Pending with the reason it will run as its message."""
        step = self.status.steps[name]
        if self._cache is None:
            return False
        answer = self._cache.ask(name)
        if answer.message is not None:
            step.message = answer.message
        if answer.cached_from is None:
            return False
        step.phase = StepPhase.CACHED
        step.start_time = step.completion_time = timestamp()
        step.cached_from = answer.cached_from
        return True

    def _why(self, name: str, phase: StepPhase, phases: dict[str, StepPhase]) -> str:
        if phase is StepPhase.CANCELLED:
            return "the run was cancelled"
        upstream = [d for d in self.dag.upstream(name) if d in phases]
        failed = [d for d in upstream if phases[d].finished and not phases[d].ok]
        if failed:
            return f"upstream step {failed[0]!r} did not succeed"
        return "not started: a step failed and the failure policy is FailFast"

    def _condition(self, decision: Decision) -> None:
        current = self.status.conditions[0] if self.status.conditions else None
        if current and (current.status, current.reason, current.message) == (
            decision.condition_status,
            decision.reason,
            decision.message,
        ):
            return
        changed = current is None or current.status != decision.condition_status
        self.status.conditions = [
            Condition(
                type="Succeeded",
                status=decision.condition_status,
                reason=decision.reason,
                message=decision.message,
                last_transition_time=timestamp() if changed else current.last_transition_time,
            )
        ]

    def _record(self, event: _Finished) -> None:
        step = self.status.steps[event.step]
        step.attempts = event.attempts
        if step.phase is not StepPhase.RUNNING:
            return  # stopped by a cancel: the decision already recorded why
        step.phase = StepPhase.SUCCEEDED if event.ok else StepPhase.FAILED
        step.completion_time = timestamp(event.when)
        recorded = self._cache.record(event.step) if self._cache is not None and event.ok else None
        step.message = (recorded or step.message) if event.ok else event.message
        step.failure = event.failure

    # --- processes ----------------------------------------------------------------------------------

    def _launch(self, name: str) -> None:
        step = self.status.steps[name]
        step.phase = StepPhase.RUNNING
        step.start_time = timestamp()
        step.attempts = 1
        worker = threading.Thread(target=self._work, args=(name,), name=f"step-{name}", daemon=True)
        self._workers.append(worker)
        worker.start()

    def _work(self, name: str) -> None:
        """Run a step's process to its end, retrying as the step allows; report exactly once."""
        attempts = 0
        ok, message, failure = False, "was not started", None
        try:
            step = self.spec.step(name)
            parameters = self.spec.parameters_for(step, self.request.parameters)
            env = {**os.environ, **environment_for(self.spec, name, run=self.id, parameters=parameters)}
            # Like a Job's activeDeadlineSeconds, the step's timeout spans all of its attempts.
            deadline = time.monotonic() + step.timeout_seconds if step.timeout_seconds else None
            while attempts <= step.retries and not self._stopped(name):
                attempts += 1
                termination = self._scratch / f"{name}.{attempts}.json"
                env["ORCHEST_TERMINATION_LOG"] = str(termination)
                with (self.dir / f"{name}.log").open("ab") as log:
                    if attempts > 1:
                        log.write(f"orchest: attempt {attempts} of {step.retries + 1}\n".encode())
                        log.flush()
                    code = self._run_process(name, step.file, env, log, deadline)
                if code is None:
                    ok, message, failure = False, f"timed out after {step.timeout_seconds}s", None
                    break
                ok = code == 0
                failure, message = (None, "succeeded") if ok else _termination(termination, code)
                if ok:
                    break
        except Exception as err:  # a worker must always report, or the run would wait forever
            ok, message, failure = False, f"could not run the step: {err}", None
        finally:
            self._events.put(_Finished(name, ok, message, failure, max(attempts, 1), datetime.now(UTC)))

    def _run_process(
        self, name: str, file: str, env: dict[str, str], log: BinaryIO, deadline: float | None
    ) -> int | None:
        """Exit code of one attempt, or None when the step ran out of time."""
        command = [
            sys.executable,
            "-m",
            "orchest_operator.cli.step",
            "--file",
            file,
            "--step",
            name,
            "--run",
            self.id,
            "--output-dir",
            str(self.dir.resolve()),
        ]
        with self._lock:
            if name in self._stopping:
                return -signal.SIGTERM
            # A session of its own: a terminal's Ctrl-C reaches only the runner, which stops steps itself.
            process = subprocess.Popen(
                command,
                cwd=self.workdir,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            self._processes[name] = process
        try:
            return process.wait(timeout=None if deadline is None else max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _terminate(process)
            return None
        finally:
            with self._lock:
                self._processes.pop(name, None)

    def _stopped(self, name: str) -> bool:
        with self._lock:
            return name in self._stopping

    def _stop(self, name: str) -> None:
        with self._lock:
            self._stopping.add(name)
            process = self._processes.get(name)
        if process is not None:
            _signal_group(process, signal.SIGTERM)

    def _reap(self) -> None:
        """Wait for every worker, so no step process outlives the run."""
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for worker in self._workers:
            worker.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            leftovers = list(self._processes.values())
        for process in leftovers:
            _signal_group(process, signal.SIGKILL)
        for worker in self._workers:
            worker.join()

    @contextmanager
    def _interruptible(self) -> Iterator[None]:
        """Turn SIGINT and SIGTERM into a cancel request handled by the main loop, not an exception that
        could land between starting a process and recording it."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum: int, frame: FrameType | None) -> None:
            self._events.put(_INTERRUPTED)

        previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)

    def _save(self) -> None:
        """Replace run.json atomically: a reader (``orchest graph --run``) never sees half a file."""
        partial = self.record.with_suffix(".json.partial")
        partial.write_text(self.status.model_dump_json(by_alias=True, exclude_none=True, indent=2) + "\n")
        partial.replace(self.record)


def _termination(path: Path, code: int) -> tuple[StepFailure | None, str]:
    fallback = f"exited with code {code}" if code > 0 else f"was killed by signal {-code}"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return None, fallback
    failure, message = parse_termination_message(text)
    return failure, message or fallback


def _signal_group(process: subprocess.Popen[bytes], sig: int) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)


def _terminate(process: subprocess.Popen[bytes]) -> None:
    _signal_group(process, signal.SIGTERM)
    try:
        process.wait(STOP_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        _signal_group(process, signal.SIGKILL)
        process.wait()


def exit_code(status: PipelineRunStatus) -> int:
    """0 when every selected step succeeded, 130 when cancelled (as after Ctrl-C), 1 otherwise."""
    if status.phase is RunPhase.SUCCEEDED:
        return 0
    if status.phase is RunPhase.CANCELLED:
        return 130
    return 1


def elapsed(start: str | None, end: str | None) -> float | None:
    """Seconds between two status timestamps (until now when ``end`` is missing); None if never started."""
    if not start:
        return None
    finish = datetime.fromisoformat(end) if end else datetime.now(UTC)
    return (finish - datetime.fromisoformat(start)).total_seconds()
