"""torchvision's PIL transforms of the original zoos, on uint8 arrays.

Each image goes through PIL exactly as torchvision did (Grayscale(1) = PIL convert('L'),
CenterCrop with torchvision's rounding, Resize = PIL bilinear with antialiasing), so the
cached uint8 images equal the original's before ToTensor. ToTensor and Normalize
((x / 255 - mean) / std) happen on the accelerator when batches are formed.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from PIL import Image


@dataclasses.dataclass(frozen=True)
class Transform:
    """What happens to each image before caching; `tag` names it in cache keys."""

    grayscale: bool = False
    channel_mean: bool = False  # one channel, the mean of the source's (rounded to uint8), not PIL's luma
    center_crop: int = 0  # 0: none
    resize: int = 0  # 0: none

    @property
    def tag(self) -> str:
        parts = (
            (["gray"] if self.grayscale else [])
            + (["mean"] if self.channel_mean else [])
            + ([f"crop{self.center_crop}"] if self.center_crop else [])
            + ([f"resize{self.resize}"] if self.resize else [])
        )
        return "-".join(parts) or "native"


def center_crop_box(height: int, width: int, size: int) -> tuple[int, int, int, int]:
    """torchvision's CenterCrop box (left, top, right, bottom): offsets round half to even."""
    top = int(round((height - size) / 2.0))
    left = int(round((width - size) / 2.0))
    return left, top, left + size, top + size


def apply_transform(images: np.ndarray, transform: Transform) -> np.ndarray:
    """uint8 [N, H, W, C] -> uint8 [N, H', W', C'] through PIL, image by image (`channel_mean`:
    the channel mean rounded half to even, before the PIL steps)."""
    if transform.channel_mean:
        images = np.rint(images.mean(axis=-1, keepdims=True, dtype=np.float64)).astype(np.uint8)
        transform = dataclasses.replace(transform, channel_mean=False)
    if transform.tag == "native":
        return images
    out = []
    for image in images:
        pil = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
        if transform.grayscale:
            pil = pil.convert("L")
        if transform.center_crop:
            pil = pil.crop(center_crop_box(pil.height, pil.width, transform.center_crop))
        if transform.resize:
            pil = pil.resize((transform.resize, transform.resize), Image.BILINEAR)
        array = np.asarray(pil, dtype=np.uint8)
        out.append(array[..., None] if array.ndim == 2 else array)
    return np.stack(out)
