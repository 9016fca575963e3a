"""deepseek-manufacturing: Crack detection on live camera streams with a streaming 3D-CNN + LSTM."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
