"""Google's pretrained Sketch-RNN models by name (`google:NAME`), fetched from a local stand-in for
Google's bucket: an HTTP server on 127.0.0.1 serving ../shared/models/magenta-js (no network)."""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest

from aisketcher import google_models
from aisketcher.api import Sketcher
from aisketcher.cli import main
from aisketcher.errors import SketchDataError
from aisketcher.google_model_names import GOOGLE_MODELS
from aisketcher.google_models import (
    CACHE_ENV,
    MODELS_URL_ENV,
    cached_models,
    google_name,
    model_url,
)
from aisketcher.model_info import builtin_model_dir
from test_download import serving
from test_errors_first import refused_before_torch

# The six models in ../shared/models/magenta-js (see its README).
SHARED = ("bicycle", "bird", "dog", "rabbit", "rain", "sheep")


@pytest.fixture
def models_dir(data_dir: Path) -> Path:
    return data_dir.parent / "models" / "magenta-js"


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A cache of its own for each test (never the user's), no mirror from the environment, and
    retries without waiting."""
    folder = tmp_path / "cache"
    monkeypatch.setenv(CACHE_ENV, str(folder))
    monkeypatch.delenv(MODELS_URL_ENV, raising=False)
    monkeypatch.setattr(google_models, "BACKOFF_S", 0.0)
    return folder


def dead_url() -> str:
    """A loopback URL where nothing listens: the network as seen offline."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def kept(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.iterdir()) if cache.is_dir() else []


def one_line_error(capsys: pytest.CaptureFixture) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("aisketcher: error: "), err
    return err


# ----- names -----
def test_the_names_are_those_magenta_js_lists() -> None:
    # magenta-js's sketch/README.md tabulates them in 23 rows of 5 cells, the last cell empty.
    assert len(GOOGLE_MODELS) == len(set(GOOGLE_MODELS)) == 23 * 5 - 1
    named_in_its_text = ("cat", "dog", "the_mona_lisa", "catpig", "crabrabbitfacepig", "spider")
    assert set(named_in_its_text) | set(SHARED) <= set(GOOGLE_MODELS)
    assert google_name("google:Palm Tree") == "palm_tree"
    assert google_name("google:the-mona-lisa") == "the_mona_lisa"
    with pytest.raises(SketchDataError, match="did you mean cat"):
        google_name("google:caat")
    with pytest.raises(SketchDataError, match="`aisketcher models` lists them"):
        google_name("google:unicorn")
    # The URL magenta-js's README gives for its models, and a mirror's or a folder's.
    assert model_url("spider") == (
        "https://storage.googleapis.com/quickdraw-models/sketchRNN/large_models/spider.gen.json"
    )
    assert model_url("bird", "http://h/m/") == "http://h/m/bird.gen.json"
    assert model_url("bird", "/srv/m") == "file:///srv/m/bird.gen.json"


# ----- the command line -----
def test_draw_downloads_once_then_draws_offline(
    cache: Path, models_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The same model read straight from its file is the reference for every drawing below.
    common = ["--count", "2", "--seed", "3"]
    reference = tmp_path / "reference.svg"
    own_file = str(models_dir / "bird.gen.json")
    assert main(["draw", "bird", "--model", own_file, *common, "--out", str(reference)]) == 0
    with serving(models_dir) as mirror:
        first = tmp_path / "first.svg"
        argv = ["draw", "bird", "--model", "google:bird", *common, "--out", str(first)]
        assert main([*argv, "--models-url", mirror.base_url]) == 0
        assert main([*argv, "--models-url", mirror.base_url]) == 0  # from the cache
        assert mirror.log == [("bird.gen.json", None)]
    assert (cache / "bird.gen.json").read_bytes() == (models_dir / "bird.gen.json").read_bytes()
    assert kept(cache) == ["bird.gen.json", "bird.gen.json.sha256"]
    assert first.read_bytes() == reference.read_bytes()
    monkeypatch.setenv(MODELS_URL_ENV, dead_url())
    offline = tmp_path / "offline.svg"
    assert main(["draw", "bird", "--model", "google:bird", *common, "--out", str(offline)]) == 0
    assert offline.read_bytes() == reference.read_bytes()


def test_a_local_folder_stands_in_for_the_bucket(cache: Path, models_dir: Path) -> None:
    sketcher = Sketcher.load("google:sheep", models_url=str(models_dir))
    assert sketcher.class_names == ["sheep"] and sketcher.source == "google:sheep"
    assert (cache / "sheep.gen.json").read_bytes() == (models_dir / "sheep.gen.json").read_bytes()


def test_complete_finishes_a_drawing_with_a_google_model(
    cache: Path, models_dir: Path, tmp_path: Path
) -> None:
    start = [[(10, 10), (60, 12), (62, 70)]]
    (tmp_path / "start.json").write_text(json.dumps(start))
    out = tmp_path / "endings.ndjson"
    argv = ["complete", "--input", str(tmp_path / "start.json"), "--class", "bird"]
    argv += ["--model", "google:bird", "--models-url", str(models_dir), "--out", str(out)]
    assert main([*argv, "--count", "2", "--seed", "1"]) == 0
    drawings = [json.loads(line) for line in out.read_text().splitlines()]
    assert [d["word"] for d in drawings] == ["start", "bird", "bird"]
    sketcher = Sketcher.load("google:bird")  # from the cache now
    endings = sketcher.complete(start, "bird", count=2, seed=1)
    for sketch in endings:
        assert np.allclose(np.vstack(sketch.strokes())[:3], start[0])
    assert any(len(s) > 3 for s in endings)  # the model drew on


@pytest.mark.parametrize(
    ("mode", "argv"),
    [
        ("translate", ["translate", "--input", "a.json"]),
        ("reconstruct", ["reconstruct", "--input", "a.json", "--class", "bird"]),
        ("interpolate", ["interpolate", "--a", "a.json", "--b", "a.json"]),
    ],
)
def test_modes_needing_an_encoder_are_refused_in_one_line(
    mode: str,
    argv: list[str],
    cache: Path,
    models_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("a.json").write_text(json.dumps([[[10, 10], [60, 12], [62, 70]]]))
    with serving(models_dir) as mirror:
        assert main([*argv, "--model", "google:bird", "--models-url", mirror.base_url]) == 2
        assert mirror.log == []  # refused before anything is downloaded
    err = one_line_error(capsys)
    assert "decoder-only" in err and f"{mode} needs an encoder" in err
    # The Python API says the same of a loaded model.
    sketcher = Sketcher.load("google:bird", models_url=str(models_dir))
    with pytest.raises(SketchDataError, match="google:bird: this model has no encoder"):
        sketcher.translate([[(10, 10), (60, 12)]], ["bird"])


def test_class_names_are_checked_before_torch_loads(
    cache: Path, models_dir: Path, tmp_path: Path
) -> None:
    cache.mkdir()
    shutil.copy(models_dir / "bird.gen.json", cache)
    err = refused_before_torch(["draw", "unicorn", "--model", "google:bird"], tmp_path)
    assert "does not know class 'unicorn' (it knows: bird)" in err
    err = refused_before_torch(["draw", "bird", "--model", "google:brid"], tmp_path)
    assert "no Sketch-RNN model named 'brid'; did you mean bird?" in err


def test_models_lists_the_three_kinds(
    cache: Path, models_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    builtin = json.loads((builtin_model_dir() / "config.json").read_text())["data"]["classes"]
    assert main(["models", "--models-url", "http://mirror.example/m"]) == 0
    before = capsys.readouterr().out
    cache.mkdir()
    shutil.copy(models_dir / "sheep.gen.json", cache)
    assert main(["models"]) == 0
    after = capsys.readouterr().out
    own, cached, google = after.split("\n\n")
    assert own.startswith(f"The built-in model, {len(builtin)} classes")
    assert own.split()[-len(builtin) :] == builtin
    assert "in the cache, 0" in before and "none yet" in before
    assert "in the cache, 1" in cached and cached.split()[-1] == "google:sheep"
    assert f"models, {len(GOOGLE_MODELS)} (" in google and "the_mona_lisa" in google
    assert "magenta-js's sketch/README.md" in google  # where the list came from
    assert "http://mirror.example/m):" in before and "large_models):" in after


# ----- downloads refused, nothing cached -----
def test_a_truncated_download_is_refused_then_resumed(
    cache: Path, models_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    with serving(models_dir) as mirror:
        mirror.always_truncate = True
        argv = ["draw", "bird", "--model", "google:bird", "--models-url", mirror.base_url]
        assert main([*argv, "--out", str(cache.parent / "x.svg")]) == 2
        err = one_line_error(capsys)
        assert "failed after 3 attempts" in err and f"{mirror.base_url}/bird.gen.json" in err
        assert cached_models() == [] and kept(cache) == ["bird.gen.json.part"]
        mirror.always_truncate = False
        Sketcher.load("google:bird", models_url=mirror.base_url)
        assert mirror.log[-1][1] is not None  # the next use resumed where the last stopped
    assert (cache / "bird.gen.json").read_bytes() == (models_dir / "bird.gen.json").read_bytes()
    assert kept(cache) == ["bird.gen.json", "bird.gen.json.sha256"]


def test_a_cut_download_of_unknown_length_is_refused_asmalformed(
    cache: Path, models_dir: Path
) -> None:
    with serving(models_dir) as mirror:
        mirror.send_length, mirror.always_truncate = False, True
        with pytest.raises(SketchDataError, match=r"refused, nothing kept: .* invalid JSON"):
            Sketcher.load("google:bird", models_url=mirror.base_url)
    assert kept(cache) == []


@pytest.mark.parametrize("send_length", [True, False])
def test_an_oversized_download_is_refused(
    send_length: bool, cache: Path, models_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(google_models, "MAX_MODEL_BYTES", 1_000_000)  # the shared files: 3 MB
    with serving(models_dir) as mirror:
        mirror.send_length = send_length
        with pytest.raises(SketchDataError, match="larger than 1,000,000 bytes") as info:
            Sketcher.load("google:bird", models_url=mirror.base_url)
        assert len(mirror.log) == 1  # not retried
    assert "\n" not in str(info.value) and "bird.gen.json" in str(info.value)
    assert kept(cache) == []


def malformed(models_dir: Path) -> dict[str, bytes]:
    good = json.loads((models_dir / "bird.gen.json").read_text())
    vae = [{**good[0], "mode": 0}, *good[1:]]
    shapes = [good[0], [[512, 123], [123], [5, 2048], [512, 2048], [2047]], good[2]]
    weights = [*good[:2], [*good[2][:4], good[2][4][:-8]]]
    return {
        "not JSON": b"<html>404 in disguise</html>",
        "mode 0": json.dumps(vae).encode(),
        "do not match": json.dumps(shapes).encode(),
        "weight 4 holds": json.dumps(weights).encode(),
        "max_seq_len": json.dumps([{**good[0], "max_seq_len": 10**12}, *good[1:]]).encode(),
    }


@pytest.mark.parametrize(
    "problem", ["not JSON", "mode 0", "do not match", "weight 4 holds", "max_seq_len"]
)
def test_a_malformed_download_is_refused(
    problem: str, cache: Path, models_dir: Path, tmp_path: Path
) -> None:
    bucket = tmp_path / "bucket"
    bucket.mkdir()
    (bucket / "bird.gen.json").write_bytes(malformed(models_dir)[problem])
    with pytest.raises(SketchDataError) as info:
        Sketcher.load("google:bird", models_url=str(bucket))
    message = str(info.value)
    url = (bucket.resolve() / "bird.gen.json").as_uri()
    assert message.startswith(f"{url}: refused, nothing kept: ")
    assert ("invalid JSON" if problem == "not JSON" else problem) in message
    assert "\n" not in message and kept(cache) == []


def test_offline_with_nothing_cached_names_the_url_and_a_mirror(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    url = dead_url()
    monkeypatch.setenv(MODELS_URL_ENV, url)
    assert main(["draw", "bird", "--model", "google:bird", "--out", str(tmp_path / "x.svg")]) == 2
    err = one_line_error(capsys)
    assert f"{url}/bird.gen.json" in err and "not cached" in err
    assert f"{MODELS_URL_ENV} (or --models-url)" in err and "bird.gen.json" in err


def test_a_download_that_never_ends_is_bounded_in_time(
    cache: Path, models_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(google_models, "MAX_MODEL_SECONDS", 0.5)
    with serving(models_dir) as mirror:
        mirror.misbehave["bird.gen.json"] = "trickle"  # within every other bound, for ever
        with pytest.raises(SketchDataError, match=r"not finished within 0.5 s") as info:
            Sketcher.load("google:bird", models_url=mirror.base_url)
    assert "\n" not in str(info.value) and cached_models() == []


def test_a_cache_entry_changed_on_disk_is_refused(cache: Path, models_dir: Path) -> None:
    """An edit that leaves a well-formed model (a weight's base64 changed) reads as any model
    would: the SHA-256 recorded at the download tells it apart."""
    Sketcher.load("google:bird", models_url=str(models_dir))
    entry = cache / "bird.gen.json"
    text = entry.read_text()
    at = text.rindex('"') - 100  # inside the last weight's base64
    entry.write_text(text[:at] + ("B" if text[at] == "A" else "A") + text[at + 1 :])
    with pytest.raises(SketchDataError) as info:
        Sketcher.load("google:bird", models_url=dead_url())
    message = str(info.value)
    assert message.startswith(f"{entry}: the cached copy of google:bird is damaged (it changed ")
    assert "bird.gen.json.sha256" in message and "delete it" in message and "\n" not in message
    entry.unlink()  # as the message says: downloaded again, and recorded again
    Sketcher.load("google:bird", models_url=str(models_dir))
    assert kept(cache) == ["bird.gen.json", "bird.gen.json.sha256"]


def test_a_cache_that_is_a_file_is_named_in_one_line(cache: Path, models_dir: Path) -> None:
    cache.write_text("a file where the cache folder would be")
    with pytest.raises(SketchDataError) as info:
        Sketcher.load("google:bird", models_url=str(models_dir))
    assert str(info.value) == (
        f"{cache}: the models cache cannot be here (a file): point {CACHE_ENV} at a folder"
    )


def test_a_damaged_cache_entry_is_reported_on_load(cache: Path, models_dir: Path) -> None:
    cache.mkdir()
    (cache / "bird.gen.json").write_bytes((models_dir / "bird.gen.json").read_bytes()[:5000])
    with pytest.raises(SketchDataError) as info:
        Sketcher.load("google:bird", models_url=dead_url())
    message = str(info.value)
    assert message.startswith(f"{cache / 'bird.gen.json'}: the cached copy of google:bird is ")
    assert "damaged" in message and "delete it" in message and "\n" not in message


# ----- the web app's API -----
def test_the_server_draws_with_a_google_model_named_in_a_request(
    cache: Path, models_dir: Path
) -> None:
    from aisketcher.server.app import create_app, running
    from test_server import ok, refused

    with (
        serving(models_dir) as mirror,
        running(create_app(Sketcher.load(), models_url=mirror.base_url)) as url,
    ):
        choices = ok(url, "/api/models")
        assert choices["default"] == "built-in model" and choices["cached"] == []
        assert choices["google"] == [f"google:{name}" for name in GOOGLE_MODELS]
        info = ok(url, "/api/model?model=google:bird")
        assert info["source"] == "google:bird" and info["classes"] == ["bird"]
        assert info["has_encoder"] is False
        body = {"class": "bird", "count": 2, "seed": 4, "model": "google:bird"}
        drawn = ok(url, "/api/draw", body)["sketches"]
        assert ok(url, "/api/models")["cached"] == ["google:bird"]
        assert mirror.log == [("bird.gen.json", None)]
        body = {"sketch": [[[0, 0], [9, 9]]], "model": "google:bird"}
        status, detail = refused(url, "/api/translate", body)
        assert status == 422 and "no encoder" in detail
        status, detail = refused(url, "/api/draw", {"class": "bird", "model": "/etc/passwd"})
        assert status == 422 and "google:NAME" in detail
        # a damaged cache entry is reported without this machine's paths
        (cache / "owl.gen.json").write_bytes((models_dir / "bird.gen.json").read_bytes()[:5000])
        status, detail = refused(url, "/api/draw", {"class": "owl", "model": "google:owl"})
        assert status == 422 and "damaged" in detail and str(cache) not in detail
        assert "the server's model cache" in detail
        assert ok(url, "/api/model")["source"] == "built-in model"  # its own, as before
    expected = Sketcher.load(models_dir / "bird.gen.json").draw("bird", 2, seed=4)
    assert [len(s["stroke3"]) for s in drawn] == [len(s) for s in expected]
