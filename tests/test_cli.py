"""The command line answers quickly: help and argument errors need no torch."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize("command", ["", "draw", "train", "evaluate", "serve", "data", "complete"])
def test_help_does_not_import_torch(command: str) -> None:
    """`--help` and argument errors answer at once: torch (seconds to import) is not loaded."""
    code = (
        "import sys\n"
        "from aisketcher.cli import main\n"
        "try:\n"
        f"    main([*{command.split()!r}, '--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def test_a_missing_extra_is_named_with_the_command_that_installs_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from aisketcher.cli import main, missing_extra
    from aisketcher.cli import serve as serve_cli

    assert (
        missing_extra(ModuleNotFoundError("No module named 'fastapi'", name="fastapi")) == "serve"
    )
    assert missing_extra(ImportError("TensorBoard logging requires TensorBoard")) == "train"
    assert missing_extra(ModuleNotFoundError("No module named 'zzz'", name="zzz")) is None

    def without_fastapi(args):
        raise ModuleNotFoundError("No module named 'fastapi'", name="fastapi")

    monkeypatch.setattr(serve_cli, "cmd_serve", without_fastapi)
    assert main(["serve"]) == 2
    assert "pip install 'aisketcher[serve]'" in capsys.readouterr().err
