"""Enterprise Gateway kernelspecs rendered from the templates under ``kernels/``.

A template holds what depends only on the process proxy: the proxy class and the ``argv`` that runs the
launcher EG's own image ships inside its sample kernelspec directories (``python_kubernetes``,
``python_docker``). Rendering adds what depends on the kernel: its display name, language and image.
The operator puts the result in a ConfigMap; ``orchest kernelspecs`` writes it to disk for people who run
EG themselves. Both use this module, so the two never disagree.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from orchest_operator.models import Kernel, ProcessProxy

# The CLI spells proxies the way directory names and flags are usually spelled; the CRD uses the enum.
PROXY_OPTIONS: dict[str, ProcessProxy] = {
    "kubernetes": ProcessProxy.KUBERNETES,
    "docker": ProcessProxy.DOCKER,
    "docker-swarm": ProcessProxy.DOCKER_SWARM,
}
TEMPLATE_DIRS: dict[ProcessProxy, str] = {proxy: option for option, proxy in PROXY_OPTIONS.items()}

# Image references as container runtimes parse them: [registry[:port]/]path[:tag][@digest]. The path
# must be lowercase; a tag may not start with '.' or '-'.
_DOMAIN = r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*"
_PATH_PART = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_IMAGE = re.compile(
    rf"^(?:{_DOMAIN}(?::[0-9]+)?/)?{_PATH_PART}(?:/{_PATH_PART})*"
    r"(?::[\w][\w.-]{0,127})?"
    r"(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?$"
)
MAX_IMAGE = 255


class KernelspecError(ValueError):
    """A kernel that cannot become a kernelspec; the message names the kernel and the fix."""


@dataclass(frozen=True)
class RenderedKernel:
    name: str
    spec: dict[str, Any]

    def text(self) -> str:
        """Stable text (sorted keys), so the ConfigMap and its checksum only change with the content."""
        return json.dumps(self.spec, indent=2, sort_keys=True) + "\n"


def image_problem(image: str) -> str | None:
    """Why ``image`` is not a usable image reference, or None when it is."""
    if not image or image != image.strip():
        return f"invalid image {image!r}: it must be a non-empty reference without surrounding spaces"
    if len(image) > MAX_IMAGE:
        return f"invalid image {image[:40]!r}...: longer than {MAX_IMAGE} characters"
    if not _IMAGE.match(image):
        return (
            f"invalid image {image!r}: expected [registry[:port]/]name[:tag][@digest] "
            "with a lowercase name (for example elyra/kernel-py:3.2.3)"
        )
    return None


def template(proxy: ProcessProxy) -> dict[str, Any]:
    path = resources.files("orchest_operator.kernels") / TEMPLATE_DIRS[proxy] / "kernel.json"
    return json.loads(path.read_text())


def display_name(kernel: Kernel, proxy: ProcessProxy) -> str:
    return kernel.display_name or f"{kernel.name} on {proxy.value}"


def render(kernel: Kernel, proxy: ProcessProxy, image: str) -> RenderedKernel:
    """The kernelspec of ``kernel`` for ``proxy``; ``image`` is the kernel's image after defaults."""
    problem = image_problem(image)
    if problem:
        raise KernelspecError(f"kernel {kernel.name!r}: {problem}")
    spec = template(proxy)
    spec["display_name"] = display_name(kernel, proxy)
    spec["language"] = kernel.language
    spec["metadata"]["process_proxy"]["config"]["image_name"] = image
    if kernel.language == "python":
        spec["metadata"]["debugger"] = True  # ipykernel in the kernel images implements the debug protocol
    return RenderedKernel(kernel.name, spec)


def parse_kernel(name: str, **fields: Any) -> Kernel:
    """A :class:`Kernel` from loose input (CLI flags), with a one-line error instead of pydantic's report."""
    try:
        return Kernel(name=name, **{k: v for k, v in fields.items() if v is not None})
    except ValidationError as err:
        first = err.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        value = first.get("input")
        if field == "name":
            raise KernelspecError(
                f"invalid kernel name {value!r}: use 1-40 lowercase letters, digits or '-', "
                "starting and ending with a letter or digit"
            ) from None
        raise KernelspecError(f"invalid kernel {field} {value!r}: {first['msg']}") from None


def write(directory: Path, rendered: list[RenderedKernel]) -> list[Path]:
    """Write ``<directory>/<kernel>/kernel.json`` for each kernel, the layout Jupyter's spec managers read."""
    written = []
    for kernel in rendered:
        target = directory / kernel.name / "kernel.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(kernel.text())
        written.append(target)
    return written
