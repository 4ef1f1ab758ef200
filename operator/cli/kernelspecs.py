"""``orchest kernelspecs``: the kernelspecs the operator generates, written to disk for a self-run EG."""

from __future__ import annotations

import argparse
from pathlib import Path

from orchest_operator import kernelspecs
from orchest_operator.cli import CliError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "kernelspecs",
        help="write Enterprise Gateway kernelspecs",
        description="Write <DIR>/<NAME>/kernel.json, a kernelspec for Jupyter Enterprise Gateway whose "
        "argv runs the launcher shipped in EG's image. Mount DIR's subdirectories under "
        "/usr/local/share/jupyter/kernels in the EG container.",
    )
    parser.add_argument("--proxy", required=True, choices=sorted(kernelspecs.PROXY_OPTIONS))
    parser.add_argument("--image", required=True, help="kernel image, e.g. elyra/kernel-py:3.2.3")
    parser.add_argument("--name", default="python", help="kernel name (default: python)")
    parser.add_argument("--display-name", help="name shown in Jupyter (default: '<name> on <proxy>')")
    parser.add_argument("--language", help="kernel language (default: python)")
    parser.add_argument("-o", "--output", required=True, type=Path, metavar="DIR")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    try:
        kernel = kernelspecs.parse_kernel(args.name, display_name=args.display_name, language=args.language)
        rendered = kernelspecs.render(kernel, kernelspecs.PROXY_OPTIONS[args.proxy], args.image)
    except kernelspecs.KernelspecError as err:
        raise CliError(str(err), 2) from None
    if args.output.exists() and not args.output.is_dir():
        raise CliError(f"{args.output} exists and is not a directory", 2)
    try:
        for path in kernelspecs.write(args.output, [rendered]):
            print(path)
    except OSError as err:
        raise CliError(f"cannot write kernelspec: {err.strerror}: {err.filename}") from None
    return 0
