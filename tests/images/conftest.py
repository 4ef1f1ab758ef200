"""The images as a cluster runs them, in a Docker engine (`make test-images`, which builds them first).

These tests run only when ORCHEST_IMAGES=1 (set by images/test.sh once an engine runs and the images are
built); `make test` skips them. When no engine can run on this machine, images/test.sh still runs them so
that each is reported skipped with the reason (ORCHEST_IMAGES_UNAVAILABLE).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

HERE = Path(__file__).parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    unavailable = os.environ.get("ORCHEST_IMAGES_UNAVAILABLE")
    if unavailable:
        reason = f"no Docker engine can run here: {unavailable}"
    elif os.environ.get("ORCHEST_IMAGES") != "1":
        reason = "the image tests build and run the images: `make test-images` (ORCHEST_IMAGES=1)"
    else:
        return
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.skip(reason=reason))
