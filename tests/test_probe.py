"""The hostile-world probe: every bad input the robustness probe found, replayed where a user meets it.

Each case runs one command line in this process (`aisketcher.cli.main`) or sends one request to a
live server, under a clock and a memory meter, and is scored as one of

- ``clear``: refused with exit status 2 (a 4xx for the server) and exactly one error line, which
  names the file when a file is at fault and says what is wrong;
- ``accepted``: an input that must work did (exit status 0, a 200);
- ``unclear``: refused, but not in one line naming the file and the problem;
- ``traceback``: an exception escaped (a 5xx for the server);
- ``hang``: still running after the case's time limit, or past the memory limit;
- ``silent``: a bad input accepted without a word.

The test asserts 0 tracebacks, 0 hangs, 0 silent acceptances, 0 unclear errors, and prints the
tally (`pytest -s tests/test_probe.py`; written to ``$AISKETCHER_ARTIFACTS/probe.json`` if set).
The inputs a library function meets directly (JSON sketches, model folders) are tabled beside its
own tests and replayed here through the command line.
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
import time
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest

from aisketcher.api import Sketcher, builtin_model_dir
from aisketcher.cli import main
from aisketcher.formats.npz import read_npz, write_npz
from test_model_folder import CASES as MODEL_FOLDER_CASES
from test_reader import JSON_CASES

# Per case: seconds before it counts as a hang, and growth of the process's peak memory.
TIME_LIMIT_S = 60
MEMORY_LIMIT = 768 << 20


@dataclass(frozen=True)
class Case:
    """One replayed input: a command line whose {NAME}s are the probe's files (see `files`)."""

    name: str  # what was sent, in the probe's words
    argv: tuple[str, ...]
    says: str = ""  # a fragment the error line must hold (any message when "")
    names: str = ""  # the {NAME} of the file the error line must name
    accept: bool = False  # a good input: must succeed
    matches: str = ""  # a regular expression the error line must match (tables kept as patterns)


def case(name: str, command: str, says: str = "", names: str = "", accept: bool = False) -> Case:
    return Case(name, tuple(command.split()), says, names, accept)


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


def files(root: Path, data_dir: Path, run: Path) -> dict[str, Path]:
    """Write the probe's inputs under `root`; {NAME} in a case's argv is replaced by its path."""
    out: dict[str, Path] = {}

    def put(name: str, content: str | bytes | Callable[[Path], None]) -> None:
        path = root / name
        if callable(content):
            content(path)
        else:
            path.write_bytes(content if isinstance(content, bytes) else content.encode())
        out[name] = path

    for i, text in enumerate(JSON_CASES.values()):
        put(f"sketch{i}.json", text)
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
    put("wide.npz", lambda p: _npz(p, {"train.npy": _announcing((3000, 100_000, 3))}))
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
    put("bad-eval.json", "{not json")
    out["nothing"] = root / "no-such-file"
    put(
        "magenta.gen.json",
        (data_dir.parent / "models" / "magenta-js" / "bicycle.gen.json").read_bytes(),
    )
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

    for name, (damage, _) in RUN_DAMAGE.items():
        copy = root / f"run-{name}"
        shutil.copytree(run, copy)
        damage(copy)
        out[f"run-{name}"] = copy
    out["run"] = run
    out["data"] = data_dir
    out["out"] = root / "out"
    return out


def _untrained_classifier(path: Path) -> None:
    from aisketcher.evaluate.classifier import ClassifierConfig, SketchClassifier, SketchCNN

    config = ClassifierConfig(["cat"])
    SketchClassifier(config, SketchCNN(config), {}).save(path)


def _tiny_npz(path: Path, data_dir: Path) -> None:
    """40 short cats per split: a data set a test trains on in seconds."""
    splits = read_npz(data_dir / "quickdraw" / "cat.npz")
    write_npz(
        path, {name: [s for s in sketches if len(s) < 40][:40] for name, sketches in splits.items()}
    )


TINY = "--set enc_rnn_size=16 --set dec_rnn_size=32 --set z_size=8 --set raster_z_size=8"
TRAIN = "train --data {data} --out {out} --threads 1"
TINY_TRAIN = f"{TRAIN} --classes {{tiny.npz}} --batch-size 8 {TINY}"
DRAW = "draw cat --out {out}.svg --threads 1"
COMPLETE = "complete --class cat --out {out}.svg --threads 1 --input"


def _config(change: Callable[[dict], object]) -> Callable[[Path], None]:
    def damage(run: Path) -> None:
        info = json.loads((run / "config.json").read_text())
        changed = change(info)
        text = changed if isinstance(changed, str) else json.dumps(changed)
        (run / "config.json").write_text(text)

    return damage


def _train(**fields: object) -> Callable[[dict], dict]:
    return lambda info: {**info, "train": {**info["train"], **fields}}


def _checkpoint(change: Callable[[dict, dict], None]) -> Callable[[Path], None]:
    """Rewrite last.safetensors with `change(tensors, info)` applied in place."""

    def damage(run: Path) -> None:
        from safetensors.torch import save_file

        from aisketcher.checkpoint import META_KEY, read_checkpoint

        path = run / "last.safetensors"
        tensors, info = read_checkpoint(path)
        change(tensors, info)
        save_file(tensors, str(path), metadata={META_KEY: json.dumps(info)})

    return damage


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

CASES: list[Case] = [
    # Sketch files given to complete (and the readers behind every command).
    *(
        case(f"JSON sketch: {what}", f"{COMPLETE} {{sketch{i}.json}}", names=f"sketch{i}.json")
        for i, what in enumerate(JSON_CASES)
    ),
    case("JSON sketch with a byte-order mark", f"{COMPLETE} {{bom.json}}", accept=True),
    case("a good JSON sketch", f"{COMPLETE} {{good.json}}", accept=True),
    case("SVG in UTF-7", f"{COMPLETE} {{utf7.svg}}", "unreadable XML", "utf7.svg"),
    case("a 3.6 MB SVG", f"{COMPLETE} {{big.svg}}", "more than a sketch's SVG", "big.svg"),
    case("SVG billion laughs", f"{COMPLETE} {{laughs.svg}}", "entit", "laughs.svg"),
    case("SVG external entity", f"{COMPLETE} {{xxe.svg}}", "entit", "xxe.svg"),
    case("a good SVG", f"{COMPLETE} {{good.svg}}", accept=True),
    # Model folders from elsewhere.
    *(
        Case(
            f"model folder: {what}",
            tuple(f"{DRAW} --model {{model{i}}}".split()),
            names=f"model{i}/config.json",
            matches=pattern,
        )
        for i, (what, (_, pattern)) in enumerate(MODEL_FOLDER_CASES.items())
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
    case("draw an unknown class", "draw unicorn --out {out}.svg", "unicorn"),
    case("draw to a .jpg", "draw cat --out {out}.jpg", ".jpg"),
    case("draw, every number sane", f"{DRAW} --count 2 --seed 3", accept=True),
    case("train --batch-size 0", f"{TRAIN} --batch-size 0", "at least 1"),
    case("train --steps -5", f"{TRAIN} --steps -5", "at least 1"),
    case("train --eval-every 0", f"{TRAIN} --eval-every 0", "at least 1"),
    case("train --checkpoint-every 0", f"{TRAIN} --checkpoint-every 0", "at least 1"),
    case("train --lr nan", f"{TRAIN} --lr nan", "finite number above 0"),
    case("train --lr inf", f"{TRAIN} --lr inf", "finite number above 0"),
    case("train --max-minutes 0", f"{TRAIN} --max-minutes 0", "finite number above 0"),
    case("serve --port 70000", "serve --port 70000", "at most 65535"),
    case("serve --workers 0", "serve --workers 0", "at least 1"),
    case("serve --device quantum", "serve --device quantum", "unknown device"),
    case(
        "evaluate --samples 0", "evaluate {run} --classifier {classifier} --samples 0", "at least 1"
    ),
    case(
        "data render --grid 0", "data render {good.ndjson} --grid 0 --out {out}.png", "at least 1"
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
    case("train --out a file", "train --out {existing.svg}", "this is a file", "existing.svg"),
    case(
        "train --lr 1e4 (every step non-finite)", f"{TINY_TRAIN} --steps 40 --lr 1e4", "non-finite"
    ),
    # Runs damaged between sittings.
    *(
        case(f"resume: {name}", RESUME % name, says, f"run-{name}")
        for name, (_, says) in RUN_DAMAGE.items()
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
    case(
        ".npz member inflating past 1 GiB",
        "data inspect {inflating.npz}",
        "refusing",
        "inflating.npz",
    ),
    case(
        ".npz whose pickle runs os.system", "data inspect {pickled.npz}", "forbidden", "pickled.npz"
    ),
    case("a cut .npz", "data inspect {damaged.npz}", "", "damaged.npz"),
    case("text named .npz", "data inspect {text.npz}", "", "text.npz"),
    case("a FIFO named .npz", "data inspect {fifo.npz}", "not a regular file", "fifo.npz"),
    case("a folder named .npz", "data inspect {folder.npz}", "is a folder", "folder.npz"),
    case("a malformed ndjson line", "data inspect {malformed.ndjson}", ":2:", "malformed.ndjson"),
    case("a 300,000-point ndjson line", "data inspect {long.ndjson}", ":2:", "long.ndjson"),
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


def replay(c: Case, paths: dict[str, Path]) -> tuple[str, str]:
    """Run one case: (outcome, what it printed or why it is scored so)."""
    argv = [re.sub(r"\{([^}]+)\}", lambda m: str(paths[m.group(1)]), a) for a in c.argv]
    err, out = io.StringIO(), io.StringIO()
    metered = _reset_peak()
    before = _peak_rss()
    try:
        with _clock(TIME_LIMIT_S), contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            try:
                code = main(argv)
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 2
    except _Hang:
        return "hang", f"still running after {TIME_LIMIT_S} s"
    except Exception as exc:
        return "traceback", f"{type(exc).__name__}: {exc}"
    if metered and _peak_rss() - before > MEMORY_LIMIT:
        return "hang", f"peak memory grew by {(_peak_rss() - before) >> 20} MiB"
    errors = [line for line in err.getvalue().splitlines() if "error:" in line]
    if c.accept:
        return ("accepted", "") if code == 0 else ("unclear", err.getvalue()[-500:])
    if code == 0:
        return "silent", "exit status 0"
    if code != 2 or len(errors) != 1:
        return "unclear", f"exit {code}: {err.getvalue()[-500:]}"
    line = errors[0]
    if c.names and str(paths[c.names]) not in line:
        return "unclear", f"does not name {paths[c.names]}: {line}"
    if c.says not in line or len(line.split("error:", 1)[1].strip()) < 10:
        return "unclear", f"does not say {c.says!r}: {line}"
    if c.matches and not re.search(c.matches, line):
        return "unclear", f"does not match {c.matches!r}: {line}"
    return "clear", line


# Requests to the server: (what, path, JSON body or raw bytes, status, a fragment of the detail).
REQUESTS: list[tuple[str, str, object, int, str]] = [
    ("count as a string", "/api/draw", {"class": "cat", "count": "4"}, 422, "count"),
    ("seed as a string", "/api/draw", {"class": "cat", "seed": "7"}, 422, "seed"),
    ("a byte-order mark", "/api/draw", b'\xef\xbb\xbf{"class": "cat"}', 400, "byte-order"),
    (
        "NaN in a sketch",
        "/api/complete",
        b'{"sketch": [[[NaN, 1], [2, 2]]], "class": "cat"}',
        422,
        "",
    ),
    (
        "1e400 in a sketch",
        "/api/complete",
        b'{"sketch": [[[1e400, 1], [2, 2]]], "class": "cat"}',
        422,
        "",
    ),
    ("100,000 nested lists", "/api/complete", b"[" * 100_000, 400, "parsing the body"),
    ("a body of 2 MB", "/api/draw", b" " * 2_000_000, 413, "too large"),
    ("an unknown class", "/api/draw", {"class": "unicorn"}, 422, "unicorn"),
    ("count 0", "/api/draw", {"class": "cat", "count": 0}, 422, "count"),
    ("temperature -1", "/api/draw", {"class": "cat", "temperature": -1}, 422, "temperature"),
    (
        "a 300,000-point stroke",
        "/api/complete",
        {"sketch": [[[i % 400, 5] for i in range(300_000)]], "class": "cat"},
        413,
        "",
    ),
    ("an empty sketch", "/api/complete", {"sketch": [], "class": "cat"}, 422, "sketch"),
    ("a good request", "/api/draw", {"class": "cat", "seed": 1}, 200, ""),
]


def request(base: str, path: str, body: object) -> tuple[int, str]:
    """(status, body) of one POST, on a raw socket: the server may answer and close before the
    body is all sent (a refused size), which http.client reports as a broken pipe."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    parts = urlsplit(base)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n"
    ).encode()
    answer = b""
    with socket.create_connection((parts.hostname, parts.port), timeout=TIME_LIMIT_S) as sock:
        try:
            sock.sendall(head)
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


def replay_request(
    base: str, what: str, path: str, body: object, status: int, says: str
) -> tuple[str, str]:
    got, text = request(base, path, body)
    if got == 0:
        return "hang", text
    if got >= 500:
        return "traceback", f"{got}: {text[:300]}"
    if status == 200:
        return ("accepted", "") if got == 200 else ("unclear", f"{got}: {text[:300]}")
    if got == 200:
        return "silent", "200"
    detail = json.loads(text).get("detail", "") if text.startswith("{") else ""
    if got != status or says not in json.dumps(detail):
        return "unclear", f"{got}: {text[:300]}"
    return "clear", f"{got}: {json.dumps(detail)[:200]}"


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Path:
    """A finished two-step run of a tiny model, to damage between sittings."""
    root = tmp_path_factory.mktemp("probe-run")
    _tiny_npz(root / "tiny.npz", data_dir)
    run = root / "run"
    argv = f"{TINY_TRAIN.replace('{tiny.npz}', str(root / 'tiny.npz'))} --steps 2".split()
    argv = [a.replace("{data}", str(data_dir)).replace("{out}", str(run)) for a in argv]
    assert main(argv) == 0
    return run


def test_every_hostile_input_gets_a_clear_answer(
    tmp_path: Path, data_dir: Path, tiny_run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aisketcher.server.app import create_app, running

    metered = _reset_peak()  # False where /proc/self/clear_refs is not writable
    paths = files(tmp_path, data_dir, tiny_run)
    monkeypatch.chdir(tmp_path)  # "another folder" for the resumed run; outputs land here
    results: list[tuple[str, str, str]] = []
    started = time.monotonic()
    for c in CASES:
        outcome, said = replay(c, paths)
        results.append((c.name, outcome, said))
    with running(create_app(Sketcher.load())) as base:
        for what, path, body, status, says in REQUESTS:
            outcome, said = replay_request(base, what, path, body, status, says)
            results.append((f"server: {what}", outcome, said))
    tally = Counter(outcome for _, outcome, _ in results)
    summary = {"tried": len(results), **{k: tally.get(k, 0) for k in OUTCOMES}}
    print(
        f"\nprobe ({time.monotonic() - started:.0f} s, memory "
        f"{'metered' if metered else 'not metered here'}): "
        + ", ".join(f"{k} {v}" for k, v in summary.items())
    )
    for name, outcome, said in results:
        print(f"  {outcome:9s} {name}: {said[:160]}")
    if artifacts := os.environ.get("AISKETCHER_ARTIFACTS"):
        Path(artifacts, "probe.json").write_text(
            json.dumps({"tally": summary, "cases": results}, indent=1)
        )
    bad = [(n, o, s) for n, o, s in results if o not in ("clear", "accepted")]
    assert not bad, "\n".join(f"{o}: {n}: {s}" for n, o, s in bad)


OUTCOMES = ("clear", "accepted", "unclear", "traceback", "hang", "silent")
