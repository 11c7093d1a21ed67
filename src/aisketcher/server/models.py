"""The models one server draws with: its own, and Google's pretrained Sketch-RNN models, each loaded
when a request first names it (downloaded into the user's cache if it is not there yet)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path

from aisketcher.api import Sketcher
from aisketcher.errors import SketchDataError
from aisketcher.google_models import GOOGLE_PREFIX, cache_dir, google_name, is_google
from aisketcher.model_info import builtin_model_dir

# Google's models held in memory at once, the least recently used let go first: a 512-unit one
# takes 5 MB as float32, a 2048-unit one 70 MB.
KEEP = 4


class ModelShelf:
    """The server's own model, and Google's by `google:NAME`, loaded on first use and kept."""

    def __init__(self, own: Sketcher, models_url: str | None = None) -> None:
        self.own = own
        self.models_url = models_url
        self._loaded: OrderedDict[str, Sketcher] = OrderedDict()
        self._loading: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    def get(self, model: str | None) -> Sketcher:
        """The server's own model (None), or Google's `google:NAME`; loading one (blocking: call
        it off the event loop) lets other requests go on, those for the same model wait."""
        if model is None:
            return self.own
        if not is_google(model):
            raise SketchDataError(
                f"model {model!r}: name one of Google's as {GOOGLE_PREFIX}NAME, or leave it out "
                "for the server's own"
            )
        name = google_name(model)
        with self._lock:
            loading = self._loading.setdefault(name, threading.Lock())
        with loading:  # one download and load per model, however many ask for it at once
            with self._lock:
                if name in self._loaded:
                    self._loaded.move_to_end(name)
                    return self._loaded[name]
            try:
                sketcher = Sketcher.load(
                    GOOGLE_PREFIX + name, device=str(self.own.device), models_url=self.models_url
                )
            except SketchDataError as exc:  # the client named a model, not this machine's files
                said = str(exc).replace(str(cache_dir()), "the server's model cache")
                raise SketchDataError(said) from None
            with self._lock:
                self._loaded[name] = sketcher
                while len(self._loaded) > KEEP:
                    self._loaded.popitem(last=False)
        return sketcher


def label(sketcher: Sketcher) -> str:
    """How the page names a model: "built-in model", `google:NAME`, or its file or folder."""
    if is_google(sketcher.source):
        return sketcher.source
    path = Path(sketcher.source)
    return "built-in model" if path == builtin_model_dir() else path.name
