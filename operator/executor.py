"""Run one pipeline step: a notebook through papermill, a ``.py`` file with this interpreter, a ``.sh`` file
with bash.

This is the one place that knows how a step executes. The local runner starts ``orchest step`` (a thin
wrapper around :func:`run_step`) once per step, and the Kubernetes Job of a step runs the very same
command, so a step behaves alike on a laptop and in a cluster.
"""

from __future__ import annotations

import json
import os
import secrets
import selectors
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from orchest_operator.models import PipelineSpec, StepFailure

DEFAULT_KERNEL = "python3"
TERMINATION_LIMIT = 4096
"""Kubernetes keeps at most 4096 bytes of a container's termination message."""
_ELLIPSIS = "…"

ENV_PARAMETERS = "ORCHEST_PARAMETERS"
ENV_STEP = "ORCHEST_STEP"
ENV_RUN = "ORCHEST_RUN"

# Cells papermill adds to the executed notebook; they are not the user's and do not count in a cell index.
_PAPERMILL_TAGS = {"injected-parameters", "papermill-error-cell-tag"}


@dataclass(frozen=True)
class StepResult:
    ok: bool
    message: str
    failure: StepFailure | None = None


def environment_for(
    spec: PipelineSpec, step: str, *, run: str, parameters: Mapping[str, Any]
) -> dict[str, str]:
    """The variables a step sees on top of its process environment: the pipeline's and the step's ``env``
    (``PipelineSpec.env_for``), then the ``ORCHEST_*`` variables, last so that no user entry hides them."""
    env = {var.name: var.value for var in spec.env_for(step)}
    env[ENV_PARAMETERS] = json.dumps(dict(parameters), sort_keys=True)
    env[ENV_STEP] = step
    env[ENV_RUN] = run
    return env


def run_step(
    file: str | Path,
    *,
    workdir: Path,
    step: str,
    run: str,
    parameters: Mapping[str, Any],
    env: Mapping[str, str] | None = None,
    notebook_output: Path,
    log: TextIO,
) -> StepResult:
    """Run the step file ``file`` (relative to ``workdir``) with ``workdir`` as working directory.

    ``env`` is layered over the process environment; ``ORCHEST_PARAMETERS``, ``ORCHEST_STEP`` and
    ``ORCHEST_RUN`` are always set. ``log`` must be a real file (it is handed to child processes).
    ``notebook_output`` is where an executed notebook is written, whether it succeeded or not.
    """
    path = workdir / file
    variables = {
        **(env or {}),
        ENV_PARAMETERS: json.dumps(dict(parameters), sort_keys=True),
        ENV_STEP: step,
        ENV_RUN: run,
    }
    if not path.is_file():
        return StepResult(False, f"step file {str(file)!r} does not exist in {workdir}")
    suffix = path.suffix
    if suffix not in (".ipynb", ".py", ".sh"):
        return StepResult(False, f"cannot run {str(file)!r}: a step file ends in .ipynb, .py or .sh")
    output = _Output(log)
    if suffix == ".ipynb":
        result = _run_notebook(path, workdir, dict(parameters), variables, notebook_output, output)
    elif suffix == ".py":
        result = _run_script([sys.executable, str(path)], "python", workdir, variables, output)
    else:
        result = _run_script(["bash", str(path)], "bash", workdir, variables, output)
    output.end_line()
    return result


class _Output:
    """The step's output on its way to ``log``, remembering whether its last line was ended, so that what
    orchest writes next starts on a line of its own (``print(x, end="")`` in a step is common)."""

    def __init__(self, log: TextIO) -> None:
        self.log = log
        self._line_ended = True

    def write(self, text: str) -> int:
        if text:
            self._line_ended = text.endswith("\n")
        return self.log.write(text)

    def write_bytes(self, data: bytes) -> None:
        """Write to the log's file descriptor (a child's bytes, no decoding); the text layer is flushed."""
        if not data:
            return
        self.log.flush()
        view = memoryview(data)
        while view:
            view = view[os.write(self.log.fileno(), view) :]
        self._line_ended = data.endswith(b"\n")

    def flush(self) -> None:
        self.log.flush()

    def end_line(self) -> None:
        if not self._line_ended:
            self.write("\n")
        self.flush()


def _run_script(
    command: list[str], interpreter: str, workdir: Path, env: Mapping[str, str], output: _Output
) -> StepResult:
    output.flush()
    try:
        process = subprocess.Popen(
            command, cwd=workdir, env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
    except OSError as err:
        return StepResult(False, f"cannot start {interpreter}: {err.strerror or err}")
    try:
        _copy_output(process, output)
        code = process.wait()
    except BaseException:  # interrupted: the script does not outlive its step
        process.kill()
        process.wait()
        raise
    if code == 0:
        return StepResult(True, "succeeded")
    if code < 0:
        return StepResult(False, f"{interpreter} was killed by signal {-code}")
    return StepResult(False, f"{interpreter} exited with code {code}")


def _copy_output(process: subprocess.Popen[bytes], output: _Output) -> None:
    """Pass the script's output on until it exits. A background process it left running may hold the
    pipe open: once the script has exited and nothing more arrives for a moment, the step is over."""
    assert process.stdout is not None
    with process.stdout, selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while True:
            if selector.select(timeout=0.1):
                chunk = os.read(process.stdout.fileno(), 65536)
                if not chunk:
                    return
                output.write_bytes(chunk)
            elif process.poll() is not None:
                return


def _run_notebook(
    path: Path,
    workdir: Path,
    parameters: dict[str, Any],
    env: Mapping[str, str],
    output: Path,
    log: _Output,
) -> StepResult:
    # papermill pulls in nbclient, zmq and friends; scripts should not pay for that import.
    import nbformat
    import papermill
    from papermill.exceptions import PapermillExecutionError

    try:
        notebook = nbformat.read(path, as_version=4)
    except Exception as err:  # nbformat raises plain JSON and validation errors alike
        return StepResult(False, f"{path.name} is not a valid notebook: {_first_line(str(err))}")
    kernelspec = notebook.metadata.get("kernelspec", {})
    kernel = kernelspec.get("name") or DEFAULT_KERNEL
    # Papermill writes the parameters cell in the kernel's language; a notebook without metadata is Python.
    language = kernelspec.get("language") or notebook.metadata.get("language_info", {}).get("name")
    if language is None and kernel == DEFAULT_KERNEL:
        language = "python"
    # Papermill writes `name = value` into a cell; a name that is no identifier would be a syntax error.
    # Such parameters still reach the step through ORCHEST_PARAMETERS.
    injected = {k: v for k, v in parameters.items() if k.isidentifier()}
    skipped = sorted(set(parameters) - set(injected))
    if skipped:
        print(f"orchest: not injecting parameters that are not identifiers: {', '.join(skipped)}", file=log)
    output.parent.mkdir(parents=True, exist_ok=True)
    log.flush()
    try:
        with _process_environment(env):
            papermill.execute_notebook(
                str(path),
                str(output),
                parameters=injected,
                kernel_name=kernel,
                language=language,
                cwd=str(workdir),
                progress_bar=False,
                stdout_file=log,
                stderr_file=log,
                kernel_manager_class=_kernel_manager_class(),
            )
    except PapermillExecutionError as err:
        failure = StepFailure(cell=_failed_cell(output), ename=err.ename, evalue=err.evalue)
        return StepResult(False, _failure_message(failure), failure)
    except Exception as err:  # the kernel died, is unknown, or could not start: the step failed
        failure = StepFailure(
            cell=_failed_cell(output), ename=type(err).__name__, evalue=_first_line(str(err))
        )
        return StepResult(False, _failure_message(failure), failure)
    return StepResult(True, "succeeded")


def _kernel_manager_class() -> type:
    """A kernel manager whose ``python3`` is always this interpreter's ipykernel.

    Jupyter looks kernelspecs up in the user's data directory before the environment's, so a ``python3``
    spec left in ``~/.local/share/jupyter`` by another Python would otherwise run the notebook with
    packages the step never installed. Other kernel names are looked up as Jupyter always does.

    The kernel talks to papermill over Unix sockets in the temporary directory rather than TCP on
    loopback: file permissions keep other users out (on TCP any local process can connect and try), and
    ipykernel no longer prints its "running over TCP without encryption" warning into every step's log.
    """
    from ipykernel.kernelspec import RESOURCES, get_kernel_dict
    from jupyter_client import AsyncKernelManager
    from jupyter_client.kernelspec import NATIVE_KERNEL_NAME, KernelSpec, KernelSpecManager
    from jupyter_client.localinterfaces import localhost
    from traitlets import default

    class NativeFirstSpecs(KernelSpecManager):
        def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
            if kernel_name == NATIVE_KERNEL_NAME:
                return self.kernel_spec_class(resource_dir=RESOURCES, **get_kernel_dict())
            return super().get_kernel_spec(kernel_name)

    class StepKernelManager(AsyncKernelManager):
        @default("kernel_spec_manager")
        def _default_specs(self) -> KernelSpecManager:
            return NativeFirstSpecs(data_dir=self.data_dir)

        @default("transport")
        def _default_transport(self) -> str:
            return "ipc" if os.name == "posix" else "tcp"  # zmq has no ipc transport on Windows

        @default("ip")
        def _default_ip(self) -> str:
            # For ipc, the sockets' path prefix (the kernel adds -1 ... -5), short enough for a socket name;
            # jupyter_client removes the sockets when the kernel shuts down.
            if self.transport == "ipc":
                return os.path.join(tempfile.gettempdir(), f"orchest-kernel-{secrets.token_hex(6)}")
            return localhost()

    return StepKernelManager


@contextmanager
def _process_environment(env: Mapping[str, str]) -> Iterator[None]:
    """The kernel inherits the process environment; a step owns its process, so set it and put it back."""
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _failed_cell(output: Path) -> int | None:
    """Index of the failing cell among the user's own cells of the executed notebook."""
    import nbformat

    try:
        notebook = nbformat.read(output, as_version=4)
    except Exception:  # papermill failed before writing anything
        return None
    running = None
    index = -1
    for cell in notebook.cells:
        if _PAPERMILL_TAGS & set(cell.get("metadata", {}).get("tags", [])):
            continue
        index += 1
        state = cell.get("metadata", {}).get("papermill", {})
        if state.get("exception"):
            return index
        if state.get("status") == "running" and running is None:
            running = index
    return running


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def _failure_message(failure: StepFailure) -> str:
    where = f"cell {failure.cell}" if failure.cell is not None else "notebook"
    what = failure.ename or "error"
    detail = _first_line(failure.evalue or "")
    return f"{where} raised {what}: {detail}" if detail else f"{where} raised {what}"


def termination_message(result: StepResult, limit: int = TERMINATION_LIMIT) -> str:
    """The JSON a failed step leaves as its container's termination message, at most ``limit`` bytes.

    Always ``message``; for a notebook also ``cell``, ``ename`` and ``evalue``. Long text is cut, never
    the JSON structure.
    """
    data: dict[str, Any] = {"message": result.message}
    if result.failure is not None:
        data.update(result.failure.model_dump(mode="json"))

    def size() -> int:
        return len(json.dumps(data, ensure_ascii=False).encode())

    # Hold the one-line message and the exception name to a fair share first, then give the exception
    # value what is left, then cut whatever is still too long.
    for key, cap in (("message", limit // 4), ("ename", limit // 16)):
        if data.get(key) and len(data[key].encode()) > cap:
            data[key] = _cut(data[key], cap)
    for key in ("evalue", "message", "ename"):
        text = data.get(key)
        if not text or size() <= limit:
            continue
        # JSON escapes make the encoded size uneven, so search for the longest prefix that fits.
        low, high = 0, len(text)
        while low < high:
            middle = (low + high + 1) // 2
            data[key] = text[:middle] + _ELLIPSIS
            low, high = (middle, high) if size() <= limit else (low, middle - 1)
        data[key] = text[:low] + _ELLIPSIS if low else ""
    return json.dumps(data, ensure_ascii=False)


def _cut(text: str, size: int) -> str:
    """``text`` cut to at most ``size`` bytes of UTF-8, an ellipsis included."""
    keep = size - len(_ELLIPSIS.encode())
    return text.encode()[:keep].decode(errors="ignore") + _ELLIPSIS if keep > 0 else ""


def parse_termination_message(text: str) -> tuple[StepFailure | None, str]:
    """The failure and message out of a termination message; any other text is taken as the message."""
    try:
        data = json.loads(text)
    except ValueError:
        return None, text.strip()
    if not isinstance(data, dict):
        return None, text.strip()
    message = str(data.get("message") or "")
    fields = {k: data.get(k) for k in ("cell", "ename", "evalue")}
    if all(v is None for v in fields.values()):
        return None, message
    try:
        return StepFailure.model_validate(fields), message
    except ValueError:
        return None, message or text.strip()
