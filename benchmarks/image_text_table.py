"""The README's image-text table: CLIP, SigLIP and LiT on the embedded glyphs.

Runs the README commands in fresh processes, timing each end to end: CLIP at random init
(``--config.total_steps=0``), CLIP, SigLIP, and LiT on the encoder of the CLIP run
(``--config.model.init_from``). Writes ``benchmarks/image_text_table.json`` and, with
``--readme``, the table between the ``<!-- image-text-table -->`` markers of README.md.

    python benchmarks/image_text_table.py --readme
"""

import argparse
import os

from digits_table import REPO, publish, run_rows

MARKERS = ("<!-- image-text-table -->", "<!-- /image-text-table -->")


def recalls(record, prefix):
    return " / ".join(f"{record[f'{prefix}_r{k}']:.3f}" for k in (1, 5, 10))


def row(record):
    return (f"| {record['name']} | {recalls(record, 'i2t')} | {recalls(record, 't2i')} "
            f"| {recalls(record, 'novel_i2t')} | {recalls(record, 'novel_t2i')} "
            f"| {record['zeroshot_top1']:.3f} ({record['zeroshot_majority']:.3f}) "
            f"| {record['knn_top1']:.3f} | {record['linear_top1']:.3f} | {record['step']} "
            f"| {record['seconds']:.0f} s | {record['date']} |")


def table(records):
    header = ("| run | image->text R@1 / 5 / 10 (held-out face) | text->image R@1 / 5 / 10 "
              "| image->text, novel code points | text->image, novel | zero-shot top-1 "
              "by script (majority) | kNN top-1 | linear top-1 | steps | time, 2-core CPU "
              "| measured |\n|---|---|---|---|---|---|---|---|---|---|---|")
    return "\n".join([header, *(row(r) for r in records)])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default=os.path.join(REPO, "runs", "image_text_table"))
    parser.add_argument("--json",
                        default=os.path.join(REPO, "benchmarks", "image_text_table.json"))
    parser.add_argument("--readme", action="store_true", help="rewrite the README table")
    args = parser.parse_args()

    clip_dir = os.path.join(args.workdir, "clip")
    runs = [("random init (CLIP towers, 0 steps)", "clip", "init", ["--config.total_steps=0"]),
            ("clip", "clip", "clip", []),
            ("siglip", "siglip", "siglip", []),
            ("lit (the clip run's encoder, locked)", "lit", "lit",
             [f"--config.model.init_from={clip_dir}"])]
    records = run_rows(runs, args.workdir, row)
    publish(table(records), records, args.json, args.readme, MARKERS)


if __name__ == "__main__":
    main()
