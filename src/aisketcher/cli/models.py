"""`aisketcher models`: what can be drawn. Also the `--model` and `--models-url` arguments that the
drawing commands and the web app share, and what they make of `--model google:NAME`."""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path

from aisketcher.errors import SketchDataError

MODEL_HELP = (
    "a run directory, an exported model folder, a magenta-js .gen.json file, or google:NAME, one "
    "of Google's pretrained Sketch-RNN models, downloaded on first use (`aisketcher models` lists "
    "them) (default: the built-in 20-class AI-Sketcher model)"
)
MODELS_URL_HELP = (
    "where google:NAME models are downloaded from: a URL or a folder holding NAME.gen.json "
    "(default: $AISKETCHER_MODELS_URL, else Google's bucket)"
)


def add_models_url(p: argparse.ArgumentParser) -> None:
    p.add_argument("--models-url", default=None, metavar="URL_OR_FOLDER", help=MODELS_URL_HELP)


def local_model(args: argparse.Namespace, encoder_for: str | None = None) -> str | Path | None:
    """`--model` as a file or folder on this machine: one of Google's models is downloaded here
    on first use, unless the mode (`encoder_for`) needs an encoder, which they lack."""
    from aisketcher.google_models import google_model, is_google

    if not is_google(args.model):
        return args.model
    if encoder_for:
        raise SketchDataError(
            f"{args.model} is one of Google's decoder-only Sketch-RNN models: it can draw and "
            f"complete, but {encoder_for} needs an encoder"
        )
    # A progress bar for a person watching; none in a log or a pipe.
    return google_model(args.model, url=args.models_url, progress=sys.stderr.isatty())


def cmd_models(args: argparse.Namespace) -> int:
    from aisketcher import google_models as google
    from aisketcher.google_model_names import GOOGLE_MODELS, NAMES_SOURCE
    from aisketcher.model_info import model_classes

    builtin = model_classes(None) or []
    cached = google.cached_models()
    _section(f"The built-in model, {len(builtin)} classes (draw with no --model):", builtin)
    print()
    _section(
        f"Google's models in the cache, {len(cached)} (drawn offline; {google.cache_dir()}):",
        [f"{google.GOOGLE_PREFIX}{name}" for name in cached] or ["none yet"],
    )
    print()
    _section(
        f"Google's pretrained Sketch-RNN models, {len(GOOGLE_MODELS)} (--model "
        f"{google.GOOGLE_PREFIX}NAME downloads one on first use, from "
        f"{google.models_url(args.models_url)}):",
        list(GOOGLE_MODELS),
    )
    print(
        textwrap.fill(
            f"Names as listed in {NAMES_SOURCE}. Google's smaller (512-unit) models: "
            f"--models-url {google.SMALL_MODELS_URL}",
            width=100,
            initial_indent="  ",
            subsequent_indent="  ",
        )
    )
    return 0


def _section(title: str, names: list[str]) -> None:
    print(textwrap.fill(title, width=100))
    print(textwrap.fill(" ".join(names), width=100, initial_indent="  ", subsequent_indent="  "))


def register(sub: argparse._SubParsersAction) -> None:
    from aisketcher.google_models import CACHE_ENV, SMALL_MODELS_URL

    p = sub.add_parser(
        "models",
        help="list what can be drawn: the built-in model's classes and Google's models",
        description="Lists the built-in model's classes, Google's pretrained Sketch-RNN models "
        "already in the cache, and every model Google provides. `--model google:NAME` downloads "
        f"one into the cache (${CACHE_ENV}, default ~/.cache/aisketcher/models) on first use; "
        "later uses work offline. These models are decoder-only: they draw and complete, but "
        "cannot translate, reconstruct or interpolate.",
        epilog="examples:\n  aisketcher models\n"
        "  aisketcher draw owl --model google:owl --count 4 --out owls.png\n"
        f"  aisketcher draw owl --model google:owl --models-url {SMALL_MODELS_URL}"
        "   # Google's smaller (512-unit) models",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_models_url(p)
    p.set_defaults(func=cmd_models)
