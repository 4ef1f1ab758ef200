"""Run by Enterprise Gateway's own interpreter (``.venv-eg``): what does the real EG make of our kernelspecs?

Usage: ``python eg_probe.py EG_ARG...`` with ``JUPYTER_PATH`` pointing at a directory holding
``kernels/<name>/kernel.json``, as the kernelspec mounts do in the EG container. EG is configured from the
given command-line flags exactly as its application would be; the script prints one JSON document with,
per kernelspec EG lists, its process-proxy class and whether that class imports as an EG remote proxy.

The Kubernetes and Docker proxy modules connect to their cluster when imported (in-cluster config, Docker
daemon). There is neither here, so those two connection calls are replaced by no-ops before the import;
the import still proves the module and class exist in this EG release and subclass its remote proxy.
"""

from __future__ import annotations

import asyncio
import json
import sys

import docker.client
import kubernetes.config
from enterprise_gateway.enterprisegatewayapp import EnterpriseGatewayApp
from enterprise_gateway.services.kernels.remotemanager import get_process_proxy_config, import_item
from enterprise_gateway.services.processproxies.processproxy import RemoteProcessProxy


def main(argv: list[str]) -> int:
    kubernetes.config.load_incluster_config = lambda *args, **kwargs: None
    docker.client.DockerClient.from_env = classmethod(lambda cls, *args, **kwargs: None)

    app = EnterpriseGatewayApp()
    app.parse_command_line(argv)
    app.init_configurables()
    specs = asyncio.run(app.kernel_spec_cache.get_all_specs())
    report = {}
    for name in sorted(specs):
        spec = app.kernel_spec_manager.get_kernel_spec(name)
        proxy = get_process_proxy_config(spec)
        try:
            cls = import_item(proxy["class_name"])
            imported = isinstance(cls, type) and issubclass(cls, RemoteProcessProxy)
            error = None
        except Exception as err:  # the report says which class failed and why
            imported, error = False, f"{type(err).__name__}: {err}"
        report[name] = {
            "display_name": spec.display_name,
            "language": spec.language,
            "argv": spec.argv,
            "class_name": proxy["class_name"],
            "config": proxy["config"],
            "imported": imported,
            "error": error,
        }
    json.dump({"default": app.kernel_manager.default_kernel_name, "kernels": report}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
