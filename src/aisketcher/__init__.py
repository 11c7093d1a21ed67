"""aisketcher: AI-Sketcher (AAAI 2019) and its Sketch-RNN baselines, in PyTorch."""

from aisketcher.errors import SketchDataError
from aisketcher.sketch import Sketch

__version__ = "0.1.0"
__all__ = ["Sketch", "SketchDataError", "__version__"]
