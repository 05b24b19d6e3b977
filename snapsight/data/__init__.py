"""Data: the one safe image opener (:mod:`.images`) and the dataset sources built on it."""
from .images import IMAGE_EXTENSIONS, MAX_IMAGE_PIXELS, iter_image_files, open_image

__all__ = ["IMAGE_EXTENSIONS", "MAX_IMAGE_PIXELS", "iter_image_files", "open_image"]
