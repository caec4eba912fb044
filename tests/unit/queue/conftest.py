"""Puts this folder on sys.path so the tests can import ``queue_fakes`` (importlib import mode does not)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from queue_fakes import FakeQueue


@pytest.fixture
def fake_queue() -> FakeQueue:
    return FakeQueue()
