"""The README's sentence-embedding table: SimCSE, Sentence-BERT, Quick-Thoughts, CERT and
IS-BERT on the embedded text.

Runs the README commands in fresh processes, timing each end to end: SimCSE at random init
(``--config.total_steps=0``), then each method's default. Writes
``benchmarks/sentence_table.json`` and, with ``--readme``, the table between the
``<!-- sentence-table -->`` markers of README.md.

    python benchmarks/sentence_table.py --readme
"""

import argparse
import json
import os

from digits_table import REPO, publish, run_rows

MARKERS = ("<!-- sentence-table -->", "<!-- /sentence-table -->")
RUNS = (("random init (simcse tower, 0 steps)", "simcse", "init", ["--config.total_steps=0"]),
        ("simcse (dropout, word dropout, token cutoff)", "simcse", "simcse", []),
        ("simcse (dropout only, as the paper)", "simcse", "simcse_dropout",
         ["--config.augment.word_dropout=0", "--config.method.cutoff="]),
        ("simcse:sup (gloss, example, sibling)", "simcse:sup", "simcse_sup", []),
        ("sbert (mnrl)", "sbert", "sbert", []),
        ("sbert (triplet)", "sbert", "sbert_triplet", ["--config.method.objective=triplet"]),
        ("quick_thoughts (pydoc prose)", "quick_thoughts", "quick_thoughts", []),
        ("cert (MoCo, gloss / example pairs)", "cert", "cert", []),
        ("isbert", "isbert", "isbert", []))


def row(record):
    value = lambda key: f"{record[key]:.3f}" if key in record else "-"
    return (f"| {record['name']} | {value('sts_spearman')} | {value('sts_spearman_whitened')} "
            f"| {value('sts_spearman_flow')} | {value('knn_top1')} | {value('linear_top1')} "
            f"| {value('text_r@1')} / {value('text_r@10')} | {record['step']} "
            f"| {record['seconds']:.0f} s | {record['date']} |")


def table(records):
    header = ("| run | STS Spearman (taxonomy proxy) | whitened | BERT-flow | kNN top-1 "
              "(45 categories) | linear top-1 | definition -> word R@1 / R@10 | steps "
              "| time, 2-core CPU | measured |\n|---|---|---|---|---|---|---|---|---|---|")
    return "\n".join([header, *(row(r) for r in records)])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default=os.path.join(REPO, "runs", "sentence_table"))
    parser.add_argument("--json", default=os.path.join(REPO, "benchmarks",
                                                       "sentence_table.json"))
    parser.add_argument("--readme", action="store_true", help="rewrite the README table")
    parser.add_argument("--only", default="", help="comma-separated run folders to (re)run")
    args = parser.parse_args()
    previous = None
    if args.only and os.path.exists(args.json):  # rerun these folders, keep the other rows
        with open(args.json) as f:
            previous = {r["folder"]: r for r in json.load(f)["rows"]
                        if r["folder"] not in args.only.split(",")}
    records = run_rows(RUNS, args.workdir, row, previous)
    publish(table(records), records, args.json, args.readme, MARKERS)


if __name__ == "__main__":
    main()
