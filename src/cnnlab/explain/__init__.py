"""Why did the model predict that? Per pixel (attributions, Grad-CAM) and per training image
(TracIn influence), with the checks that say whether to believe the answer."""

from __future__ import annotations

from cnnlab.explain.attribute import METHODS, attribute

__all__ = ["METHODS", "attribute"]
