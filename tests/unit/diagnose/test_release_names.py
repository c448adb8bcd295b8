"""Naming the release behind a bad-release diagnosis (``healer.diagnose.releases``)."""

from __future__ import annotations

from datetime import timedelta

import numpy as np

from healer.diagnose.releases import describe, matching, with_release
from healer.diagnose.rules import explain
from healer.types import Cause, Diagnosis, Release, ReleaseSource, Signal
from tests.unit.diagnose.test_rules import (
    CART,
    NOW,
    ONSET,
    SAMPLES,
    finding,
    flat_frame,
    revision,
    state,
    up,
)

NEW = revision(4, ONSET - timedelta(minutes=3), "registry.local/shop/cart:3f9a2c1")
PREVIOUS = revision(3, NOW - timedelta(days=3), "registry.local/shop/cart:2.4.0")


def release(**fields: object) -> Release:
    base: dict[str, object] = {
        "workload": CART,
        "at": NEW.created,
        "source": ReleaseSource.GITLAB,
        "commit": "3f9a2c1d0e4b5a6978877665544332211aabbccd",
        "author": "grace",
        "pipeline": "shop/cart",
        "pipeline_url": "https://gitlab.example/shop/cart/-/jobs/796",
    }
    return Release(**{**base, **fields})  # type: ignore[arg-type] # literal test values


def test_a_bad_release_diagnosis_names_pipeline_commit_author_and_link() -> None:
    errors = up(Signal.ERROR_RATIO, 0.05, 0.002, 25.0)
    errors_series = np.full(SAMPLES, 0.05)
    blamed = explain(finding(errors), flat_frame(error_ratio=errors_series), state(NEW, PREVIOUS))
    assert blamed.cause is Cause.BAD_RELEASE
    named = with_release(blamed, state(NEW, PREVIOUS), [release()])
    assert named.explanation.startswith(blamed.explanation)
    assert named.explanation.endswith(
        "Released by gitlab pipeline shop/cart (commit 3f9a2c1d0e4b by grace): "
        "https://gitlab.example/shop/cart/-/jobs/796."
    )


def test_the_image_tag_matches_whenever_the_release_was_told() -> None:
    late = release(at=NEW.created + timedelta(hours=2), commit="3f9a2c1")
    other = release(at=NEW.created, commit="0000000", image="registry.local/shop/cart:other")
    assert matching(NEW, [late, other]) == late


def test_by_time_the_nearest_within_the_window_else_none() -> None:
    near = release(commit="", revision="build-88", at=NEW.created + timedelta(minutes=2))
    far = release(commit="", revision="build-87", at=NEW.created - timedelta(minutes=30))
    assert matching(NEW, [far, near]) == near
    assert matching(NEW, [far]) is None


def test_other_causes_and_unmatched_releases_leave_the_diagnosis_alone() -> None:
    leak = Diagnosis(CART, Cause.MEMORY_LEAK, 0.8, "Memory climbs.")
    assert with_release(leak, state(NEW, PREVIOUS), [release()]) == leak
    bad = Diagnosis(CART, Cause.BAD_RELEASE, 0.8, "Errors rose.")
    unrelated = release(commit="", at=NEW.created - timedelta(hours=1))
    assert with_release(bad, state(NEW, PREVIOUS), [unrelated]) == bad


def test_describe_says_what_it_knows() -> None:
    bare = release(commit="", author="", pipeline="", pipeline_url="", source=ReleaseSource.PLAIN)
    assert describe(bare) == "Released by plain pipeline (unnamed)."
