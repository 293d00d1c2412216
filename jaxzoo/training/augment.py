"""On-device train augmentation of the ResNet zoos, drawn per model and per step.

The original pipelines augment before `ToTensor` + `Normalize`: CIFAR's RandomCrop(32,
padding=4) + RandomHorizontalFlip() pad with raw 0 pixels, and Tiny-ImageNet's
RandomHorizontalFlip() + RandomRotation(20) rotate 0-255 tensors with fill 0. So the
augmentations here act on the raw uint8 images [B, H, W, C] and return uint8 images of the
same shape; normalisation (a lookup table) comes afterwards and is unaffected.

Every augmentation is one inverse-mapping gather: for each output pixel the source pixel of
the input image is computed (crop offset, mirror, rotation), and pixels whose source lies
outside the image are 0. Shapes are static and all randomness comes from the `key` argument,
so the functions jit and vmap (callers vmap over models, with a key derived from
(model seed, epoch, step)). Each image of a batch gets its own independent draw.

Conventions (torchvision's): a crop offset (top, left) is uniform in [0, 2 * padding] in the
padded image; the flip is applied after the crop; a positive rotation angle turns the image
counter-clockwise as displayed (row 0 on top) about its centre, which for pixel indices is
((H - 1) / 2, (W - 1) / 2); interpolation is nearest, rounding half to even as
`grid_sample(mode='nearest')` does.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp


def _gather(images: jax.Array, rows: jax.Array, cols: jax.Array) -> jax.Array:
    """images [B, H, W, C], source indices rows/cols [B, H, W] int -> [B, H, W, C], 0 outside."""
    b, h, w, c = images.shape
    inside = (rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)
    flat = (jnp.clip(rows, 0, h - 1) * w + jnp.clip(cols, 0, w - 1)).reshape(b, h * w, 1)
    pixels = jnp.take_along_axis(images.reshape(b, h * w, c), flat, axis=1).reshape(b, h, w, c)
    return jnp.where(inside[..., None], pixels, jnp.zeros((), images.dtype))


def crop_flip(images: jax.Array, offsets: jax.Array, flips: jax.Array, padding: int = 4) -> jax.Array:
    """Zero-pad by `padding`, crop back to [H, W] at offsets [B, 2] (top, left in the padded
    image, in [0, 2 * padding]), then mirror left-right where flips [B] (bool) is set."""
    b, h, w, _ = images.shape
    top = offsets[:, 0, None, None] - padding
    left = offsets[:, 1, None, None] - padding
    y = jnp.arange(h, dtype=jnp.int32)[None, :, None]
    x = jnp.arange(w, dtype=jnp.int32)[None, None, :]
    x = jnp.where(flips[:, None, None], w - 1 - x, x)
    rows = jnp.broadcast_to(y + top, (b, h, w))
    cols = jnp.broadcast_to(x + left, (b, h, w))
    return _gather(images, rows, cols)


def random_crop_flip(key: jax.Array, images: jax.Array, padding: int = 4) -> jax.Array:
    """torchvision RandomCrop((H, W), padding) then RandomHorizontalFlip(0.5), per image.

    images [B, H, W, C] -> [B, H, W, C].
    """
    offset_key, flip_key = jax.random.split(key)
    b = images.shape[0]
    offsets = jax.random.randint(offset_key, (b, 2), 0, 2 * padding + 1, dtype=jnp.int32)
    flips = jax.random.bernoulli(flip_key, 0.5, (b,))
    return crop_flip(images, offsets, flips, padding)


def _rotation_source(h: int, w: int, degrees: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Nearest source (rows, cols) [B, H, W] int32 of each output pixel of a rotation by
    degrees [B] counter-clockwise about the image centre."""
    theta = jnp.deg2rad(degrees.astype(jnp.float32))[:, None, None]
    cos, sin = jnp.cos(theta), jnp.sin(theta)
    cy, cx = (h - 1) / 2, (w - 1) / 2
    dy = jnp.arange(h, dtype=jnp.float32)[None, :, None] - cy
    dx = jnp.arange(w, dtype=jnp.float32)[None, None, :] - cx
    # Inverse map: rotate the output position clockwise (rows grow downwards).
    src_x = cos * dx - sin * dy + cx
    src_y = sin * dx + cos * dy + cy
    return jnp.round(src_y).astype(jnp.int32), jnp.round(src_x).astype(jnp.int32)


def rotate(images: jax.Array, degrees: jax.Array) -> jax.Array:
    """Rotate images [B, H, W, C] counter-clockwise by degrees [B] about their centres,
    nearest neighbour, same size, 0 outside (torchvision `rotate` on tensors)."""
    _, h, w, _ = images.shape
    rows, cols = _rotation_source(h, w, degrees)
    return _gather(images, rows, cols)


def random_flip_rotate(key: jax.Array, images: jax.Array, max_degrees: float = 20.0) -> jax.Array:
    """torchvision RandomHorizontalFlip(0.5) then RandomRotation(max_degrees), per image:
    the angle is uniform in [-max_degrees, max_degrees]. images [B, H, W, C] -> same."""
    flip_key, angle_key = jax.random.split(key)
    b, h, w, _ = images.shape
    flips = jax.random.bernoulli(flip_key, 0.5, (b,))
    degrees = jax.random.uniform(angle_key, (b,), jnp.float32, -max_degrees, max_degrees)
    rows, cols = _rotation_source(h, w, degrees)
    # The rotation reads the flipped image: flipped[r, c] = image[r, W - 1 - c] (and a
    # column is outside the image exactly when its mirror is).
    cols = jnp.where(flips[:, None, None], w - 1 - cols, cols)
    return _gather(images, rows, cols)


def no_augmentation(key: jax.Array, images: jax.Array) -> jax.Array:
    """The images unchanged (evaluation, or zoos trained without augmentation)."""
    del key
    return images


AUGMENTATIONS: dict[str, Callable[[jax.Array, jax.Array], jax.Array]] = {
    "crop_flip": random_crop_flip,
    "flip_rotate": random_flip_rotate,
    "none": no_augmentation,
}
