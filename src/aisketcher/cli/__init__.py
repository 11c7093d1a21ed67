"""The `aisketcher` command line: thin wrappers that parse, call one library function, and print."""

from __future__ import annotations

import argparse
import sys
import warnings
from importlib import metadata

from aisketcher.errors import SketchDataError


def build_parser() -> argparse.ArgumentParser:
    from aisketcher.cli import data, draw, evaluate, export, heal, models, serve, train

    parser = argparse.ArgumentParser(
        prog="aisketcher",
        description="AI-Sketcher: a deep generative model of vector sketches (AAAI 2019).",
        epilog="example:\n  aisketcher draw cat --count 8 --out cats.svg\n"
        "  aisketcher data inspect ../shared/data/quickdraw/cat.npz",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--version", action="version", version=f"aisketcher {metadata.version('aisketcher')}"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    data.register(sub)
    train.register(sub)
    draw.register(sub)
    heal.register(sub)
    export.register(sub)
    models.register(sub)
    evaluate.register(sub)
    serve.register(sub)
    return parser


def _one_line_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: object = None,
    line: str | None = None,
) -> None:
    """A warning as the user reads it: one line, without the Python source that raised it."""
    print(f"aisketcher: warning: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = argparse.Namespace(command="")
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _one_line_warning
            args = build_parser().parse_args(argv)
            return int(args.func(args) or 0)
    except SketchDataError as exc:
        print(f"aisketcher: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("aisketcher: interrupted", file=sys.stderr)
        return 130
    except ImportError as exc:
        extra = missing_extra(exc)
        if extra is None:
            raise
        print(
            f"aisketcher: error: `aisketcher {args.command}` needs the [{extra}] extra "
            f"({exc.name or exc}): pip install 'aisketcher[{extra}]'",
            file=sys.stderr,
        )
        return 2


# The optional packages (pyproject.toml) and the extra that installs each.
EXTRAS = {
    "tensorboard": "train",
    "scipy": "eval",
    "sklearn": "eval",
    "imagehash": "eval",
    "matplotlib": "eval",
    "fastapi": "serve",
    "uvicorn": "serve",
    "h11": "serve",
    "starlette": "serve",
    "pydantic": "serve",
}


def missing_extra(exc: ImportError) -> str | None:
    """The extra that would have provided the module an import failed to find, if any."""
    text = f"{exc.name or ''} {exc}".lower()
    for module, extra in EXTRAS.items():
        if module in text:
            return extra
    return None


if __name__ == "__main__":
    sys.exit(main())
