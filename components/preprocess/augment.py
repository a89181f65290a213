"""Augmentation: random affine warps and colour changes, as a tf.data step.

Used twice: preprocess materialises seeded copies for small data sets (`augment`), and the
training reader applies the same transforms on the fly to streamed shards (`augment_batch`).
Each copy gets one combined affine warp (rotation, zoom, translation, optional flips), so it
is resampled once; the uncovered border is filled with 0, the black background of the digits.
Brightness and contrast follow, as in a tf_keras layer stack.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from edgetune.components.preprocess.core import AugmentPolicy

_BATCH = 256


def augment(images: np.ndarray, policy: AugmentPolicy, seed: int) -> np.ndarray:
    """Returns `policy.copies` augmented copies of each image, image-major.

    Args:
        images: uint8 (N, H, W, C).
        policy: the ranges of the random transforms.
        seed: the stateless seed; equal seeds give byte-identical copies.

    Returns:
        uint8 (N * copies, H, W, C); copies of image i are rows i*copies .. i*copies+copies-1.
    """
    n_out = len(images) * policy.copies
    if n_out == 0:
        return np.zeros((0, *images.shape[1:]), np.uint8)
    import tensorflow as tf  # heavy: imported only when there is work to do

    height, width = images.shape[1:3]
    sources = np.repeat(images, policy.copies, axis=0)
    # One draw for every copy, fixed by the seed alone: no hidden RNG state, no thread order.
    draws = tf.random.stateless_uniform([n_out, 8], seed=[seed, 0], minval=-1.0, maxval=1.0)
    params = augment_params(tf, draws, policy, height, width)
    dataset = (
        tf.data.Dataset.from_tensor_slices((sources, params))
        .batch(_BATCH)
        .map(
            lambda x, p: apply_warps(tf, x, p, height, width),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )
    )
    return np.concatenate([batch.numpy() for batch in dataset])


def augment_params(tf: Any, u: Any, policy: AugmentPolicy, height: int, width: int) -> Any:
    """Turns uniform draws in [-1, 1) into per-copy warp and colour parameters."""

    def flip(draw: Any, enabled: bool) -> Any:
        return tf.where(draw < 0, -1.0, 1.0) if enabled else tf.ones_like(draw)

    return tf.stack(
        [
            u[:, 0] * math.radians(policy.rotate_degrees),
            1.0 + u[:, 1] * policy.zoom,
            u[:, 2] * policy.translate * width,
            u[:, 3] * policy.translate * height,
            flip(u[:, 4], policy.flip_horizontal),
            flip(u[:, 5], policy.flip_vertical),
            u[:, 6] * policy.brightness * 255.0,
            1.0 + u[:, 7] * policy.contrast,
        ],
        axis=1,
    )


def apply_warps(tf: Any, images: Any, params: Any, height: int, width: int) -> Any:
    """Warps each image by its row of `params`, then shifts its contrast and brightness."""
    warped = tf.raw_ops.ImageProjectiveTransformV3(
        images=tf.cast(images, tf.float32),
        transforms=_inverse_warps(tf, params, height, width),
        output_shape=[height, width],
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode="CONSTANT",
    )
    # Colour after the warp, so the uncovered border shifts with the rest of the background.
    # Rounding first makes the mean a sum of whole numbers: exact in float64 in any order, so
    # the bytes do not depend on how many threads the reduction used.
    x = tf.round(warped)
    mean = tf.cast(tf.reduce_mean(tf.cast(x, tf.float64), axis=[1, 2], keepdims=True), tf.float32)
    contrast, brightness = params[:, 7, None, None, None], params[:, 6, None, None, None]
    x = (x - mean) * contrast + mean + brightness
    return tf.cast(tf.round(tf.clip_by_value(x, 0.0, 255.0)), tf.uint8)


def _inverse_warps(tf: Any, params: Any, height: int, width: int) -> Any:
    """Rows [a0 a1 a2 b0 b1 b2 0 0] mapping each output pixel back to where it is sampled.

    The forward warp about the centre c is `out = c + t + R(angle) S(scale * flip) (in - c)`;
    the op wants its inverse, `in = c + S^-1 R(-angle) (out - c - t)`.
    """
    angle, scale, tx, ty, fx, fy = (params[:, i] for i in range(6))
    cos, sin = tf.cos(angle), tf.sin(angle)
    a0, a1 = cos / (scale * fx), sin / (scale * fx)
    b0, b1 = -sin / (scale * fy), cos / (scale * fy)
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    ox, oy = cx + tx, cy + ty
    zeros = tf.zeros_like(angle)
    rows = [a0, a1, cx - a0 * ox - a1 * oy, b0, b1, cy - b0 * ox - b1 * oy, zeros, zeros]
    return tf.stack(rows, axis=1)


def augment_batch(tf: Any, images: Any, policy: AugmentPolicy, seed: Any) -> Any:
    """Augmented versions of a batch of uint8 images (B, H, W, C), for the on-the-fly reader.

    `seed` is a stateless seed pair (a tensor), different for every batch; the height and
    width must be static.
    """
    height, width = images.shape[1], images.shape[2]
    draws = tf.random.stateless_uniform([tf.shape(images)[0], 8], seed, -1.0, 1.0)
    params = augment_params(tf, draws, policy, height, width)
    return apply_warps(tf, images, params, height, width)
