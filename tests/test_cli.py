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
