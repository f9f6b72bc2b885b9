"""Data beside the repository: a fresh clone skips the tests that need it, CI fails them."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import require_shared_data


def test_missing_shared_data_skips_with_the_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"missing: the data must sit beside"):
        require_shared_data(tmp_path / "absent", "the data")


def test_missing_shared_data_fails_under_ci(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"CI=true requires it"):
        require_shared_data(tmp_path / "absent", "the data")


def test_present_shared_data_is_returned(tmp_path: Path) -> None:
    assert require_shared_data(tmp_path, "the data") == tmp_path
