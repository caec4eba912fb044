"""`flux dev` serves with a young-generation GC threshold that lets buffered spans die uncollected."""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Any

from functions.local import devserver


def test_collector_tuned_raises_the_young_threshold_and_restores_it() -> None:
    before = gc.get_threshold()
    with devserver.collector_tuned(12_345):
        assert gc.get_threshold() == (12_345, *before[1:])
    assert gc.get_threshold() == before


def test_run_serves_with_the_tuned_threshold(monkeypatch: Any) -> None:
    seen: list[tuple[int, ...]] = []

    async def fake_serve(project_dir: Path, **options: Any) -> int:
        seen.append(gc.get_threshold())
        return 7

    monkeypatch.setattr(devserver, "serve", fake_serve)
    before = gc.get_threshold()
    assert devserver.run(Path(".")) == 7
    assert seen == [(devserver.GC_YOUNG_THRESHOLD, *before[1:])]
    assert gc.get_threshold() == before
