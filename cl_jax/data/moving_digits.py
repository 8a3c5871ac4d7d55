"""Moving digits: short clips of the embedded 8x8 digits gliding across a blank canvas, the
embedded data of the time-based methods (CURL's frame stacks, TCN's clips).

Every digit of a split is one clip of ``clip_length`` frames on a ``canvas`` x ``canvas``
canvas: its top-left corner starts at a uniform position and moves with a constant speed,
uniform in ``speed`` pixels per frame, in a uniform direction, bouncing off the walls
(Srivastava et al. 2015's Moving MNIST, one digit, drawn at whole pixels). The trajectories
are a function of ``seed`` and the digit's row in scikit-learn's data set, so every machine
makes the same clips and a digit's clip is the same in every split it belongs to.

An example is ``frame_stack`` consecutive frames of a clip stacked on the channel axis, the
last ``frame_stack`` frames of every time step at which so many exist (CURL's observation;
``frame_stack = clip_length`` makes an example a whole clip, TCN's). ``cameras=2`` adds a
second, synchronised camera that sees the canvas transposed (rows and columns swapped); the
channels are then camera-major, ``[camera 0 frames..., camera 1 frames...]``. The label is
the digit; ``Split.targets`` has, per example, the digit's ``position`` in its last frame
(row and column of its top-left corner over ``canvas - 8``, in [0, 1]) and its ``velocity``
(pixels moved between the last two frames, row and column).
"""

import numpy as np
from sklearn.datasets import load_digits

from cl_jax.data.sources import DIGITS_SPLITS, DataError, digits_masks, in_memory_split

DIGIT_SIZE = 8


def trajectories(num_clips, clip_length, canvas, speed, seed):
    """Top-left corners (num_clips, clip_length, 2) in pixels (float), row then column, of
    digits bouncing inside ``[0, canvas - DIGIT_SIZE]``."""
    room = canvas - DIGIT_SIZE
    rng = np.random.RandomState(seed)
    start = rng.uniform(0, room, (num_clips, 2))
    angle = rng.uniform(0, 2 * np.pi, num_clips)
    magnitude = rng.uniform(speed[0], speed[1], num_clips)
    velocity = magnitude[:, None] * np.stack([np.sin(angle), np.cos(angle)], axis=1)
    position = np.empty((num_clips, clip_length, 2))
    position[:, 0] = start
    for t in range(1, clip_length):
        p = position[:, t - 1] + velocity
        over, under = p > room, p < 0
        p = np.where(over, 2 * room - p, np.where(under, -p, p))
        velocity = np.where(over | under, -velocity, velocity)
        position[:, t] = p
    return position


def render(digits, corners, canvas):
    """uint8 frames (N, T, canvas, canvas): digit ``n`` (8x8) pasted at ``corners[n, t]``
    (integer row and column)."""
    n, t = corners.shape[:2]
    frames = np.zeros((n, t, canvas, canvas), np.uint8)
    rows = corners[..., 0, None, None] + np.arange(DIGIT_SIZE)[:, None]  # (N, T, 8, 1)
    cols = corners[..., 1, None, None] + np.arange(DIGIT_SIZE)[None, :]  # (N, T, 1, 8)
    clip = np.arange(n)[:, None, None, None]
    step = np.arange(t)[None, :, None, None]
    frames[clip, step, rows, cols] = digits[:, None]
    return frames


def clips(split, canvas=20, clip_length=8, speed=(1.0, 2.0), seed=0, cameras=1):
    """(frames (N, cameras, T, canvas, canvas) uint8, labels (N,), corners (N, T, 2) int)
    of the clips of a digits split."""
    if split not in DIGITS_SPLITS:
        raise DataError(f"The moving digits have the digits' splits "
                        f"{', '.join(DIGITS_SPLITS)}, not {split!r}.")
    if canvas < DIGIT_SIZE:
        raise DataError(f"data.canvas_size={canvas} is smaller than a digit ({DIGIT_SIZE} "
                        "pixels); set it to 8 or more.")
    digits = load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)
    corners = np.round(trajectories(len(images), clip_length, canvas, speed, seed)).astype(int)
    keep = digits_masks()[split]
    frames = render(images[keep], corners[keep], canvas)
    views = [frames, np.swapaxes(frames, 2, 3)][:cameras]
    return np.stack(views, axis=1), digits.target[keep].astype(np.int32), corners[keep]


def moving_digits_split(split, canvas=20, clip_length=8, frame_stack=3, speed=(1.0, 2.0),
                        seed=0, cameras=1):
    """A random-access split of frame stacks (see the module docstring): images (N, canvas,
    canvas, cameras * frame_stack) uint8, labels the digits, ``targets`` position and
    velocity."""
    if not 1 <= frame_stack <= clip_length:
        raise DataError(f"data.frame_stack={frame_stack} must be between 1 and "
                        f"data.clip_length={clip_length}.")
    if cameras not in (1, 2):
        raise DataError(f"data.cameras={cameras}; the moving digits have 1 or 2 cameras.")
    frames, labels, corners = clips(split, canvas, clip_length, speed, seed, cameras)
    ends = np.arange(frame_stack - 1, clip_length)  # the last frame of each example
    window = ends[:, None] - np.arange(frame_stack - 1, -1, -1)  # (E, frame_stack)
    stacks = frames[:, :, window]  # (N, cameras, E, frame_stack, H, W)
    n, e = len(frames), len(ends)
    images = stacks.transpose(0, 2, 4, 5, 1, 3).reshape(n * e, canvas, canvas, -1)
    last = corners[:, ends].reshape(n * e, 2)
    previous = corners[:, np.maximum(ends - 1, 0)].reshape(n * e, 2)
    room = max(canvas - DIGIT_SIZE, 1)
    targets = {"position": (last / room).astype(np.float32),
               "velocity": (last - previous).astype(np.float32)}
    made = in_memory_split(f"moving_digits/{split}", images, np.repeat(labels, e),
                           num_classes=10)
    made.targets = targets
    made.provenance = dict(canvas=canvas, clip_length=clip_length, frame_stack=frame_stack,
                           speed=list(speed), seed=seed, cameras=cameras)
    return made
