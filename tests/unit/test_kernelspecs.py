"""Kernelspec templates, their rendering, and ``orchest kernelspecs``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchest_operator import kernelspecs
from orchest_operator.cli import main
from orchest_operator.models import Kernel, ProcessProxy

PROXIES = "enterprise_gateway.services.processproxies"
PROXY_CLASSES = {
    ProcessProxy.KUBERNETES: f"{PROXIES}.k8s.KubernetesProcessProxy",
    ProcessProxy.DOCKER: f"{PROXIES}.docker_swarm.DockerProcessProxy",
    ProcessProxy.DOCKER_SWARM: f"{PROXIES}.docker_swarm.DockerSwarmProcessProxy",
}
EG_KERNELS = "/usr/local/share/jupyter/kernels"
LAUNCHERS = {
    ProcessProxy.KUBERNETES: f"{EG_KERNELS}/python_kubernetes/scripts/launch_kubernetes.py",
    ProcessProxy.DOCKER: f"{EG_KERNELS}/python_docker/scripts/launch_docker.py",
    ProcessProxy.DOCKER_SWARM: f"{EG_KERNELS}/python_docker/scripts/launch_docker.py",
}


@pytest.mark.parametrize("proxy", list(ProcessProxy))
def test_render_sets_proxy_class_image_and_launcher(proxy: ProcessProxy) -> None:
    rendered = kernelspecs.render(Kernel(name="py", display_name="My Python"), proxy, "elyra/kernel-py:3.2.3")
    spec = json.loads(rendered.text())
    assert rendered.name == "py"
    assert spec["display_name"] == "My Python"
    assert spec["language"] == "python"
    assert spec["metadata"]["process_proxy"] == {
        "class_name": PROXY_CLASSES[proxy],
        "config": {"image_name": "elyra/kernel-py:3.2.3"},
    }
    # the launcher EG's image ships, then the values EG substitutes when it starts a kernel
    assert spec["argv"][:2] == ["python", LAUNCHERS[proxy]]
    placeholders = {a for a in spec["argv"] if a.startswith("{")}
    assert placeholders == {"{kernel_id}", "{port_range}", "{response_address}", "{public_key}"}


def test_default_display_name_names_kernel_and_proxy() -> None:
    rendered = kernelspecs.render(Kernel(name="stats", language="R"), ProcessProxy.DOCKER_SWARM, "r:1")
    assert rendered.spec["display_name"] == "stats on DockerSwarm"
    assert rendered.spec["language"] == "R"
    assert "debugger" not in rendered.spec["metadata"]


def test_rendering_does_not_leak_into_the_template() -> None:
    kernelspecs.render(Kernel(name="a"), ProcessProxy.KUBERNETES, "img:1")
    proxy = kernelspecs.template(ProcessProxy.KUBERNETES)["metadata"]["process_proxy"]
    assert "image_name" not in proxy["config"]


@pytest.mark.parametrize(
    "image",
    [
        "python",
        "elyra/kernel-py:3.2.3",
        "registry.example.com:5000/team/kernel_py:v1.2-rc.1",
        "ghcr.io/org/kernel@sha256:" + "a" * 64,
        "localhost/k:latest",
    ],
)
def test_valid_images(image: str) -> None:
    assert kernelspecs.image_problem(image) is None


@pytest.mark.parametrize(
    ("image", "why"),
    [
        ("", "non-empty"),
        (" elyra/kernel-py", "surrounding spaces"),
        ("Elyra/Kernel-Py", "lowercase name"),
        ("elyra/kernel py", "lowercase name"),
        ("elyra/kernel-py:", "[registry[:port]/]name[:tag][@digest]"),
        ("elyra/kernel-py:-bad", "[registry[:port]/]name[:tag][@digest]"),
        ("a" * 300, "longer than 255"),
    ],
)
def test_invalid_images_say_why(image: str, why: str) -> None:
    problem = kernelspecs.image_problem(image)
    assert problem is not None and why in problem
    with pytest.raises(kernelspecs.KernelspecError, match=r"kernel 'k': invalid image"):
        kernelspecs.render(Kernel(name="k"), ProcessProxy.KUBERNETES, image)


def test_parse_kernel_rejects_bad_names_in_one_line() -> None:
    with pytest.raises(kernelspecs.KernelspecError) as err:
        kernelspecs.parse_kernel("Bad_Name")
    assert str(err.value) == (
        "invalid kernel name 'Bad_Name': use 1-40 lowercase letters, digits or '-', "
        "starting and ending with a letter or digit"
    )
    with pytest.raises(kernelspecs.KernelspecError, match="invalid kernel language ''"):
        kernelspecs.parse_kernel("ok", language="")


def test_cli_writes_one_kernelspec_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        ["kernelspecs", "--proxy", "docker-swarm", "--image", "elyra/kernel-py:3.2.3", "--name", "py",
         "-o", str(tmp_path / "out")]
    )  # fmt: skip
    assert code == 0
    written = tmp_path / "out" / "py" / "kernel.json"
    assert capsys.readouterr().out.strip() == str(written)
    spec = json.loads(written.read_text())
    assert spec["metadata"]["process_proxy"]["class_name"] == PROXY_CLASSES[ProcessProxy.DOCKER_SWARM]
    assert spec["metadata"]["process_proxy"]["config"]["image_name"] == "elyra/kernel-py:3.2.3"


def test_cli_default_name_is_python(tmp_path: Path) -> None:
    assert main(["kernelspecs", "--proxy", "kubernetes", "--image", "k:1", "-o", str(tmp_path)]) == 0
    assert (tmp_path / "python" / "kernel.json").is_file()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--proxy", "yarn", "--image", "k:1"], "argument --proxy: invalid choice: 'yarn'"),
        (["--proxy", "docker", "--image", "k:1", "--name", "Bad_Name"], "invalid kernel name 'Bad_Name'"),
        (["--proxy", "docker", "--image", "Not An Image"], "kernel 'python': invalid image 'Not An Image'"),
    ],
)
def test_cli_bad_input_is_one_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    try:
        code = main(["kernelspecs", *args, "-o", str(tmp_path)])
    except SystemExit as exit_:  # argparse's own usage errors
        code = int(exit_.code or 0)
    err = capsys.readouterr().err
    assert code == 2
    assert message in err
    assert "Traceback" not in err
    assert not any(tmp_path.iterdir())


def test_cli_output_must_be_a_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "file"
    target.write_text("")
    assert main(["kernelspecs", "--proxy", "docker", "--image", "k:1", "-o", str(target)]) == 2
    assert f"{target} exists and is not a directory" in capsys.readouterr().err
