"""SavedModels of the production team's shape, built with TensorFlow in the tests: input
``images`` (-1, 256, 192, 3) float, output ``coords`` (-1, K, 2) normalised x, y, whose heatmap
to coordinates post-processing sits in the name scope ``coords`` (the part that stays on the CPU
when compiled for Inferentia).

``random``: a small convolution net with random weights (plumbing only). ``brightest``: every
keypoint at the brightest spot of the picture (a soft-argmax of the brightness), so a test can
draw a white dot and know where each keypoint must land.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

INPUT = "images"
OUTPUT = "coords"
SHAPE = (256, 192)


def build(
    path: Path,
    kind: str = "random",
    keypoints: int = 17,
    batch: int | None = None,
    shape: tuple[int | None, int | None] = SHAPE,
) -> Path:
    """Save a pose SavedModel at ``path``; ``batch`` fixes the batch dimension (else -1);
    ``shape`` (None, None) leaves height and width open (any size runs)."""
    import tensorflow as tf

    height, width = shape
    module = _Random(tf, keypoints) if kind == "random" else _Brightest(tf, keypoints)
    spec = tf.TensorSpec((batch, height, width, 3), tf.float32, name=INPUT)
    serve = tf.function(lambda images: {OUTPUT: module(images)}, input_signature=[spec])
    tf.saved_model.save(module, str(path), signatures={"serving_default": serve})
    return path


def build_v1(path: Path, keypoints: int = 17, shape: tuple[int | None, int | None] = SHAPE) -> Path:
    """The ``brightest`` model exported the TensorFlow 1 way (a graph, a session and
    ``simple_save``): its ops, ``coords/...`` among them, sit in the SavedModel's main graph, the
    graph tensorflow-neuron 1.15's ``saved_model.compile`` works on."""
    import tensorflow as tf

    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        images = v1.placeholder(tf.float32, (None, *shape, 3), name=INPUT)
        brightness = tf.reduce_mean(images, axis=-1, keepdims=True)
        coords = soft_argmax(tf, tf.tile(brightness * 200.0, [1, 1, 1, keypoints]))
        with v1.Session(graph=graph) as session:
            v1.saved_model.simple_save(session, str(path), {INPUT: images}, {OUTPUT: coords})
    return path


def soft_argmax(tf: Any, heatmaps: Any) -> Any:
    """(N, H, W, K) heatmaps to (N, K, 2) normalised x, y (expected position under softmax)."""
    with tf.name_scope("coords"):
        shape = tf.shape(heatmaps)
        h, w, k = shape[1], shape[2], shape[3]
        flat = tf.reshape(tf.transpose(heatmaps, [0, 3, 1, 2]), [-1, k, h * w])
        prob = tf.reshape(tf.nn.softmax(flat, axis=-1), [-1, k, h, w])
        xs = (tf.cast(tf.range(w), tf.float32) + 0.5) / tf.cast(w, tf.float32)
        ys = (tf.cast(tf.range(h), tf.float32) + 0.5) / tf.cast(h, tf.float32)
        x = tf.reduce_sum(tf.reduce_sum(prob, axis=2) * xs, axis=-1)
        y = tf.reduce_sum(tf.reduce_sum(prob, axis=3) * ys, axis=-1)
        return tf.stack([x, y], axis=-1, name="coords")


class _Random:
    def __new__(cls, tf: Any, keypoints: int) -> Any:
        rng = np.random.default_rng(7)

        class Net(tf.Module):
            def __init__(self) -> None:
                super().__init__(name="pose")
                self.w1 = tf.Variable(rng.normal(0, 0.1, (3, 3, 3, 16)).astype(np.float32))
                self.w2 = tf.Variable(rng.normal(0, 0.1, (3, 3, 16, keypoints)).astype(np.float32))

            def __call__(self, images: Any) -> Any:
                x = tf.nn.relu(tf.nn.conv2d(images, self.w1, 2, "SAME"))
                heat = tf.nn.conv2d(x, self.w2, 2, "SAME")  # (N, H/4, W/4, K)
                return soft_argmax(tf, heat)

        return Net()


class _Brightest:
    def __new__(cls, tf: Any, keypoints: int) -> Any:
        class Net(tf.Module):
            def __init__(self) -> None:
                super().__init__(name="pose")
                self.sharpness = tf.Variable(200.0)

            def __call__(self, images: Any) -> Any:
                brightness = tf.reduce_mean(images, axis=-1, keepdims=True)  # input in 0..1
                heat = tf.tile(brightness * self.sharpness, [1, 1, 1, keypoints])
                return soft_argmax(tf, heat)

        return Net()


def spec_text(
    name: str, path: str, runtime: str = "tensorflow", keypoints: str = '"coco"', extra: str = ""
) -> str:
    """A model spec for a SavedModel built here (``extra``: more lines for the stage table)."""
    return f"""name = "{name}"
runtime = "{runtime}"
keypoints = {keypoints}

[[stages]]
name = "pose"
kind = "keypoints"
path = "{path}"
input = "{INPUT}"
shape = [-1, {SHAPE[0]}, {SHAPE[1]}, 3]
outputs = ["{OUTPUT}"]
{extra}
"""
