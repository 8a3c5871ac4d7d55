"""Metrics: a progress line on stdout, ``metrics.jsonl`` and TensorBoard events in the workdir.

Only process 0 writes. Each logging step appends one JSON object ``{"step": ..., scalar: ...}``.
"""

import json
import os
import sys
import time

import jax
import numpy as np
import tensorflow as tf


def format_duration(seconds):
    seconds = int(max(seconds, 0))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{seconds:02d}s" if hours else f"{minutes}m{seconds:02d}s"


class MetricWriter:
    def __init__(self, workdir, total_steps, images_per_step, unit="images"):
        self.enabled = jax.process_index() == 0
        self.total_steps = total_steps
        self.images_per_step = images_per_step
        self.rate_name = f"{unit}_per_s"  # throughput: images, or examples of a text run
        self._last = None
        if self.enabled:
            os.makedirs(workdir, exist_ok=True)
            self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a")
            self._tb = tf.summary.create_file_writer(os.path.join(workdir, "tensorboard"))

    def write(self, step, scalars):
        if not self.enabled:
            return
        scalars = {k: float(np.asarray(v)) for k, v in scalars.items()}
        self._jsonl.write(json.dumps({"step": int(step), **scalars}) + "\n")
        self._jsonl.flush()
        with self._tb.as_default(step=int(step)):
            for name, value in scalars.items():
                tf.summary.scalar(name, value)
        self._tb.flush()

    def log_train(self, step, scalars):
        """Writes the train scalars plus throughput, and prints the progress line."""
        now = time.time()
        if self._last is not None and step > self._last[0]:
            steps_per_s = (step - self._last[0]) / (now - self._last[1])
            scalars = dict(scalars, **{self.rate_name: steps_per_s * self.images_per_step})
            eta = format_duration((self.total_steps - step) / steps_per_s)
        else:
            eta = "?"
        self._last = (step, now)
        self.write(step, scalars)
        parts = [f"step {step}/{self.total_steps}"]
        parts += [f"{k} {np.asarray(v):.4g}" for k, v in scalars.items()]
        self.print(" | ".join(parts) + f" | ETA {eta}")

    def reset_timer(self):
        """Excludes the time of evaluation or checkpointing from the throughput."""
        if self._last is not None:
            self._last = (self._last[0], time.time())

    def print(self, message):
        if self.enabled:
            print(message, flush=True)
            sys.stdout.flush()

    def close(self):
        if self.enabled:
            self._jsonl.close()
            self._tb.close()
