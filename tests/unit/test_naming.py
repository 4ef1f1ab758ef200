"""Deterministic child names: valid, bounded, distinct."""

from __future__ import annotations

import re

import pytest

from orchest_operator.naming import derived, job_name

DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def test_job_names_read_as_run_and_step_and_never_collide() -> None:
    assert job_name("run", "step").startswith("run-step-")
    assert job_name("etl", "load-data") != job_name("etl-load", "data")


@pytest.mark.parametrize("run", ["a" * 63, "x" * 250, "run." * 30])
def test_long_names_are_cut_and_hashed(run: str) -> None:
    name = job_name(run, "step-with-a-long-name-" + "z" * 18)
    assert len(name) <= 63 and DNS1123.match(name)


def test_different_parents_never_share_a_name() -> None:
    base = "r" * 70
    assert job_name(base + "1", "s") != job_name(base + "2", "s")
    assert job_name("a.b", "c") != job_name("a-b", "c"), "cleaned names are hashed to stay distinct"


def test_dns1035_starts_with_a_letter() -> None:
    assert derived("1pipeline", "eg", dns1035=True)[0].isalpha()
    assert derived("pipeline", "eg", dns1035=True) == "pipeline-eg"
