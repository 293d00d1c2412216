"""Train augmentations: torchvision's crop/flip/rotation semantics and their random draws."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from jaxzoo.training.augment import AUGMENTATIONS, crop_flip, random_crop_flip, random_flip_rotate, rotate


def coordinate_images(n: int, h: int, w: int) -> np.ndarray:
    """n copies of an image whose channels are (row + 1, col + 1): 0 only where padded."""
    rows, cols = np.meshgrid(np.arange(h) + 1, np.arange(w) + 1, indexing="ij")
    return np.broadcast_to(np.stack([rows, cols], -1), (n, h, w, 2)).astype(np.uint8)


def per_image_constant(values: np.ndarray, valid: np.ndarray):
    """-> (the value at an image's first valid pixel, whether all its valid pixels agree)."""
    n = len(values)
    first = values.reshape(n, -1)[np.arange(n), valid.reshape(n, -1).argmax(axis=1)]
    agree = np.all(~valid | (values == first[:, None, None]), axis=(1, 2))
    return first, agree


def recover_crop_flip(out: np.ndarray, padding: int):
    """Per image (top, left, flipped) of a crop_flip of `coordinate_images`; asserts that
    every image is a pure shift (+ mirror) of the original with zeros elsewhere."""
    n, h, w, _ = out.shape
    y = np.arange(h)[None, :, None]
    x = np.arange(w)[None, None, :]
    valid = out[..., 0] > 0
    assert np.array_equal(valid, out[..., 1] > 0)
    assert valid.sum(axis=(1, 2)).min() >= (h - padding) * (w - padding)
    src_y = out[..., 0].astype(int) - 1
    src_x = out[..., 1].astype(int) - 1
    top, top_const = per_image_constant(src_y - y, valid)
    assert top_const.all()  # rows are shifted as a block
    plain, plain_const = per_image_constant(src_x - x, valid)  # constant if not mirrored
    mirror, mirror_const = per_image_constant(src_x + x, valid)  # constant if mirrored
    assert np.all(plain_const ^ mirror_const)  # exactly one interpretation holds
    left = np.where(plain_const, plain, mirror - (w - 1))
    return top + padding, left + padding, mirror_const


def test_random_crop_flip_statistics():
    n, padding = 4096, 4
    images = jnp.asarray(coordinate_images(n, 8, 8))
    fn = jax.jit(random_crop_flip)
    out = np.asarray(fn(jax.random.key(0), images))
    assert out.dtype == np.uint8 and out.shape == images.shape
    top, left, flipped = recover_crop_flip(out, padding)
    bins = 2 * padding + 1
    for offsets in (top, left):
        counts = np.bincount(offsets, minlength=bins)
        assert len(counts) == bins and counts.min() > 0  # exactly 0..8, all present
        expected = n / bins
        chi2 = np.sum((counts - expected) ** 2 / expected)
        assert chi2 < 31.8  # chi-square, 8 dof, p = 1e-4
    assert abs(flipped.mean() - 0.5) < 4 * np.sqrt(0.25 / n)
    # Independence: between the draws of an image and between neighbouring images.
    draws = {"top": top, "left": left, "flip": flipped.astype(float)}
    series = list(draws.values()) + [top[1:], left[1:], flipped[1:].astype(float)]
    names = list(draws) + ["top+1", "left+1", "flip+1"]
    limit = 4 / np.sqrt(n)
    for i in range(len(series)):
        for j in range(i + 1, len(series)):
            a, b = series[i], series[j]
            m = min(len(a), len(b))
            corr = np.corrcoef(a[:m], b[:m])[0, 1]
            assert abs(corr) < limit, (names[i], names[j], corr)
    # Same key, same draw; another key, another draw.
    assert np.array_equal(out, np.asarray(fn(jax.random.key(0), images)))
    other = recover_crop_flip(np.asarray(fn(jax.random.key(1), images)), padding)
    assert np.mean(other[0] == top) < 0.2 and np.mean(other[2] == flipped) < 0.6


def test_crop_flip_equals_numpy_pad_and_slice():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (6, 10, 10, 3), dtype=np.uint8)
    offsets = np.array([[0, 0], [8, 8], [3, 5], [4, 4], [8, 0], [1, 7]], np.int32)
    flips = np.array([False, True, True, False, False, True])
    got = jax.jit(crop_flip)(jnp.asarray(images), jnp.asarray(offsets), jnp.asarray(flips))
    got = np.asarray(got)
    padded = np.pad(images, ((0, 0), (4, 4), (4, 4), (0, 0)))
    for b in range(6):
        top, left = offsets[b]
        want = padded[b, top : top + 10, left : left + 10]
        if flips[b]:
            want = want[:, ::-1]
        np.testing.assert_array_equal(got[b], want)
    # No offset, no flip: the identity.
    assert np.array_equal(got[3], images[3])


def test_random_crop_flip_keeps_only_original_pixels_and_zeros():
    rng = np.random.default_rng(1)
    # Distinct nonzero values per image, so a pixel's value says where it came from.
    images = np.stack([rng.permutation(np.arange(1, 256))[:64].reshape(8, 8, 1) for _ in range(64)])
    out = np.asarray(random_crop_flip(jax.random.key(3), jnp.asarray(images.astype(np.uint8))))
    for b in range(64):
        values = out[b][out[b] > 0]
        assert set(values.tolist()) <= set(images[b].ravel().tolist())
        assert len(np.unique(values)) == len(values)  # no pixel duplicated
        assert len(values) >= 16


def test_rotate_zero_is_identity_and_quarter_turns_are_exact():
    rng = np.random.default_rng(2)
    square = rng.integers(1, 256, (3, 9, 9, 2), dtype=np.uint8)
    even = rng.integers(1, 256, (3, 8, 8, 1), dtype=np.uint8)
    wide = rng.integers(1, 256, (2, 6, 10, 1), dtype=np.uint8)
    rot = jax.jit(rotate)
    for imgs in (square, even, wide):
        zeros = jnp.zeros(len(imgs))
        np.testing.assert_array_equal(np.asarray(rot(jnp.asarray(imgs), zeros)), imgs)
        half = np.asarray(rot(jnp.asarray(imgs), zeros + 180.0))
        np.testing.assert_array_equal(half, imgs[:, ::-1, ::-1])
    for imgs in (square, even):
        quarter = np.asarray(rot(jnp.asarray(imgs), jnp.full(len(imgs), 90.0)))
        np.testing.assert_array_equal(quarter, np.rot90(imgs, k=1, axes=(1, 2)))
        # Counter-clockwise, as PIL's (and torchvision's) positive angles.
        pil = np.asarray(Image.fromarray(imgs[0, :, :, 0]).rotate(90, resample=Image.NEAREST))
        np.testing.assert_array_equal(quarter[0, :, :, 0], pil)
        minus = np.asarray(rot(jnp.asarray(imgs), jnp.full(len(imgs), -90.0)))
        np.testing.assert_array_equal(minus, np.rot90(imgs, k=-1, axes=(1, 2)))


@pytest.mark.parametrize("size, degrees", [(16, 17.0), (16, -11.0), (15, 8.5), (32, 19.0)])
def test_rotate_agrees_with_pil_nearest(size, degrees):
    rng = np.random.default_rng(size)
    img = rng.integers(1, 256, (size, size), dtype=np.uint8)
    want = np.asarray(Image.fromarray(img).rotate(degrees, resample=Image.NEAREST, fillcolor=0))
    got = np.asarray(rotate(jnp.asarray(img)[None, :, :, None], jnp.array([degrees])))[0, :, :, 0]
    assert (want == 0).any()  # the corners are filled
    # Up to rounding of source positions that land within float error of a half pixel.
    assert np.mean(got == want) >= 0.99


def test_rotate_agrees_with_torch_grid_sample():
    """torchvision rotates tensors with grid_sample(nearest, zeros, align_corners=False)."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    imgs = rng.integers(1, 256, (4, 24, 24, 3), dtype=np.uint8)
    degrees = np.array([17.0, -19.9, 3.3, 12.0])
    t = np.deg2rad(degrees)
    # Normalised output -> source coordinates; equal scales on both axes of a square image.
    theta = np.stack([np.stack([np.cos(t), -np.sin(t), 0 * t], -1), np.stack([np.sin(t), np.cos(t), 0 * t], -1)], 1)
    F = torch.nn.functional
    grid = F.affine_grid(torch.tensor(theta, dtype=torch.float32), (4, 3, 24, 24), align_corners=False)
    x = torch.tensor(imgs, dtype=torch.float32).permute(0, 3, 1, 2)
    want = F.grid_sample(x, grid, mode="nearest", padding_mode="zeros", align_corners=False)
    want = want.permute(0, 2, 3, 1).numpy().astype(np.uint8)
    got = np.asarray(rotate(jnp.asarray(imgs), jnp.asarray(degrees, jnp.float32)))
    assert np.mean(got == want) >= 0.999


def estimate_flip_and_angle(out: np.ndarray):
    """Per image of random_flip_rotate(coordinate_images): (flipped, angle in degrees), from
    a least-squares fit of source position = A @ output position (relative to the centre)."""
    n, h, w, _ = out.shape
    c = np.array([(w - 1) / 2, (h - 1) / 2])
    y, x = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    dst = np.stack([x, y], -1).reshape(-1, 2) - c  # [P, 2] (x, y)
    src = np.stack([out[..., 1], out[..., 0]], -1).reshape(n, -1, 2).astype(float) - 1 - c
    valid = (out[..., 0] > 0).reshape(n, -1, 1)
    ata = np.einsum("pi,npk,pj->nij", dst, valid, dst)
    atb = np.einsum("pi,npk,npj->nij", dst, valid, src)
    a = np.transpose(np.linalg.solve(ata, atb), (0, 2, 1))  # src = a @ dst
    flipped = np.linalg.det(a) < 0
    a = np.where(flipped[:, None, None], np.diag([-1.0, 1.0]) @ a, a)  # undo the mirror
    return flipped, np.rad2deg(np.arctan2(a[:, 1, 0], a[:, 0, 0]))


def test_angle_estimator_on_known_rotations():
    degrees = np.array([-20.0, -7.5, 0.0, 4.0, 13.0, 20.0], np.float32)
    out = np.asarray(rotate(jnp.asarray(coordinate_images(6, 33, 33)), jnp.asarray(degrees)))
    flipped, est = estimate_flip_and_angle(out)
    assert not flipped.any()
    np.testing.assert_allclose(est, degrees, atol=0.3)
    mirrored = out[:, :, ::-1]  # a mirror image is detected as such
    assert estimate_flip_and_angle(mirrored)[0].all()


def test_random_flip_rotate_statistics():
    n = 1024
    images = jnp.asarray(coordinate_images(n, 33, 33))
    fn = jax.jit(random_flip_rotate)
    out = np.asarray(fn(jax.random.key(7), images))
    assert out.dtype == np.uint8 and out.shape == images.shape
    flipped, degrees = estimate_flip_and_angle(out)
    assert abs(flipped.mean() - 0.5) < 4 * np.sqrt(0.25 / n)
    assert np.all(np.abs(degrees) <= 20.3)
    assert np.abs(degrees).max() > 19.0
    assert abs(degrees.mean()) < 4 * 40 / np.sqrt(12 * n)
    counts = np.histogram(degrees, bins=8, range=(-20.3, 20.3))[0]
    assert counts.min() > 0.6 * n / 8  # roughly uniform
    assert abs(np.corrcoef(flipped, degrees)[0, 1]) < 4 / np.sqrt(n)
    assert np.array_equal(out, np.asarray(fn(jax.random.key(7), images)))
    assert not np.array_equal(out, np.asarray(fn(jax.random.key(8), images)))


def test_registry_signature_and_vmap_over_models():
    images = jnp.asarray(coordinate_images(5, 8, 8))
    keys = jax.random.split(jax.random.key(0), 3)
    stacked = jnp.stack([images] * 3)  # [M, B, H, W, C]
    assert set(AUGMENTATIONS) == {"crop_flip", "flip_rotate", "none"}
    assert AUGMENTATIONS["none"](keys[0], images) is images
    for name, fn in AUGMENTATIONS.items():
        batched = np.asarray(jax.jit(jax.vmap(fn))(keys, stacked))
        assert batched.shape == stacked.shape and batched.dtype == np.uint8
        for m in range(3):
            np.testing.assert_array_equal(batched[m], np.asarray(fn(keys[m], images)))
        if name != "none":
            assert not np.array_equal(batched[0], batched[1])  # per-model draws
