"""Views/s of the host tf.data pipeline (cl_jax.data), and how fast a train step it can feed.

    python benchmarks/pipeline.py                  # in-memory 32 px and JPEG folder -> 224 px
    python benchmarks/pipeline.py --cases=jpeg --num_jpegs=2048 --batches=16
    python benchmarks/pipeline.py --tiny           # seconds: checks that it runs

Two cases, each with SimCLR's and BYOL's two-view augmentation from their config files:

- ``memory``: ``--num_images`` synthetic 32x32x3 uint8 images held in memory
  (``sources.in_memory_split``, as CIFAR is with ``cache_in_memory``), views of the
  ``cifar10`` preset (32 px crops, jitter, grayscale; BYOL's solarize).
- ``jpeg``: ``--num_jpegs`` JPEGs of 256x320 (smooth random colour fields plus noise,
  quality 90) written to a temporary folder and read back with ``sources.folder_split`` —
  read, decode, random-resized-crop to 224, flip, jitter, grayscale, blur, solarize
  (the ``imagenet`` preset's views). ImageNet's images average about 400x350 px, so a real
  ImageNet folder decodes somewhat slower per image than this.

Each case is measured with the colour ops on the host (``colour=host``: the default
pipeline) and without them (``colour=device``: only decode, crop and flip on the host, as with
``--config.augment.colour_on_device=True``, where the train step does the rest): the
difference is what moving the colour ops to the accelerator saves the host.

``--policies`` adds rows with RandAugment (N=2, M=9, the paper's 14 ops) or AutoAugment's
ImageNet policy on every view (``augment.randaugment_num_ops`` / ``augment.autoaugment``),
colour ops on the host: their host cost per view.

The JPEG case is also measured with and without the fused decode-and-crop
(``fused_crop``: each view decodes only its crop window, ``tf.image.decode_and_crop_jpeg``;
off: every image is decoded whole, then cropped).

Each case runs the real ``pipeline.train_dataset`` (shuffled order, per-example seeds,
normalisation, batching, prefetch) and is iterated as NumPy batches, as the training loop
does. ``--warmup`` batches fill the pipeline, then ``--batches`` batches are timed. views/s
counts augmented views (two per example); per core divides by the CPU cores this process
may use. The demand column compares examples/s (views/s / 2) with a measured train step
(``images_per_s`` of the same method and resolution in ``--step_json``, written by
``benchmarks/compare_torch.py`` or ``benchmarks/train_step.py``, or ``--step_images_per_s``):
"feeds X images/s = Y x the step", and how many such cores the step would need.
"""

import argparse
import dataclasses
import json
import os
import platform
import shutil
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from cl_jax import config_lib, data  # noqa: E402
from cl_jax.data import pipeline, sources  # noqa: E402

METHODS = ("simclr", "byol")
# case -> (config preset whose views it uses, the train step resolution it feeds)
CASES = {"memory": ("cifar10", 32), "jpeg": ("imagenet", 224)}
STEP_JSONS = ("compare_torch.json", "train_step.json")


def host_cores():
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def write_jpegs(directory, count, height, width, seed=0):
    """``count`` JPEGs (quality 90) of smooth random colour fields plus pixel noise."""
    rng = np.random.RandomState(seed)
    for i in range(count):
        coarse = rng.uniform(0, 255, (1, height // 32, width // 32, 3)).astype(np.float32)
        image = tf.image.resize(coarse, (height, width), method="bicubic")[0].numpy()
        image = np.clip(image + rng.normal(0, 8, image.shape), 0, 255).astype(np.uint8)
        data = tf.io.encode_jpeg(image, quality=90).numpy()
        with open(os.path.join(directory, f"{i:05d}.jpg"), "wb") as f:
            f.write(data)


# ``--policies``: the augment fields of each (RandAugment N=2, M=9, the paper's ops).
POLICIES = {"none": {}, "randaugment": dict(randaugment_num_ops=2, randaugment_magnitude=9),
            "autoaugment": dict(autoaugment="imagenet")}


def views_of(method, preset, size=None, policy="none"):
    """The two view augmentations and the normalisation of ``method``'s ``preset``, with
    the augmentation ``policy`` of ``POLICIES``."""
    config = config_lib.load_config_file(os.path.join(REPO, "configs", f"{method}.py:{preset}"))
    config.augment.update(POLICIES[policy])
    views = data.view_augments(config.augment)[:2]
    if size:
        views = [dataclasses.replace(v, size=size) for v in views]
    return views, tuple(config.data.mean), tuple(config.data.std)


def measure(split, method, preset, batch, warmup, batches, view_size=None, colour="host",
            fused_crop=False, policy="none"):
    """Examples and views per second of ``train_dataset`` over ``split``."""
    views, mean, std = views_of(method, preset, view_size, policy)
    ds = pipeline.train_dataset(split, views, seed=0, global_batch=batch, mean=mean, std=std,
                                colour=colour == "host", fused_crop=fused_crop)
    iterator = ds.as_numpy_iterator()
    for _ in range(warmup):
        next(iterator)
    start = time.perf_counter()
    for _ in range(batches):
        out = next(iterator)
    seconds = time.perf_counter() - start
    num_views = len(out["views"])
    examples_per_s = batches * batch / seconds
    fused = fused_crop if split.read_encoded else None  # only image files are encoded
    return {"method": method, "colour": colour, "fused_crop": fused, "policy": policy,
            "image_size": int(out["views"][0].shape[1]),
            "batch": batch,
            "timed_batches": batches, "seconds": seconds, "num_views": num_views,
            "examples_per_s": examples_per_s, "views_per_s": examples_per_s * num_views,
            "views_per_s_per_core": examples_per_s * num_views / host_cores()}


def load_step_rows(path):
    """Rows with ``method``, ``image_size`` and cl_jax ``images_per_s`` from a benchmark JSON."""
    if not path or not os.path.exists(path):
        return [], None
    with open(path) as f:
        report = json.load(f)
    rows = [r for r in report.get("results", []) if "images_per_s" in r]
    return rows, f"{report.get('device', '?')} ({os.path.basename(path)})"


def default_step_json():
    for name in STEP_JSONS:
        path = os.path.join(REPO, "benchmarks", name)
        if os.path.exists(path):
            return path
    return None


def demand(row, step_rows, where, override, step_size):
    """How this pipeline compares with the measured train step of the same method and size."""
    if override:
        step = {"images_per_s": override, "model": "given", "image_size": step_size}
        where = "--step_images_per_s"
    else:
        matches = [r for r in step_rows
                   if r["method"] == row["method"] and r["image_size"] == step_size]
        if not matches:
            return None
        step = matches[0]
    ratio = row["examples_per_s"] / step["images_per_s"]
    cores_needed = step["images_per_s"] * row["num_views"] / row["views_per_s_per_core"]
    return {"step": f"{row['method']} {step['model']}@{step['image_size']} on {where}",
            "step_images_per_s": step["images_per_s"], "feeds_ratio": ratio,
            "cores_needed": cores_needed}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--num_images", type=int, default=8192, help="in-memory 32x32 images")
    parser.add_argument("--num_jpegs", type=int, default=512)
    parser.add_argument("--jpeg_size", default="256x320", help="HxW of the generated JPEGs")
    parser.add_argument("--jpeg_dir", default="",
                        help="read these JPEGs instead of generating them (kept)")
    parser.add_argument("--colour", default="host,device",
                        help="where the colour ops run: host, device (not timed here), or both")
    parser.add_argument("--fused_crop", default="on,off",
                        help="JPEG case: decode only the crop window (on), whole (off), or both")
    parser.add_argument("--policies", default="none,randaugment",
                        help=f"augmentation policies, of {', '.join(POLICIES)} (the policies "
                        "are measured with the colour ops on the host)")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--batches", type=int, default=8, help="timed batches per row")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--step_json", default=None,
                        help="train step benchmark JSON to compare with (default: "
                        "benchmarks/compare_torch.json or train_step.json if present)")
    parser.add_argument("--step_images_per_s", type=float, default=None,
                        help="compare with this train step speed instead")
    parser.add_argument("--tiny", action="store_true",
                        help="64 images, 16 JPEGs of 64x80 -> 56 px, batch 8, 2 batches")
    parser.add_argument("--json", default=os.path.join(REPO, "benchmarks", "pipeline.json"),
                        help="where to write the JSON report ('-': stdout)")
    args = parser.parse_args(argv)
    jpeg_view = None
    if args.tiny:
        args.num_images, args.num_jpegs, args.jpeg_size = 64, 16, "64x80"
        args.batch, args.batches, args.warmup, jpeg_view = 8, 2, 1, 56
    height, width = (int(x) for x in args.jpeg_size.split("x"))
    step_json = args.step_json if args.step_json is not None else default_step_json()
    step_rows, where = load_step_rows(step_json)
    cases = args.cases.split(",")
    unknown = set(cases) - set(CASES)
    if unknown:
        raise SystemExit(f"--cases: unknown {sorted(unknown)}; choose from {', '.join(CASES)}")
    rows, temp_dir = [], None
    try:
        for case in cases:
            preset, step_size = CASES[case]
            if case == "memory":
                rng = np.random.RandomState(0)
                images = rng.randint(0, 256, (args.num_images, 32, 32, 3), dtype=np.uint8)
                split = sources.in_memory_split("synthetic32", images,
                                                np.zeros(args.num_images, np.int32), 0)
                source, view_size = f"{args.num_images} x 32x32 uint8 in memory", None
            else:
                directory = args.jpeg_dir
                if not directory:
                    temp_dir = directory = tempfile.mkdtemp(prefix="cl_jax_jpegs_")
                    write_jpegs(directory, args.num_jpegs, height, width)
                split = sources.folder_split(directory)
                source, view_size = f"{split.num_examples} JPEGs {height}x{width}", jpeg_view
            fused_modes = args.fused_crop.split(",") if case == "jpeg" else ["on"]
            runs = [(m, c, f, p) for m in args.methods.split(",") for c in args.colour.split(",")
                    for f in fused_modes for p in args.policies.split(",")
                    if p == "none" or (c == "host" and f == fused_modes[0])]
            for method, colour, fused, policy in runs:
                row = measure(split, method, preset, args.batch, args.warmup, args.batches,
                              view_size, colour, fused == "on", policy)
                row.update(case=case, source=source,
                           feeds=demand(row, step_rows, where, args.step_images_per_s,
                                        step_size))
                rows.append(row)
                feeds = row["feeds"]
                crop = {None: "", True: " fused crop", False: " whole decode"}[row["fused_crop"]]
                line = (f"{case:6s} {method:6s} {policy:11s} colour on {colour:6s}{crop} "
                        f"{row['image_size']:3d}px batch {args.batch:4d}"
                        f" | {row['views_per_s']:8.1f} views/s | "
                        f"{row['views_per_s_per_core']:7.1f} views/s/core")
                if feeds:
                    line += (f" | feeds {row['examples_per_s']:.1f} images/s = "
                             f"{feeds['feeds_ratio']:.2f} x {feeds['step']} "
                             f"({feeds['step_images_per_s']:.1f} images/s; "
                             f"{feeds['cores_needed']:.1f} such cores needed)")
                print(line, flush=True)
    finally:
        if temp_dir:
            shutil.rmtree(temp_dir, ignore_errors=True)
    report = {"date": time.strftime("%Y-%m-%d"), "host": platform.node(),
              "cores": host_cores(), "tensorflow": tf.__version__, "step_json": step_json,
              "results": rows}
    print()
    print("| case | source | method | policy | colour ops on | JPEG decode | view px | batch "
          "| views/s | views/s/core | feeds |")
    print("|---|---|---|---|---|---|---:|---:|---:|---:|---|")
    for r in rows:
        f = r["feeds"]
        feeds = (f"{r['examples_per_s']:.1f} img/s = {f['feeds_ratio']:.2f} x {f['step']}"
                 if f else "no measured step")
        decode = {None: "-", True: "crop window", False: "whole"}[r["fused_crop"]]
        print(f"| {r['case']} | {r['source']} | {r['method']} | {r['policy']} | {r['colour']} | "
              f"{decode} | "
              f"{r['image_size']} | "
              f"{r['batch']} | {r['views_per_s']:.1f} | {r['views_per_s_per_core']:.1f} | "
              f"{feeds} |")
    text = json.dumps(report, indent=2)
    if args.json == "-":
        print(text)
    else:
        with open(args.json, "w") as f:
            f.write(text)
        print(f"wrote {args.json}")
    return report


if __name__ == "__main__":
    main()
