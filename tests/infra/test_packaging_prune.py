"""Pruning old bundles never takes one another `flux synth` may be using (F5 of the deployed tier)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from infra.packaging import _mark_used, _prune


def _bundles(parent: Path, ages_s: dict[str, float]) -> None:
    now = time.time()
    for name, age in ages_s.items():
        (parent / name).mkdir()
        os.utime(parent / name, (now - age, now - age))


def test_only_old_bundles_beyond_the_newest_few_are_pruned(tmp_path: Path) -> None:
    _bundles(tmp_path, {"runtime-shop-a": 10, "runtime-shop-b": 20, "runtime-shop-c": 30, "runtime-shop-d": 40,
                        "runtime-shop-e": 7200, "runtime-shop-f": 9000, "control-shop-g": 9999})
    _prune(tmp_path, "runtime-shop-", keep=3, grace_s=3600)
    # d is fourth newest but was used minutes ago (another synth may hold it): kept; e and f are old: pruned.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["control-shop-g", "runtime-shop-a", "runtime-shop-b",
                                                          "runtime-shop-c", "runtime-shop-d"]


def test_a_cache_hit_makes_a_bundle_the_newest(tmp_path: Path) -> None:
    _bundles(tmp_path, {"runtime-shop-old": 9000, "runtime-shop-x": 10, "runtime-shop-y": 20, "runtime-shop-z": 30})
    _mark_used(tmp_path / "runtime-shop-old")   # a synth just reused it
    _prune(tmp_path, "runtime-shop-", keep=3, grace_s=0)
    assert (tmp_path / "runtime-shop-old").is_dir()
    assert not (tmp_path / "runtime-shop-z").exists()
