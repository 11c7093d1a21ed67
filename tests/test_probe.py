"""The hostile-world probe: every bad input the robustness probe found, replayed where a user meets it.

One suite for every entry point: each command of the CLI (`aisketcher.cli.main`, in this
process), the Python API's loaders (`Sketcher.load`, `read_sketches`) and every route of a live
server. The hostile inputs are tabled beside the tests of the code that refuses them (model
folders, weights, sketch files of each kind, .gen.json files, store damage, requests) and replayed
here through each entry point that takes them, together with the surfaces met only here: a sketch
store damaged, stale or on a full disk, and Google's models from a mirror that loops, trickles,
sends without end or sends malformed files, and a model cache changed on disk. Each case runs
under a clock and a memory meter and is scored as one of

- ``clear``: refused with exit status 2 (a 4xx for the server; a SketchDataError from the API)
  and one error line, the last thing printed, which names the input at fault and says what is
  wrong; or, for a damaged store, repaired with one warning line that does;
- ``accepted``: an input that must work did (exit status 0, a 200);
- ``unclear``: refused, but not in one line naming the input and the problem;
- ``traceback``: an exception escaped (a 5xx for the server);
- ``hang``: still running after the case's time limit, or past the memory limit;
- ``silent``: a bad input accepted without a word;
- ``lost``: what was there before (a checkpoint, a cached model, a pack, a model folder) was
  damaged or replaced by the failure.

The test asserts that every case is clear or accepted, and `test_every_entry_point_is_probed`
that every command, route and loader has cases. The tally per entry point is printed at the end of
every pytest run (tests/conftest.py) and written to ``$AISKETCHER_ARTIFACTS/probe.json`` if set;
`pytest -s tests/test_probe.py` prints every case.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import pickle
import re
import select
import shutil
import signal
import socket
import sys
import time
import warnings
import zipfile
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from unittest import mock
from urllib.parse import urlsplit

import numpy as np
import pytest
from safetensors import SafetensorError

import aisketcher.api as api_module
import aisketcher.cli as cli
from aisketcher import google_models
from aisketcher.api import Sketcher, builtin_model_dir
from aisketcher.cli import main
from aisketcher.data import download
from aisketcher.data.store import open_class, pack_dir
from aisketcher.errors import SketchDataError
from aisketcher.formats.npz import SPLITS, read_npz, write_npz
from aisketcher.formats.reader import read_sketches
from aisketcher.server.body_limit import BYTE_ORDER_MARKS
from test_download import serving
from test_drawn_files import BAD_CLASS_RECORDS, npz_with_record
from test_errors_first import REFUSED_FIRST, inputs
from test_google_models import dead_url, malformed
from test_magenta_js import NOT_JSON, broken_files
from test_model_folder import CASES as MODEL_FOLDER_CASES
from test_model_folder import WEIGHT_CASES, with_weights
from test_ndjson import BAD_LINES, bad_file
from test_npz import BAD_SKETCHES, GOOD, objects, save
from test_reader import JSON_CASES
from test_server import (
    BAD_BODIES,
    CORNER,
    INTERPOLATE_BODY,
    INTERPOLATE_OUT_OF_RANGE,
    MALFORMED_JSON,
    NON_FINITE,
    NON_FINITE_VALUES,
    STRING_NUMBERS,
)
from test_store import DAMAGE, damage, full_disk, savez, stored
from test_svg_input import BAD_SVGS

# Per case: seconds before it counts as a hang, and growth of the process's peak memory.
TIME_LIMIT_S = 60
MEMORY_LIMIT = 768 << 20
OUTCOMES = ("clear", "accepted", "unclear", "traceback", "hang", "silent", "lost")

Paths = dict[str, Path | str]
During = Callable[[Paths], AbstractContextManager]
# The Python API's loaders, by the name a case gives as its first word.
LOADERS: dict[str, Callable[[str], object]] = {
    "Sketcher.load": Sketcher.load,
    "read_sketches": read_sketches,
}


@dataclass(frozen=True)
class Case:
    """One replayed input: a command line, or a loader and its argument; {NAME}s are the probe's
    files (see `files`) or the mirror's address."""

    name: str  # what was sent, in the probe's words
    argv: tuple[str, ...]
    says: str = ""  # a fragment the error line must hold (any message when "")
    names: str = ""  # the {NAME} of the file (or address) the error line must name
    accept: bool = False  # a good input: must succeed
    matches: str = ""  # a regular expression the error line must match (tables kept as patterns)
    warns: bool = False  # damage repaired, or an option unused: it succeeds, warning once
    during: tuple[During, ...] = ()  # what holds while it runs (a full disk, an environment)
    keeps: Callable[[Paths], str] | None = None  # afterwards: "" or what was lost

    @property
    def entry(self) -> str:
        if self.argv[0] in LOADERS:
            return self.argv[0]
        return "aisketcher " + " ".join(self.argv[: 2 if self.argv[0] in GROUPS else 1])


# Commands whose second word is the action.
GROUPS = ("data", "classifier")


def case(name: str, command: str, says: str = "", names: str = "", **more: object) -> Case:
    return Case(name, tuple(command.split()), says, names, **more)


def env(**values: str) -> During:
    """During the case, environment variables set to the probe's paths (or to text)."""
    return lambda paths: mock.patch.dict(
        os.environ, {k: str(paths.get(v, v)) for k, v in values.items()}
    )


def disk_full(owner: object, name: str, after: int = 0, error: type[Exception] = OSError) -> During:
    return lambda paths: full_disk(owner, name, after, error)


def setting(owner: object, name: str, value: object) -> During:
    return lambda paths: mock.patch.object(owner, name, value)


GOOD_SKETCH = '{"strokes": [[[10, 10], [60, 12], [110, 20]], [[10, 10], [14, 60], [20, 110]]]}'
SVG_HEAD = '<svg xmlns="http://www.w3.org/2000/svg" width="256" height="256">'
LAUGHS = "".join(f'<!ENTITY e{i} "{f"&e{i - 1};" * 10}">' for i in range(1, 10))


def _npz(path: Path, members: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def _announcing(shape: tuple[int, ...], dtype: str = "|i1") -> bytes:
    """An .npy header announcing `shape` followed by a few bytes, as a hostile file would."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buffer, {"descr": dtype, "fortran_order": False, "shape": shape}
    )
    return buffer.getvalue() + bytes(64)


class _Payload:
    def __reduce__(self) -> tuple:
        return (os.system, ("echo the probe ran code from a file",))


def _pickled() -> bytes:
    """An object-array member whose pickle calls os.system."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buffer, {"descr": "|O", "fortran_order": False, "shape": (1,)}
    )
    return buffer.getvalue() + pickle.dumps(np.array([_Payload()], dtype=object), protocol=2)


def _inflating(path: Path) -> None:
    """A 1 MB .npz whose member inflates to over 1 GiB."""
    zeros = bytes(1 << 24)
    with (
        zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive,
        archive.open("train.npy", "w", force_zip64=True) as member,
    ):
        for _ in range(65):
            member.write(zeros)


def _ndjson(drawing: object, word: str = "cat") -> str:
    return json.dumps({"word": word, "countrycode": "US", "drawing": drawing})


GOOD_LINE = _ndjson([[[10, 60, 110], [10, 12, 20]], [[10, 14, 20], [10, 60, 110]]])
LONG_LINE = _ndjson([[list(range(300_000)), [5] * 300_000]])
HUGE_LINE = _ndjson([[[1e308, 2e308 / 3, 0.0], [0.0, 1.0, 2.0]]])


# Google's models on the mirror: a malformed file (test_google_models.malformed) under each name...
MALFORMED_MODELS = {
    "not JSON": "ant",
    "mode 0": "bee",
    "do not match": "owl",
    "weight 4 holds": "pig",
    "max_seq_len": "cat",
}
# ...and names (model files, and data files for `data download`) the mirror misbehaves for.
MISBEHAVING = {
    "lion.gen.json": "loop",
    "frog.gen.json": "trickle",
    "whale.gen.json": "endless",
    "cat.npz": "loop",
    "dog.npz": "trickle",
}
MAX_MODEL_BYTES = 8_000_000  # the probe's bound on a model download (the shared ones: 3 MB)


def files(root: Path, data_dir: Path, run: Path) -> Paths:
    """Write the probe's inputs under `root`; {NAME} in a case's argv is replaced by its path."""
    out: Paths = {}

    def put(name: str, content: str | bytes | Callable[[Path], object]) -> None:
        path = root / name
        if callable(content):
            content(path)
        else:
            path.write_bytes(content if isinstance(content, bytes) else content.encode())
        out[name] = path

    # Sketch files, of every kind the readers take.
    for i, text in enumerate(JSON_CASES.values()):
        put(f"sketch{i}.json", text)
    for i, (text, _) in enumerate(BAD_SVGS):
        put(f"svg{i}.svg", text)
    for i, (line, _) in enumerate(BAD_LINES):
        put(f"lines{i}.ndjson", lambda p, line=line: bad_file(p, line))
    for i, (bad, _) in enumerate(BAD_SKETCHES.values()):
        put(
            f"sketches{i}.npz",
            lambda p, bad=bad: save(p, **dict.fromkeys(SPLITS, objects(GOOD, bad))),
        )
    for i, (arrays, _) in enumerate(BAD_CLASS_RECORDS):
        put(f"records{i}.npz", lambda p, arrays=arrays: npz_with_record(p, **arrays))
    put("good.json", GOOD_SKETCH)
    put("bom.json", b"\xef\xbb\xbf" + GOOD_SKETCH.encode())
    put("utf7.svg", '<?xml version="1.0" encoding="UTF-7"?>' + SVG_HEAD + "</svg>")
    put("big.svg", SVG_HEAD + '<path d="M0 0' + " L1 1" * 600_000 + '"/></svg>')
    put(
        "laughs.svg",
        f'<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY e0 "0 0 ">{LAUGHS}]>'
        f'{SVG_HEAD}<path d="M &e9;"/></svg>',
    )
    put(
        "xxe.svg",
        '<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        f'{SVG_HEAD}<path d="M0 0 L&x;"/></svg>',
    )
    put("good.svg", SVG_HEAD + '<path d="M10 10 L60 12 L110 20"/></svg>')
    put("bomb.npz", lambda p: _npz(p, {"train.npy": _announcing((1, 2**30, 3))}))
    put("long.npz", lambda p: _npz(p, {"train.npy": _announcing((1, 200_000, 3))}))
    put(
        "wide.npz", lambda p: _npz(p, {f"{s}.npy": _announcing((3000, 100_000, 3)) for s in SPLITS})
    )
    put("inflating.npz", _inflating)
    put("pickled.npz", lambda p: _npz(p, {f"{s}.npy": _pickled() for s in ("train", "test")}))
    put("damaged.npz", (data_dir / "quickdraw" / "cat.npz").read_bytes()[:5000])
    put("text.npz", "not a zip at all")
    put("fifo.npz", os.mkfifo)
    put("folder.npz", Path.mkdir)
    put("good.ndjson", GOOD_LINE + "\n")
    put("malformed.ndjson", GOOD_LINE + "\n{not json\n")
    put("long.ndjson", GOOD_LINE + "\n" + LONG_LINE + "\n")
    put("huge.ndjson", GOOD_LINE + "\n" + HUGE_LINE + "\n")
    put("existing.svg", "")
    for suffix in (".json", ".svg", ".npz", ".ndjson", ".gen.json"):
        put(f"empty{suffix}", "")
    put("bad-eval.json", "{not json")
    out["nothing"] = root / "no-such-file"
    inputs(root)  # REFUSED_FIRST's, which name them relative to the folder they run in
    out["three.npz"] = root / "three.npz"

    # Models: magenta-js files, model folders with a bad config or bad weights, a classifier.
    models = data_dir.parent / "models" / "magenta-js"
    put("magenta.gen.json", (models / "bicycle.gen.json").read_bytes())
    for i, data in enumerate(broken_files().values()):
        put(f"gen{i}.gen.json", json.dumps(data))
    for i, text in enumerate(NOT_JSON):
        put(f"notjson{i}.gen.json", text)
    put("config-less", Path.mkdir)
    put("tiny.npz", lambda p: _tiny_npz(p, data_dir))
    put("classifier", _untrained_classifier)
    base = builtin_model_dir()
    for i, (change, _) in enumerate(MODEL_FOLDER_CASES.values()):
        folder = root / f"model{i}"
        folder.mkdir()
        (folder / "model.safetensors").symlink_to(base / "model.safetensors")
        changed = change(json.loads((base / "config.json").read_text()))
        (folder / "config.json").write_bytes(
            changed if isinstance(changed, bytes) else json.dumps(changed).encode()
        )
        out[f"model{i}"] = folder
        out[f"model{i}/config.json"] = folder / "config.json"
    for i, (change, _) in enumerate(WEIGHT_CASES.values()):
        out[f"weights{i}"] = with_weights(base, root / f"weights{i}", change)
        out[f"weights{i}/model.safetensors"] = root / f"weights{i}" / "model.safetensors"

    # A finished run, damaged between sittings; a copy to fail on; a model folder exported twice.
    for name, (damage_run, _) in RUN_DAMAGE.items():
        copy = root / f"run-{name}"
        shutil.copytree(run, copy)
        damage_run(copy)
        shutil.copytree(copy, root / f"run-{name}.orig")  # what a refused resume must leave
        out[f"run-{name}"], out[f"run-{name}.orig"] = copy, root / f"run-{name}.orig"
    shutil.copytree(run, root / "run-keep")
    out["run-keep"] = root / "run-keep"
    for name in ("model-good", "model-good.orig"):
        out[name] = Sketcher.load(run).export(root / name)
    out["run"] = run
    out["data"] = data_dir
    out["out"] = root / "out"
    _stores(root, data_dir, out)
    _google(root, models, out)
    return out


def _untrained_classifier(path: Path) -> None:
    from aisketcher.evaluate.classifier import ClassifierConfig, SketchClassifier, SketchCNN

    config = ClassifierConfig(["cat"])
    SketchClassifier(config, SketchCNN(config), {}).save(path)


def _tiny_npz(path: Path, data_dir: Path, name: str = "cat") -> None:
    """40 short sketches of a class per split: a data set a test trains on in seconds."""
    splits = read_npz(data_dir / "quickdraw" / f"{name}.npz")
    write_npz(
        path,
        {split: [s for s in sketches if len(s) < 40][:40] for split, sketches in splits.items()},
    )


def _stores(root: Path, data_dir: Path, out: Paths) -> None:
    """Sketch stores, each beside a data folder of tiny class files: packs damaged (DAMAGE), packs
    of files changed since, a store where the disk fills (eye packed, cat not yet)."""

    def store(name: str, *classes: str) -> Path:
        folder = root / f"store-{name}-data"
        folder.mkdir()
        for cls in classes:
            _tiny_npz(folder / f"{cls}.npz", data_dir, cls)
            out[f"store-{name}-data/{cls}.npz"] = folder / f"{cls}.npz"
        out[f"store-{name}-data"] = folder
        out[f"store-{name}"] = root / f"store-{name}"
        return folder / f"{classes[0]}.npz"

    for how in (*DAMAGE, "train"):
        cat = store(how, "cat")
        open_class(cat, store=root / f"store-{how}")
        damage(pack_dir(cat, root / f"store-{how}"), "edited" if how == "train" else how)
    cat = store("stale", "cat")
    open_class(cat, store=root / "store-stale")
    write_npz(cat, {s: v[:5] for s, v in read_npz(cat).items()})
    cat = store("touched", "cat")
    splits = read_npz(cat)
    savez(cat, splits)  # uncompressed: the size follows the shapes, not the values
    before = cat.stat()
    open_class(cat, store=root / "store-touched")
    savez(cat, {s: [x * np.array([-1, 1, 1], x.dtype) for x in v] for s, v in splits.items()})
    os.utime(cat, ns=(before.st_atime_ns, before.st_mtime_ns))
    open_class(store("full", "cat", "eye").with_name("eye.npz"), store=root / "store-full")
    store("train-full", "cat")
    cat = store("file", "cat")
    pack_dir(cat, root / "store-file").parent.mkdir()
    pack_dir(cat, root / "store-file").write_text("a file where the pack's folder goes")


def _google(root: Path, models: Path, out: Paths) -> None:
    """The mirror's folder (bird good, MALFORMED_MODELS, sheep bad, a sketch-rnn bicycle) and the
    model cache: sheep good (the mirror's must never replace it), rabbit edited, dog cut short."""
    bucket = root / "bucket"
    (bucket / "sketchrnn").mkdir(parents=True)
    table = malformed(models)
    assert set(table) == set(MALFORMED_MODELS)  # a new malformed file gets a name here
    for problem, name in MALFORMED_MODELS.items():
        (bucket / f"{name}.gen.json").write_bytes(table[problem])
    (bucket / "sheep.gen.json").write_bytes(table["mode 0"])
    shutil.copy(models / "bird.gen.json", bucket)
    (bucket / "sketchrnn" / "bicycle.npz").symlink_to(
        models.parents[1] / "data/quickdraw/bicycle.npz"
    )
    for name in ("sheep", "rabbit", "dog"):
        google_models.google_model(f"google:{name}", url=str(models))
    cache = google_models.cache_dir()
    rabbit = (cache / "rabbit.gen.json").read_text()
    at = rabbit.rindex('"') - 100  # inside the last weight's base64: still a model
    (cache / "rabbit.gen.json").write_text(
        rabbit[:at] + ("B" if rabbit[at] == "A" else "A") + rabbit[at + 1 :]
    )
    (cache / "dog.gen.json").write_bytes((cache / "dog.gen.json").read_bytes()[:5000])
    out["bucket"] = bucket
    out["models-cache"] = cache
    for name in ("sheep", "rabbit", "dog"):
        out[f"models-cache/{name}.gen.json"] = cache / f"{name}.gen.json"
    out["shared-sheep"] = models / "sheep.gen.json"


# ----- nothing lost: checks made after a case -----
def _contents(path: Path, pattern: str) -> dict[str, bytes]:
    if path.is_file():
        return {"": path.read_bytes()}
    return {
        p.relative_to(path).as_posix(): p.read_bytes() for p in path.glob(pattern) if p.is_file()
    }


def same(key: str, like: str, pattern: str = "**/*") -> Callable[[Paths], str]:
    """The files of {key} matching `pattern` are those of {like}: nothing was replaced."""

    def check(paths: Paths) -> str:
        path = Path(paths[key])
        if _contents(path, pattern) != _contents(Path(paths[like]), pattern):
            return f"{path} ({pattern}) is no longer as it was"
        return ""

    return check


def nothing_cached(name: str) -> Callable[[Paths], str]:
    def check(paths: Paths) -> str:
        kept = sorted(Path(paths["models-cache"]).glob(f"{name}.gen.json*"))
        kept = [p for p in kept if p.suffix != ".part"]  # what arrived, for a resume
        return f"kept {', '.join(p.name for p in kept)}" if kept else ""

    return check


def pack_whole(source: str, store: str) -> Callable[[Paths], str]:
    """The pack of {source} in {store} opens without a word and holds the file's sketches."""

    def check(paths: Paths) -> str:
        path = Path(paths[source])
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            try:
                packed = open_class(path, store=paths[store])
            except (UserWarning, SketchDataError) as exc:
                return f"the pack of {path} is not whole: {exc}"
        for split, sketches in read_npz(path).items():
            if [stored(packed[split], i).tolist() for i in range(len(sketches))] != [
                s.tolist() for s in sketches
            ]:
                return f"the pack of {path} does not hold its '{split}' sketches"
        return ""

    return check


def no_partial(store: str) -> Callable[[Paths], str]:
    """No half-written pack, under any name, in {store}."""

    def check(paths: Paths) -> str:
        left = [p.name for p in Path(paths[store]).iterdir() if ".part" in p.name]
        return f"left {', '.join(left)}" if left else ""

    return check


def all_of(*checks: Callable[[Paths], str]) -> Callable[[Paths], str]:
    return lambda paths: "; ".join(filter(None, (check(paths) for check in checks)))


# ----- the cases -----
TINY = "--set enc_rnn_size=16 --set dec_rnn_size=32 --set z_size=8 --set raster_z_size=8"
TRAIN = "train --data {data} --out {out} --threads 1"
TINY_TRAIN = f"{TRAIN} --classes {{tiny.npz}} --batch-size 8 {TINY}"
STORE_TRAIN = f"train --classes cat --steps 1 --batch-size 8 --threads 1 {TINY}"
DRAW = "draw cat --out {out}.svg --threads 1"
COMPLETE = "complete --class cat --out {out}.svg --threads 1 --input"
TRANSLATE = "translate --out {out}.svg --threads 1 --input"
RECONSTRUCT = "reconstruct --out {out}.svg --threads 1 --input"
HEAL = "heal --class cat --out {out}.svg --threads 1 --input"
MIRROR = "--models-url {mirror}"


def _config(change: Callable[[dict], object]) -> Callable[[Path], None]:
    def damage_run(run: Path) -> None:
        info = json.loads((run / "config.json").read_text())
        changed = change(info)
        text = changed if isinstance(changed, str) else json.dumps(changed)
        (run / "config.json").write_text(text)

    return damage_run


def _train(**fields: object) -> Callable[[dict], dict]:
    return lambda info: {**info, "train": {**info["train"], **fields}}


def _checkpoint(change: Callable[[dict, dict], None]) -> Callable[[Path], None]:
    """Rewrite last.safetensors with `change(tensors, info)` applied in place."""

    def damage_run(run: Path) -> None:
        from safetensors.torch import save_file

        from aisketcher.checkpoint import META_KEY, read_checkpoint

        path = run / "last.safetensors"
        tensors, info = read_checkpoint(path)
        change(tensors, info)
        save_file(tensors, str(path), metadata={META_KEY: json.dumps(info)})

    return damage_run


def _first_optimizer_tensor(tensors: dict, info: dict) -> None:
    name = next(k for k in tensors if k.startswith("optim."))
    tensors[name] = tensors[name].flatten()[:3].clone()


# Damage done to a finished run between sittings, and what the refusal must say.
RUN_DAMAGE: dict[str, tuple[Callable[[Path], None], str]] = {
    "malformed": (_config(lambda info: "{not json"), "not a readable JSON"),
    "no-train": (
        _config(lambda info: {k: v for k, v in info.items() if k != "train"}),
        "no 'train' object",
    ),
    "evil-key": (_config(_train(evil=1)), "unknown training setting(s): evil"),
    "steps-text": (_config(_train(steps="abc")), "bad training setting(s): steps"),
    "minutes-text": (_config(_train(max_minutes="10")), "bad training setting(s): max_minutes"),
    "seed-text": (_config(_train(seed="a")), "bad training setting(s): seed"),
    "no-loader": (_checkpoint(lambda t, info: info.pop("loader")), "metadata is damaged"),
    "step-text": (_checkpoint(lambda t, info: info.update(step="abc")), "metadata is damaged"),
    "loader-rng": (
        _checkpoint(lambda t, info: info.update(loader={"rng": 5, "queue": []})),
        "does not fit this run",
    ),
    "optimizer-shape": (_checkpoint(_first_optimizer_tensor), "does not fit this run"),
    "rng-state": (
        _checkpoint(lambda t, info: t.update({"rng.torch": t["rng.torch"][:10]})),
        "does not fit this run",
    ),
    "garbage-metrics": (
        lambda run: (run / "metrics.csv").write_text("garbage,header\n1,2\n"),
        "not this trainer's metrics file",
    ),
}

RESUME = "train --out {run-%s} --resume --threads 1"


def through(
    name: str,
    command: str,
    key: str,
    says: str = "",
    *,
    loader: str = "read_sketches",
    names: str = "",
    matches: str = "",
) -> list[Case]:
    """A bad input {key} through a command (its last argument) and through a loader of the API."""
    return [
        Case(name, (*command.split(), f"{{{key}}}"), says, names or key, matches=matches),
        Case(name, (loader, f"{{{key}}}"), says, names or key, matches=matches),
    ]


def google(
    name: str, what: str, says: str = "", names: str = "mirror", **more: object
) -> list[Case]:
    """google:{name} through draw and through Sketcher.load, from the mirror."""
    return [
        case(
            what,
            f"draw {name} --model google:{name} {MIRROR} --out {{out}}.svg",
            says,
            names,
            **more,
        ),
        case(what, f"Sketcher.load google:{name}", says, names, **more),
    ]


CASES: list[Case] = [
    # Sketch files: through a command that reads them, and through read_sketches.
    *(
        c
        for i, what in enumerate(JSON_CASES)
        for c in through(f"JSON sketch: {what}", COMPLETE, f"sketch{i}.json")
    ),
    *(
        c
        for i, (_, says) in enumerate(BAD_SVGS)
        for c in through(f"SVG: {says}", TRANSLATE, f"svg{i}.svg", says)
    ),
    *(
        c
        for i, (_, says) in enumerate(BAD_LINES)
        for c in through(
            f"ndjson line: {says}", "data convert --out {out}.npz", f"lines{i}.ndjson", says
        )
    ),
    *(
        c
        for i, (what, (_, says)) in enumerate(BAD_SKETCHES.items())
        for c in through(f".npz sketch: {what}", "data inspect", f"sketches{i}.npz", says)
    ),
    *(
        c
        for i, (_, says) in enumerate(BAD_CLASS_RECORDS)
        for c in through(f".npz class record: {says}", RECONSTRUCT, f"records{i}.npz", says)
    ),
    case("JSON sketch with a byte-order mark", f"{COMPLETE} {{bom.json}}", accept=True),
    case("a good JSON sketch", f"{COMPLETE} {{good.json}}", accept=True),
    case("a good JSON sketch", "read_sketches {good.json}", accept=True),
    case("SVG in UTF-7", f"{COMPLETE} {{utf7.svg}}", "unreadable XML", "utf7.svg"),
    case("a 3.6 MB SVG", f"{COMPLETE} {{big.svg}}", "more than a sketch's SVG", "big.svg"),
    case("a 3.6 MB SVG", "read_sketches {big.svg}", "more than a sketch's SVG", "big.svg"),
    case("SVG billion laughs", f"{COMPLETE} {{laughs.svg}}", "entit", "laughs.svg"),
    case("SVG billion laughs", "read_sketches {laughs.svg}", "entit", "laughs.svg"),
    case("SVG external entity", f"{COMPLETE} {{xxe.svg}}", "entit", "xxe.svg"),
    case("a good SVG", f"{COMPLETE} {{good.svg}}", accept=True),
    case("a good SVG", "read_sketches {good.svg}", accept=True),
    # Model files and folders from elsewhere.
    *(
        c
        for i, (what, (_, pattern)) in enumerate(MODEL_FOLDER_CASES.items())
        for c in through(
            f"model folder: {what}",
            "draw cat --out {out}.svg --threads 1 --model",
            f"model{i}",
            loader="Sketcher.load",
            names=f"model{i}/config.json",
            matches=pattern,
        )
    ),
    *(
        c
        for i, (what, (_, says)) in enumerate(WEIGHT_CASES.items())
        for c in through(
            f"model weights: {what}",
            f"{RECONSTRUCT} {{good.json}} --class cat --model",
            f"weights{i}",
            says,
            loader="Sketcher.load",
            names=f"weights{i}/model.safetensors",
        )
    ),
    *(
        c
        for i, what in enumerate(broken_files())
        for c in through(
            f".gen.json: {what}",
            "draw tiny --out {out}.svg --model",
            f"gen{i}.gen.json",
            loader="Sketcher.load",
        )
    ),
    *(
        c
        for i, text in enumerate(NOT_JSON)
        for c in through(
            f".gen.json: {text[:12]!r}",
            "draw tiny --out {out}.svg --model",
            f"notjson{i}.gen.json",
            loader="Sketcher.load",
        )
    ),
    case("the built-in model", "Sketcher.load", accept=True),
    case("a magenta-js file", "Sketcher.load {magenta.gen.json}", accept=True),
    case("a run", "Sketcher.load {run}", accept=True),
    case("a folder without config", "Sketcher.load {config-less}", "no config.json", "config-less"),
    # Google's models by name, from the mirror.
    *(
        c
        for problem, name in MALFORMED_MODELS.items()
        for c in google(
            name,
            f"google: a .gen.json with {problem}",
            "invalid JSON" if problem == "not JSON" else problem,
            keeps=nothing_cached(name),
        )
    ),
    *google(
        "lion", "google: a redirect loop", "redirect not followed", keeps=nothing_cached("lion")
    ),
    *google(
        "frog", "google: a download that trickles for ever", "stalled", keeps=nothing_cached("frog")
    ),
    *google("whale", "google: a download without end", f"larger than {MAX_MODEL_BYTES:,} bytes"),
    *google(
        "frog",
        "google: a trickle within every bound but time",
        "not finished within 0.5 s",
        during=(
            setting(google_models, "MAX_MODEL_SECONDS", 0.5),
            setting(download, "_STALL_S", 60.0),
        ),
    ),
    *google(
        "rabbit",
        "google: a cached model edited on disk",
        "changed since",
        "models-cache/rabbit.gen.json",
    ),
    *google("dog", "google: a cached model cut short", "damaged", "models-cache/dog.gen.json"),
    *google("unicorn", "google: no such model", "`aisketcher models` lists them", names=""),
    *google(
        "sheep",
        "google: a good cached model, a bad one on the mirror",
        accept=True,
        keeps=same("models-cache/sheep.gen.json", "shared-sheep"),
    ),
    *google("bird", "google: a good model from the mirror", accept=True),
    case(
        "google: a decoder-only model cannot translate",
        f"translate --input {{good.json}} --model google:bird {MIRROR}",
        "needs an encoder",
    ),
    case(
        "complete with a malformed Google model",
        f"{COMPLETE} {{good.json}} --model google:owl {MIRROR}",
        "do not match",
        "mirror",
    ),
    *google(
        "bird",
        "google: a cache folder that is a file",
        names="existing.svg",
        during=(env(AISKETCHER_MODELS_CACHE="existing.svg"),),
    ),
    case("models, with damaged cache entries", "models", accept=True),
    case("models --models-url without a value", "models --models-url", "expected one argument"),
    # Data files from the network.
    case(
        "data download a misspelt class", "data download catt --dest {out}-dl", "did you mean 'cat'"
    ),
    case(
        "data download: a redirect loop",
        "data download cat --dest {out}-dl --base-url {mirror} --retries 0",
        "redirect not followed",
        "mirror",
    ),
    case(
        "data download: a trickle for ever",
        "data download dog --dest {out}-dl --base-url {mirror} --retries 0",
        "stalled",
        "mirror",
    ),
    case(
        "data download: not on the server",
        "data download eye --dest {out}-dl --base-url {mirror}",
        "404",
        "mirror",
    ),
    case(
        "data download: nobody listening",
        "data download eye --dest {out}-dl --base-url {dead} --retries 0",
        "failed after 1 attempts",
        "dead",
    ),
    case("data download --retries -1", "data download eye --dest {out}-dl --retries -1", "retries"),
    case(
        "data download into a file",
        "data download bicycle --dest {existing.svg} --base-url {mirror}",
        "",
        "existing.svg",
    ),
    case(
        "data download, all well",
        "data download bicycle --dest {out}-dl --base-url {mirror}",
        accept=True,
    ),
    # The sketch store: damaged packs and changed sources are packed again, never read.
    *(
        case(
            f"store: a pack {how} ({reason})",
            f"data pack cat --data {{store-{how}-data}} --store {{store-{how}}}",
            reason,
            f"store-{how}-data/cat.npz",
            warns=True,
            keeps=pack_whole(f"store-{how}-data/cat.npz", f"store-{how}"),
        )
        for how, reason in DAMAGE.items()
    ),
    case(
        "store: a class file changed since packing",
        "data pack cat --data {store-stale-data} --store {store-stale}",
        "packed from an earlier state",
        "store-stale-data/cat.npz",
        warns=True,
        keeps=pack_whole("store-stale-data/cat.npz", "store-stale"),
    ),
    case(
        "store: a class file changed, its size and time put back",
        "data pack cat --data {store-touched-data} --store {store-touched}",
        "packed from an earlier state",
        "store-touched-data/cat.npz",
        warns=True,
        keeps=pack_whole("store-touched-data/cat.npz", "store-touched"),
    ),
    case(
        "store: the disk fills while packing",
        "data pack eye cat --data {store-full-data} --store {store-full}",
        "No space left on device",
        "store-full",
        during=(disk_full(np, "save", after=2),),
        keeps=all_of(no_partial("store-full"), pack_whole("store-full-data/eye.npz", "store-full")),
    ),
    case(
        "data pack into a store that is a file",
        "data pack eye --data {store-full-data} --store {existing.svg}",
        "cannot write the sketch store",
        "existing.svg",
    ),
    case("data pack an unknown class", "data pack unicorn --data {store-full-data}", "unicorn"),
    case("data pack from no folder", "data pack all --data {nothing}", "", "nothing"),
    case(
        "store: train on a pack edited since",
        f"{STORE_TRAIN} --data {{store-train-data}} --out {{out}}-store",
        "checksum",
        "store-train-data/cat.npz",
        warns=True,
        during=(env(AISKETCHER_STORE="store-train"),),
        keeps=pack_whole("store-train-data/cat.npz", "store-train"),
    ),
    case(
        "store: train, the disk full while packing",
        f"{STORE_TRAIN} --data {{store-train-full-data}} --out {{out}}-store-full",
        "No space left on device",
        "store-train-full",
        during=(env(AISKETCHER_STORE="store-train-full"), disk_full(np, "save", after=1)),
        keeps=no_partial("store-train-full"),
    ),
    # Numbers on the command line.
    case("draw --count 0", f"{DRAW} --count 0", "at least 1"),
    case("draw --count -3", f"{DRAW} --count -3", "at least 1"),
    case("draw --seed -1", f"{DRAW} --seed -1", "must be 0 or more"),
    case("draw --seed 1e23", f"{DRAW} --seed 1e23", "whole number"),
    case("draw --threads 0", f"{DRAW} --threads 0", "at least 1"),
    case("draw --device quantum", f"{DRAW} --device quantum", "unknown device"),
    case("draw --size 100000", f"{DRAW} --size 100000", "within [16, 4096]"),
    case("draw --size -5", f"{DRAW} --size -5", "at least 1"),
    case("draw --temperature 50", f"{DRAW} --temperature 50", "within [0.01, 2.0]"),
    case("draw --pen-temperature 0", f"{DRAW} --pen-temperature 0", "above 0"),
    case("draw --pen-temperature nan", f"{DRAW} --pen-temperature nan", "finite"),
    case("train --set pen_temperature=9", f"{TRAIN} --set pen_temperature=9", "pen_temperature"),
    case("train --set temperature=0", f"{TRAIN} --set temperature=0", "temperature"),
    case("draw --guidance nan", f"{DRAW} --guidance nan", "within [0, 100]"),
    case("draw --guidance -1", f"{DRAW} --guidance -1", "within [0, 100]"),
    case(
        "draw --guidance 2, a model without class dropout",
        "draw bicycle --model {magenta.gen.json} --guidance 2 --out {out}.svg",
        "needs a model trained with class dropout",
    ),
    case("train --set class_dropout=2", f"{TRAIN} --set class_dropout=2", "class_dropout"),
    case("train --set guidance=3", f"{TRAIN} --set guidance=3", "class dropout"),
    case("draw an unknown class", "draw unicorn --out {out}.svg", "unicorn"),
    case("draw to a .jpg", "draw cat --out {out}.jpg", ".jpg"),
    case("draw, every number sane", f"{DRAW} --count 2 --seed 3", accept=True),
    case("train --batch-size 0", f"{TRAIN} --batch-size 0", "at least 1"),
    case("train --damage 2", f"{TRAIN} --damage 2", "from 0 to 1"),
    case("train --augment-scale 1", f"{TRAIN} --augment-scale 1", "from 0 to 0.9"),
    case("train --augment-drop nan", f"{TRAIN} --augment-drop nan", "from 0 to 1"),
    case("train --damage-share nan", f"{TRAIN} --damage 0.5 --damage-share nan", "from 0 to 1"),
    case(
        "train --damage, decoder only",
        f"{TINY_TRAIN} --config sketch-rnn-decoder --damage 0.5 --steps 1",
        "decoder only",
    ),
    case("train --steps -5", f"{TRAIN} --steps -5", "at least 1"),
    case("train --eval-every 0", f"{TRAIN} --eval-every 0", "at least 1"),
    case("train --checkpoint-every 0", f"{TRAIN} --checkpoint-every 0", "at least 1"),
    case("train --lr nan", f"{TRAIN} --lr nan", "finite number above 0"),
    case("train --lr inf", f"{TRAIN} --lr inf", "finite number above 0"),
    case("train --max-minutes 0", f"{TRAIN} --max-minutes 0", "finite number above 0"),
    case("serve --port 70000", "serve --port 70000", "at most 65535"),
    case("serve --workers 0", "serve --workers 0", "at least 1"),
    case("serve --device quantum", "serve --device quantum", "unknown device"),
    case("serve on a port in use", "serve --port {busy-port}", "cannot listen", "busy-port"),
    case(
        "serve a damaged model folder",
        "serve --run {model0} --port 0",
        names="model0/config.json",
        matches=MODEL_FOLDER_CASES["malformed JSON"][1],
    ),
    case(
        "serve a Google model that loops",
        f"serve --run google:lion {MIRROR} --port 0",
        "redirect not followed",
        "mirror",
    ),
    case(
        "evaluate --samples 0", "evaluate {run} --classifier {classifier} --samples 0", "at least 1"
    ),
    case(
        "evaluate --samples 1", "evaluate {run} --classifier {classifier} --samples 1", "at least 2"
    ),
    case(
        "evaluate with no classifier there",
        "evaluate {run} --classifier {nothing}",
        "classifier train",
        "nothing",
    ),
    case(
        "evaluate with a folder that is no classifier",
        "evaluate {run} --classifier {config-less}",
        "",
        "config-less",
    ),
    case(
        "evaluate a damaged run",
        "evaluate {run-malformed} --classifier {classifier} --samples 2",
        "",
        "run-malformed",
    ),
    case(
        "evaluate --classes unicorn",
        "evaluate {run} --classifier {classifier} --classes unicorn --samples 2",
        "unicorn",
    ),
    case(
        "data render --grid 0", "data render {good.ndjson} --grid 0 --out {out}.png", "at least 1"
    ),
    case(
        "data render --index past the end",
        "data render {tiny.npz} --index 40 --out {out}.svg",
        "sketches",
        "tiny.npz",
    ),
    case(
        "data render a grid as a .gif",
        "data render {tiny.npz} --grid 2 --out {out}.gif",
        "one sketch",
    ),
    # Other commands.
    case(
        "classifier train --classes unicorn",
        "classifier train --classes unicorn --data {data} --out {out}-clf",
        "unicorn",
    ),
    case(
        "classifier train --epochs 0",
        "classifier train --classes cat --epochs 0 --out {out}-clf",
        "at least 1",
    ),
    case(
        "classifier train from no folder",
        "classifier train --classes cat --data {nothing} --out {out}-clf",
        "",
        "nothing",
    ),
    case(
        "experiment --repeats-only alone",
        "experiment diversity --out {out}-exp --repeats-only",
        "needs --repeat-seeds",
    ),
    case(
        "experiment: repeats with nothing earlier",
        "experiment diversity --out {out}-exp --repeat-seeds 1 --repeats-only",
        "no earlier diversity.json",
        "out",
    ),
    case(
        "experiment into a file",
        "experiment diversity --out {existing.svg} --repeat-seeds 1 --repeats-only",
        "",
        "existing.svg",
    ),
    case("experiment of no such kind", "experiment everything --out {out}-exp", "invalid choice"),
    case("export what is not a run", "export {nothing} --out {out}-export", "not a run", "nothing"),
    case(
        "export a run with a damaged config",
        "export {run-malformed} --out {out}-export",
        "not a readable JSON",
        "run-malformed",
    ),
    case(
        "export onto a model, the disk full",
        "export {run} --out {model-good}",
        "No space left on device",
        "model-good",
        during=(disk_full(api_module, "save_file", error=SafetensorError),),
        keeps=same("model-good", "model-good.orig"),
    ),
    case("export, all well", "export {run} --out {out}-export", accept=True),
    case(
        "interpolate a bad sketch",
        "interpolate --a {good.json} --b {sketch0.json} --out {out}.svg",
        "",
        "sketch0.json",
    ),
    case(
        "interpolate --steps 0",
        "interpolate --a {good.json} --b {good.json} --steps 0",
        "at least 1",
    ),
    case(
        "interpolate, all well",
        "interpolate --a {good.json} --b {good.svg} --classes cat,cat --steps 3 --out {out}.svg "
        "--threads 1",
        accept=True,
    ),
    case(
        "translate --class-pull 1.5",
        "translate --input {good.json} --class-pull 1.5",
        "from 0 to 1",
    ),
    case(
        "translate to an unknown class",
        "translate --input {good.json} --classes cat,unicorn --out {out}.svg",
        "unicorn",
    ),
    case("translate, all well", f"{TRANSLATE} {{good.svg}} --classes cat,pig", accept=True),
    case(
        "reconstruct, all well", f"{RECONSTRUCT} {{three.npz}} --class cat --count 3", accept=True
    ),
    case("heal --remove 1.5", f"{HEAL} {{good.json}} --remove 1.5", "from 0 to 1"),
    case("heal --remove -0.1", f"{HEAL} {{good.json}} --remove -0.1", "from 0 to 1"),
    case("heal --remove nan", f"{HEAL} {{good.json}} --remove nan", "from 0 to 1"),
    case("heal --remove a word", f"{HEAL} {{good.json}} --remove some", "expected a number"),
    case("heal --damage-seed -1", f"{HEAL} {{good.json}} --damage-seed -1", "0 or more"),
    case("heal a missing input", f"{HEAL} {{nothing}}", "no such file", "nothing"),
    case(
        "heal --remove, a sketch of one stroke",
        f"{HEAL} {{good.svg}} --remove 0.3",
        "one stroke",
        "good.svg",
    ),
    case(
        "heal as an unknown class",
        "heal --input {good.json} --class unicorn --out {out}.svg",
        "unicorn",
    ),
    case(
        "google: a decoder-only model cannot heal",
        f"heal --input {{good.json}} --class bird --model google:bird {MIRROR}",
        "needs an encoder",
    ),
    case("heal, all well", f"{HEAL} {{good.svg}} --count 2", accept=True),
    case("heal --remove, all well", f"{HEAL} {{good.json}} --remove 0.5 --count 2", accept=True),
    *(
        case(f"refused first: {' '.join(argv)}", " ".join(argv), says)
        for argv, says in REFUSED_FIRST
    ),
    # Training requests.
    case("train --set evil=1", f"{TINY_TRAIN} --set evil=1", "unknown model config field"),
    case("train --set dec_rnn_size=abc", f"{TRAIN} --set dec_rnn_size=abc", "must be int"),
    case("train --set dec_rnn_size=1e9", f"{TRAIN} --set dec_rnn_size=1000000000", "within"),
    case("train --set autoencoder_weight=1e39", f"{TRAIN} --set autoencoder_weight=1e39", "within"),
    case(
        "train --set kl_weight_start=NaN", f"{TRAIN} --set kl_weight_start=NaN", "kl_weight_start"
    ),
    case("train --classes cat,cat", f"{TRAIN} --classes cat,cat", "given twice"),
    case(
        "train --batch-size 1000000",
        f"{TRAIN} --classes cat --batch-size 1000000",
        "larger than the training split",
    ),
    case(
        "train --init-from nowhere", f"{TRAIN} --init-from {{nothing}}", "--init-from takes a run"
    ),
    case(
        "train --init-from a .gen.json",
        f"{TRAIN} --init-from {{magenta.gen.json}}",
        "--init-from takes a run",
    ),
    case(
        "train --init-from a folder without config",
        f"{TRAIN} --init-from {{config-less}}",
        "config.json",
    ),
    case(
        "train --init-from NaN weights", f"{TINY_TRAIN} --init-from {{weights0}}", "NaN", "weights0"
    ),
    case("train --out a file", "train --out {existing.svg}", "this is a file", "existing.svg"),
    case(
        "train --lr 1e4 (every step non-finite)", f"{TINY_TRAIN} --steps 40 --lr 1e4", "non-finite"
    ),
    # Runs damaged between sittings, and a run the next sitting must not lose.
    *(
        case(
            f"resume: {name}",
            RESUME % name,
            says,
            f"run-{name}",
            keeps=same(f"run-{name}", f"run-{name}.orig"),
        )
        for name, (_, says) in RUN_DAMAGE.items()
    ),
    case(
        "resume with --lr 1e4: the checkpoints stay",
        "train --out {run-keep} --resume --steps 40 --lr 1e4 --threads 1",
        "asks for learning_rate 10000.0",
        "run-keep",
        keeps=same("run-keep", "run", "*.safetensors"),
    ),
    case(
        "resume with another model's options",
        "train --out {run-keep} --resume --steps 3 --classes eye --threads 1",
        "--classes not used",
        "run-keep",
        warns=True,
    ),
    case(
        "resume with --set of a model field",
        "train --out {run-keep} --resume --steps 3 --set z_size=4 --threads 1",
        "--resume continues the run's model",
    ),
    case(
        "resume an intact run from another folder",
        "train --out {run} --resume --steps 3 --threads 1",
        accept=True,
    ),
    # Data files.
    case(".npz announcing 3 GiB", "data inspect {bomb.npz}", "points announced", "bomb.npz"),
    case(
        ".npz announcing a 200,000-point sketch",
        "data inspect {long.npz}",
        "200000 points",
        "long.npz",
    ),
    case(".npz announcing 3.4 GiB as float32", "data inspect {wide.npz}", "2 GiB", "wide.npz"),
    case(".npz announcing 3.4 GiB as float32", "read_sketches {wide.npz}", "2 GiB", "wide.npz"),
    case(
        ".npz member inflating past 1 GiB",
        "data inspect {inflating.npz}",
        "refusing",
        "inflating.npz",
    ),
    case(
        ".npz whose pickle runs os.system", "data inspect {pickled.npz}", "forbidden", "pickled.npz"
    ),
    case(
        ".npz whose pickle runs os.system",
        "read_sketches {pickled.npz}",
        "forbidden",
        "pickled.npz",
    ),
    case("a cut .npz", "data inspect {damaged.npz}", "", "damaged.npz"),
    case("text named .npz", "data inspect {text.npz}", "", "text.npz"),
    case("a FIFO named .npz", "data inspect {fifo.npz}", "not a regular file", "fifo.npz"),
    case("a FIFO named .npz", "read_sketches {fifo.npz}", "not a regular file", "fifo.npz"),
    case("a folder named .npz", "data inspect {folder.npz}", "is a folder", "folder.npz"),
    case("no such file", "read_sketches {nothing}", "no such file", "nothing"),
    *(
        c
        for suffix in (".json", ".svg", ".npz")
        for c in through(f"an empty {suffix} file", "data inspect", f"empty{suffix}")
    ),
    case("an empty .ndjson file: no drawings", "data inspect {empty.ndjson}", accept=True),
    case("an empty .ndjson file: no drawings", "read_sketches {empty.ndjson}", accept=True),
    case("an empty .ndjson file", f"{COMPLETE} {{empty.ndjson}}", "0 sketches", "empty.ndjson"),
    *through("an empty .gen.json", "draw tiny --model", "empty.gen.json", loader="Sketcher.load"),
    case("render a .json drawing", "data render {good.json} --out {out}.svg", accept=True),
    case("convert what is not ndjson", "data convert {tiny.npz} --out {out}.npz", "", "tiny.npz"),
    case(
        "interpolate --a-index past the end",
        "interpolate --a {three.npz} --a-index 99 --b {good.json}",
        "out of range",
        "three.npz",
    ),
    case(
        "store: a pack that is a file",
        "data pack cat --data {store-file-data} --store {store-file}",
        "unreadable record",
        "store-file-data/cat.npz",
        warns=True,
        keeps=pack_whole("store-file-data/cat.npz", "store-file"),
    ),
    case("a malformed ndjson line", "data inspect {malformed.ndjson}", ":2:", "malformed.ndjson"),
    case("a 300,000-point ndjson line", "data inspect {long.ndjson}", ":2:", "long.ndjson"),
    case("a 300,000-point ndjson line", "read_sketches {long.ndjson}", ":2:", "long.ndjson"),
    case(
        "an ndjson line with 1e308",
        "data convert {huge.ndjson} --out {out}.npz",
        ":2:",
        "huge.ndjson",
    ),
    case(
        "--skip-bad past a 1e308 line",
        "data convert {huge.ndjson} --out {out}.npz --skip-bad",
        accept=True,
    ),
    case(
        "--skip-bad past a 300,000-point line",
        "data convert {long.ndjson} --out {out}.npz --skip-bad",
        accept=True,
    ),
    case(
        "render a 300,000-point line",
        "data render {long.ndjson} --index 1 --out {out}.png",
        ":2:",
        "long.ndjson",
    ),
    case("a good ndjson file", "data inspect {good.ndjson}", accept=True),
    case("a good ndjson file", "read_sketches {good.ndjson}", accept=True),
    case(
        "evaluate --compare a broken file",
        "evaluate {run} --classifier {classifier} --compare {bad-eval.json}",
        "",
        "bad-eval.json",
    ),
]


def _peak_rss() -> int:
    text = Path("/proc/self/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+)", text).group(1)) << 10


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


class _Hang(BaseException):
    """Raised by the clock in the probed code, past anything it could catch."""


@contextlib.contextmanager
def _clock(seconds: float) -> Iterator[None]:
    def ring(*_: object) -> None:
        raise _Hang

    previous = signal.signal(signal.SIGALRM, ring)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _run(argv: list[str], warned: list[str]) -> int:
    """The exit status of a command line, or of a loader's call as the CLI would give it (its
    error printed as the CLI prints one); the warnings each gave, in `warned`."""
    if argv[0] in LOADERS:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                LOADERS[argv[0]](*argv[1:])
                code = 0
            except SketchDataError as exc:
                print(f"{argv[0]}: error: {exc}", file=sys.stderr)
                code = 2
        warned.extend(str(w.message) for w in caught)
        return code
    shown = cli._one_line_warning

    def showing(message: Warning | str, *args: object, **kwargs: object) -> None:
        warned.append(str(message))
        shown(message, *args, **kwargs)

    with warnings.catch_warnings(), mock.patch.object(cli, "_one_line_warning", showing):
        warnings.simplefilter("always")  # as a user sees them, not as this suite's filters would
        try:
            return main(argv)
        except SystemExit as exc:
            return exc.code if isinstance(exc.code, int) else 2


def replay(c: Case, paths: Paths) -> tuple[str, str]:
    """Run one case: (outcome, what it printed or why it is scored so)."""
    argv = [re.sub(r"\{([^}]+)\}", lambda m: str(paths[m.group(1)]), a) for a in c.argv]
    err, out, warned = io.StringIO(), io.StringIO(), []
    metered = _reset_peak()
    before = _peak_rss()
    try:
        with contextlib.ExitStack() as stack:
            for make in c.during:
                stack.enter_context(make(paths))
            stack.enter_context(_clock(TIME_LIMIT_S))
            stack.enter_context(contextlib.redirect_stderr(err))
            stack.enter_context(contextlib.redirect_stdout(out))
            code = _run(argv, warned)
    except _Hang:
        return "hang", f"still running after {TIME_LIMIT_S} s"
    except Exception as exc:
        return "traceback", f"{type(exc).__name__}: {exc}"
    if metered and _peak_rss() - before > MEMORY_LIMIT:
        return "hang", f"peak memory grew by {(_peak_rss() - before) >> 20} MiB"
    outcome, said = score(c, code, err.getvalue(), warned, paths)
    lost = c.keeps(paths) if c.keeps is not None else ""
    return ("lost", lost) if lost else (outcome, said)


def score(c: Case, code: int, err: str, warned: list[str], paths: Paths) -> tuple[str, str]:
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [i for i, line in enumerate(lines) if "error:" in line]
    if c.accept:
        return ("accepted", "") if code == 0 else ("unclear", f"exit {code}: {err[-500:]}")
    if c.warns:
        if code != 0:
            return "unclear", f"refused: exit {code}: {err[-500:]}"
        if not warned:
            return "silent", "exit status 0 without a warning"
        return _says(c, warned[0], paths, len(warned) == 1 and "\n" not in warned[0], "warned")
    if code == 0:
        return "silent", "exit status 0"
    # One error line, and the last thing printed: a message running over lines is not one.
    one_line = code == 2 and len(errors) == 1 and errors[0] == len(lines) - 1
    return _says(c, lines[errors[0]] if errors else err[-500:], paths, one_line, f"exit {code}")


def _says(c: Case, line: str, paths: Paths, one_line: bool, how: str) -> tuple[str, str]:
    """Whether `line` is one clear line: naming the input, saying the problem."""
    problem = line.split("error:", 1)[-1].strip()
    if not one_line:
        return "unclear", f"{how}, not in one line: {line[-500:]}"
    if c.names and str(paths[c.names]) not in line:
        return "unclear", f"does not name {paths[c.names]}: {line}"
    if c.says not in line or len(problem) < 10:
        return "unclear", f"does not say {c.says!r}: {line}"
    if c.matches and not re.search(c.matches, line):
        return "unclear", f"does not match {c.matches!r}: {line}"
    return "clear", line if how != "warned" else f"warned: {line}"


@dataclass(frozen=True)
class Request:
    """One request to the live server, and what it must answer."""

    what: str
    path: str
    body: object = None  # JSON, or bytes as they are; None: a GET without one
    status: int | tuple[int, ...] = 422  # 200: a good request, which must succeed
    says: str = ""  # a fragment of the answer's detail
    method: str = ""  # default: POST with a body, GET without
    content_type: str = "application/json"

    @property
    def verb(self) -> str:
        return self.method or ("GET" if self.body is None else "POST")

    @property
    def entry(self) -> str:
        route = urlsplit(self.path).path
        return f"{self.verb} {'/static' if route.startswith('/static/') else route}"


def _bodies(what: str, path: str, body: object, says: str) -> list[Request]:
    """A bad body to a route, and to its stream when it has one."""
    streams = [] if path == "/api/render" else [f"{path}/stream"]
    shown = body if isinstance(body, bytes) else json.dumps(body)
    return [Request(f"{what}: {str(shown)[:60]}", p, body, 422, says) for p in [path, *streams]]


SKETCH = {"strokes": CORNER}
REQUESTS: list[Request] = [
    # Bodies, every POST route and its stream.
    *(r for path, body, says in BAD_BODIES for r in _bodies("out of range", path, body, says)),
    *(
        Request(f"not JSON: {raw[:20]!r}", "/api/complete", raw, (400, 422))
        for raw in MALFORMED_JSON
    ),
    *(
        Request(f"{field} {value}", path, (body % value).encode(), 422, "finite number")
        for path, body, field in NON_FINITE
        for value in NON_FINITE_VALUES
    ),
    *(
        Request(f"a number as a string: {json.dumps(body)[:60]}", path, body)
        for path, body in STRING_NUMBERS
    ),
    *(
        Request(
            f"a byte-order mark {mark!r}",
            "/api/draw",
            mark + b'{"class": "cat"}',
            400,
            "byte-order",
        )
        for mark in BYTE_ORDER_MARKS
    ),
    Request("count as a string", "/api/draw", {"class": "cat", "count": "4"}, 422, "count"),
    Request(
        "NaN in a sketch", "/api/complete", b'{"sketch": [[[NaN, 1], [2, 2]]], "class": "cat"}'
    ),
    Request("100,000 nested lists", "/api/complete", b"[" * 100_000, 400, "parsing the body"),
    Request("a body of 2 MB", "/api/draw", b" " * 2_000_000, 413, "too large"),
    Request("a body of 2 MB", "/api/translate/stream", b" " * 2_000_000, 413, "too large"),
    Request("an unknown class", "/api/draw/stream", {"class": "unicorn"}, 422, "unicorn"),
    Request(
        "a 300,000-point stroke",
        "/api/complete",
        {"sketch": [[[i % 400, 5] for i in range(300_000)]], "class": "cat"},
        413,
    ),
    Request(
        "an empty sketch", "/api/complete/stream", {"sketch": [], "class": "cat"}, 422, "sketch"
    ),
    Request("an empty sketch", "/api/reconstruct/stream", {"sketches": [[]]}, 422, "strokes"),
    *(
        r
        for path in ("/api/heal", "/api/heal/stream")
        for r in (
            Request("an empty sketch", path, {"sketch": [], "class": "cat"}, 422, "sketch"),
            Request("an empty stroke", path, {"sketch": [[]], "class": "cat"}, 422, "strokes"),
            Request("NaN in a sketch", path, b'{"sketch": [[[NaN, 1], [2, 2]]], "class": "cat"}'),
            *(Request(f"not JSON: {raw[:20]!r}", path, raw, (400, 422)) for raw in MALFORMED_JSON),
        )
    ),
    Request("null", "/api/draw", b"null", 422, "body"),
    Request("no model named", "/api/model?model=", None, 422, "google:NAME"),
    Request(
        "a model name of 71 characters",
        "/api/draw",
        {"class": "cat", "model": "google:" + "x" * 64},
        422,
        "model",
    ),
    Request(
        "a body as text", "/api/draw", b'{"class": "cat"}', 415, "JSON", content_type="text/plain"
    ),
    # Google's models named in a request, from the mirror.
    Request("a model named by its path", "/api/model?model=/etc/passwd", None, 422, "google:NAME"),
    Request("an unknown Google model", "/api/model?model=google:unicorn", None, 422, "lists them"),
    Request("a Google model that loops", "/api/model?model=google:lion", None, 422, "redirect"),
    Request("a malformed Google model", "/api/model?model=google:owl", None, 422, "do not match"),
    Request(
        "a cached model edited on disk", "/api/model?model=google:rabbit", None, 422, "changed"
    ),
    Request(
        "a model that trickles",
        "/api/draw",
        {"class": "frog", "model": "google:frog"},
        422,
        "stalled",
    ),
    Request(
        "a model without end",
        "/api/complete/stream",
        {"sketch": SKETCH, "class": "whale", "model": "google:whale"},
        422,
        "larger than",
    ),
    Request(
        "a Google model that cannot translate",
        "/api/translate",
        {"sketch": SKETCH, "model": "google:bird"},
        422,
        "no encoder",
    ),
    *(
        Request(
            "a Google model that cannot heal",
            path,
            {"sketch": SKETCH, "class": "bird", "model": "google:bird"},
            422,
            "no encoder",
        )
        for path in ("/api/heal", "/api/heal/stream")
    ),
    # The other routes, and methods they do not take.
    Request("the page", "/", status=200),
    Request("the page, POSTed", "/", b"{}", 405),
    Request("a file of the page", "/static/app.js", status=200),
    Request("a path out of the page's folder", "/static/../app.py", status=404),
    Request("an encoded path out of it", "/static/%2e%2e/app.py", status=404),
    Request("the API's description", "/api/openapi.json", status=200),
    Request("the API's description, POSTed", "/api/openapi.json", b"{}", 405),
    Request("the model", "/api/model", status=200),
    Request("a Google model", "/api/model?model=google:bird", status=200),
    Request("the model, POSTed", "/api/model", b"{}", 405),
    Request("the models", "/api/models", status=200),
    Request("the models, DELETEd", "/api/models", method="DELETE", status=405),
    Request("health", "/api/health?x=%00", status=200),
    Request("health, POSTed", "/api/health", b"{}", 405),
    Request("draw, GET", "/api/draw", status=405),
    # Good requests to every route that draws.
    Request("a good request", "/api/draw", {"class": "cat", "seed": 1}, 200),
    Request("a good request", "/api/draw/stream", {"class": "cat", "seed": 1}, 200),
    Request("a good request", "/api/complete", {"sketch": SKETCH, "class": "cat", "count": 1}, 200),
    Request(
        "a good request",
        "/api/complete/stream",
        {"sketch": SKETCH, "class": "cat", "count": 1},
        200,
    ),
    Request("a good request", "/api/translate", {"sketch": SKETCH, "classes": ["pig"]}, 200),
    Request("a good request", "/api/translate/stream", {"sketch": SKETCH, "classes": ["pig"]}, 200),
    Request("a good request", "/api/reconstruct", {"sketches": [SKETCH], "class": "cat"}, 200),
    Request(
        "a good request", "/api/reconstruct/stream", {"sketches": [SKETCH], "class": "cat"}, 200
    ),
    Request("a good request", "/api/heal", {"sketch": SKETCH, "class": "cat", "count": 1}, 200),
    Request(
        "a good request", "/api/heal/stream", {"sketch": SKETCH, "class": "cat", "count": 1}, 200
    ),
    Request("a good request", "/api/render", {"sketch": SKETCH, "format": "png"}, 200),
    Request("a good request", "/api/draw", {"class": "bird", "model": "google:bird"}, 200),
    Request("a good request", "/api/interpolate", {**INTERPOLATE_BODY, "steps": 3}, 200),
    Request("a good request", "/api/interpolate/stream", {**INTERPOLATE_BODY, "steps": 3}, 200),
    *(
        r
        for change, says in INTERPOLATE_OUT_OF_RANGE
        for r in _bodies("out of range", "/api/interpolate", {**INTERPOLATE_BODY, **change}, says)
    ),
    Request(
        "unlabelled ends and no classes",
        "/api/interpolate",
        {"a": {"strokes": CORNER}, "b": {"strokes": CORNER}},
        422,
        "give both classes",
    ),
]


def request(base: str, r: Request) -> tuple[int, str]:
    """(status, body) of one request, on a raw socket: the server may answer and close before
    the body is all sent (a refused size), which http.client reports as a broken pipe."""
    data = (
        r.body
        if isinstance(r.body, bytes)
        else b""
        if r.body is None
        else json.dumps(r.body).encode()
    )
    parts = urlsplit(base)
    head = f"{r.verb} {r.path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
    if r.body is not None:
        head += f"Content-Type: {r.content_type}\r\nContent-Length: {len(data)}\r\n"
    answer = b""
    with socket.create_connection((parts.hostname, parts.port), timeout=TIME_LIMIT_S) as sock:
        try:
            sock.sendall((head + "\r\n").encode())
            for start in range(0, len(data), 1 << 16):
                if select.select([sock], [], [], 0)[0]:  # answered already: stop sending
                    break
                sock.sendall(data[start : start + (1 << 16)])
            while chunk := sock.recv(1 << 16):
                answer += chunk
        except (BrokenPipeError, ConnectionResetError):
            pass  # it closed after answering: what it sent is in `answer`
        except TimeoutError:
            return 0, "no answer"
    status_line, _, rest = answer.partition(b"\r\n")
    if not status_line.startswith(b"HTTP/1.1 "):
        return 0, f"no answer: {answer[:100]!r}"
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2].decode(errors="replace")


def replay_request(base: str, r: Request) -> tuple[str, str]:
    got, text = request(base, r)
    if got == 0:
        return "hang", text
    if got >= 500:
        return "traceback", f"{got}: {text[:300]}"
    if r.status == 200:
        return ("accepted", "") if got == 200 else ("unclear", f"{got}: {text[:300]}")
    if got == 200:
        return "silent", "200"
    try:
        detail = json.loads(text).get("detail", "")
    except (ValueError, AttributeError):
        detail = ""
    said = detail if isinstance(detail, str) else json.dumps(detail)
    statuses = r.status if isinstance(r.status, tuple) else (r.status,)
    if got not in statuses or r.says not in said or not said or "\n" in said:
        return "unclear", f"{got}: {text[:300]}"
    return "clear", f"{got}: {said[:200]}"


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Path:
    """A finished two-step run of a tiny model, to damage between sittings."""
    root = tmp_path_factory.mktemp("probe-run")
    _tiny_npz(root / "tiny.npz", data_dir)
    run = root / "run"
    argv = f"{TINY_TRAIN.replace('{tiny.npz}', str(root / 'tiny.npz'))} --steps 2".split()
    argv = [a.replace("{data}", str(data_dir)).replace("{out}", str(run)) for a in argv]
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        assert main(argv) == 0
    return run


def test_every_hostile_input_gets_a_clear_answer(
    tmp_path: Path,
    data_dir: Path,
    tiny_run: Path,
    monkeypatch: pytest.MonkeyPatch,
    probe_tally: list[str],
) -> None:
    from aisketcher.server.app import create_app, running

    metered = _reset_peak()  # False where /proc/self/clear_refs is not writable
    # The network's bounds, short: a stall in 0.3 s, no wait between attempts, 8 MB a model.
    monkeypatch.setattr(download, "_STALL_S", 0.3)
    monkeypatch.setattr(download, "_TIMEOUT_S", 5.0)
    monkeypatch.setattr(google_models, "BACKOFF_S", 0.0)
    monkeypatch.setattr(google_models, "MAX_MODEL_BYTES", MAX_MODEL_BYTES)
    monkeypatch.setenv(google_models.CACHE_ENV, str(tmp_path / "models-cache"))
    monkeypatch.chdir(tmp_path)  # "another folder" for the resumed run; outputs land here
    started = time.monotonic()
    paths = files(tmp_path, data_dir, tiny_run)
    results: list[tuple[str, str, str, str]] = []
    with (
        serving(Path(paths["bucket"])) as mirror,
        socket.create_server(("127.0.0.1", 0)) as busy,
    ):
        mirror.misbehave.update(MISBEHAVING)
        monkeypatch.setenv(google_models.MODELS_URL_ENV, mirror.base_url)
        paths.update(
            mirror=mirror.base_url, dead=dead_url(), **{"busy-port": str(busy.getsockname()[1])}
        )
        for c in CASES:
            results.append((c.entry, c.name, *replay(c, paths)))
        with running(create_app(Sketcher.load(), models_url=mirror.base_url)) as base:
            for r in REQUESTS:
                results.append((r.entry, r.what, *replay_request(base, r)))
    seconds = time.monotonic() - started
    lines = tally(results, seconds, metered)
    probe_tally.extend(lines)
    print("\n" + "\n".join(lines))
    for entry, name, outcome, said in results:
        print(f"  {outcome:9s} {entry}: {name}: {said[:160]}")
    if artifacts := os.environ.get("AISKETCHER_ARTIFACTS"):
        by_entry = defaultdict(Counter)
        for entry, _, outcome, _ in results:
            by_entry[entry][outcome] += 1
        Path(artifacts, "probe.json").write_text(
            json.dumps(
                {"seconds": round(seconds), "by_entry": by_entry, "cases": results}, indent=1
            )
        )
    bad = [r for r in results if r[2] not in ("clear", "accepted")]
    assert not bad, "\n".join(f"{o}: {e}: {n}: {s}" for e, n, o, s in bad)


def tally(results: list[tuple[str, str, str, str]], seconds: float, metered: bool) -> list[str]:
    """The table of outcomes per entry point (commands, loaders, routes), its totals, and a line
    for each case that was not clear or accepted."""
    by_entry: dict[str, Counter] = defaultdict(Counter)
    for entry, _, outcome, _ in results:
        by_entry[entry][outcome] += 1
    total = sum(by_entry.values(), Counter())
    width = max(len(e) for e in by_entry)

    def row(name: str, counts: Counter) -> str:
        return f"{name:<{width}} {sum(counts.values()):>5}" + "".join(
            f" {counts.get(o, 0):>9}" for o in OUTCOMES
        )

    def order(entry: str) -> tuple[int, str]:
        return (entry[0].isupper() + 2 * ("/" in entry), entry)  # commands, loaders, routes

    return [
        f"{len(results)} hostile and good inputs in {seconds:.0f} s, memory "
        f"{'metered' if metered else 'not metered here'}:",
        f"{'entry point':<{width}} {'tried':>5}" + "".join(f" {o:>9}" for o in OUTCOMES),
        *(row(entry, by_entry[entry]) for entry in sorted(by_entry, key=order)),
        row("total", total),
        *(f"{o}: {e}: {n}: {s[:300]}" for e, n, o, s in results if o not in ("clear", "accepted")),
    ]


def test_every_entry_point_is_probed() -> None:
    """Every command and action of the CLI, every route of the server and every loader of the
    Python API has cases: a new one without any fails here."""
    import argparse

    from starlette.routing import Mount

    from aisketcher.cli import build_parser
    from aisketcher.server.app import create_app

    def commands(parser: argparse.ArgumentParser, prefix: str) -> Iterator[str]:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            yield prefix
        for action in subs:
            for name, child in action.choices.items():
                yield from commands(child, f"{prefix} {name}")

    routes = set()
    for route in create_app(Sketcher.load()).routes:
        if isinstance(route, Mount):
            routes.add(f"GET {route.path}")
        else:
            routes |= {f"{method} {route.path}" for method in route.methods - {"HEAD"}}
    required = {*commands(build_parser(), "aisketcher"), *routes, *LOADERS}
    probed = {c.entry for c in CASES} | {r.entry for r in REQUESTS}
    assert sorted(required - probed) == []
