"""Shared fixtures: the real data beside the repository (../shared/data, or $AISKETCHER_DATA)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
# What the hostile-input probe (test_probe.py) reports: printed at the end of every run.
PROBE_TALLY = pytest.StashKey[list[str]]()


@pytest.fixture(scope="session")
def data_dir() -> Path:
    path = Path(os.environ.get("AISKETCHER_DATA", REPO.parent / "shared" / "data"))
    if not (path / "quickdraw").is_dir():
        pytest.fail(f"real sketch data not found at {path}; set AISKETCHER_DATA")
    return path


@pytest.fixture(scope="session")
def quickdraw_dir(data_dir: Path) -> Path:
    return data_dir / "quickdraw"


@pytest.fixture(scope="session", autouse=True)
def sketch_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The sketch store (data/store.py) in a folder of the test session, not the user's cache;
    commands the tests run in subprocesses inherit it."""
    path = tmp_path_factory.mktemp("sketch-store")
    before = os.environ.get("AISKETCHER_STORE")
    os.environ["AISKETCHER_STORE"] = str(path)
    yield path
    if before is None:
        del os.environ["AISKETCHER_STORE"]
    else:
        os.environ["AISKETCHER_STORE"] = before


@pytest.fixture(scope="session", autouse=True)
def one_thread_session() -> Iterator[None]:
    """One thread from the start, so module-scoped fixtures (trained models) also run on one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tests run small tensors, where one thread is fastest and immune to a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def probe_tally(request: pytest.FixtureRequest) -> list[str]:
    """Lines the probe adds to the terminal summary: its tally per entry point."""
    return request.config.stash.setdefault(PROBE_TALLY, [])


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    lines = terminalreporter.config.stash.get(PROBE_TALLY, [])
    if lines:
        terminalreporter.section("hostile-input probe (tests/test_probe.py)")
        for line in lines:
            terminalreporter.write_line(line)
