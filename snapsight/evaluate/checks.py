"""The names of the trust report's checks and built-in groups: plain data, torch-free, so the CLI can list them
without loading torch (``snapsight classify`` on an ONNX export must not import it)."""
from __future__ import annotations

CHECKS = ("accuracy", "calibration", "corruptions", "adversarial", "typographic", "cost", "saliency")
IMAGE_GROUPS = {"image:brightness": "mean pixel value of the image as the model sees it"}
# the fewest images each check can say something about (calibration: a temperature fitted on half of them)
MIN_IMAGES = {"accuracy": 1, "calibration": 20, "corruptions": 1, "adversarial": 1, "typographic": 1,
              "cost": 0, "saliency": 1}
