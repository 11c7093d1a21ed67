"""The command line answers quickly: help and argument errors need no torch."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    "command", ["", "draw", "train", "evaluate", "serve", "data", "complete", "models"]
)
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


@pytest.mark.parametrize(
    "argv",
    [
        ["draw", "unicorn", "--out", "x.svg"],
        ["draw", "cat", "--count", "0"],
        ["draw", "cat", "--out", "x.jpg"],
        ["complete", "--input", "start.json", "--class", "unicorn"],
    ],
)
def test_argument_errors_answer_before_torch_loads(argv: list[str], tmp_path) -> None:
    from test_errors_first import refused_before_torch

    refused_before_torch(argv, tmp_path)


def test_every_option_has_help_and_every_command_an_example() -> None:
    import argparse

    from aisketcher.cli import build_parser

    missing = []

    def walk(parser: argparse.ArgumentParser, path: str) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    walk(child, f"{path} {name}")
            elif not action.help and not isinstance(action, argparse._HelpAction):
                missing.append(f"{path} {'/'.join(action.option_strings) or action.dest}")
        if not (parser.epilog and "example" in parser.epilog):
            missing.append(f"{path}: no example")

    walk(build_parser(), "aisketcher")
    assert missing == []
