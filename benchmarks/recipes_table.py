"""docs/recipes.md's tables: every preset's hyperparameters beside those of its source.

The "here" column is read from the configs (``get_config(preset)`` of ``cl_jax/configs``); the
"source" column is ````SOURCES````, written by hand from the paper section or
reference file each entry names (solo-learn yaml files, official repositories). Both columns
use the formats of the ``*_text`` helpers below, so a row whose strings differ is a deviation,
marked in the table and explained in the entry's notes. A field the source does not state (or
that was not checked) shows "—".

    python benchmarks/recipes_table.py          # print the tables
    python benchmarks/recipes_table.py --write  # replace them in docs/recipes.md

``--write`` replaces the text between ``<!-- recipes-table -->`` and
``<!-- /recipes-table -->``; tests/test_recipes.py fails while that text is stale.
"""

import argparse
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from cl_jax import config_lib  # noqa: E402

DOC = os.path.join(REPO, "docs", "recipes.md")
MARKERS = ("<!-- recipes-table -->", "<!-- /recipes-table -->")
# Method fields that tune memory or bookkeeping, not the recipe.
SKIPPED_METHOD_FIELDS = {"block_size", "kmeans_block_size", "num_examples"}


def num(x):
    """A number as the tables write it: 0.0001, 1e-6, 4.8, 256."""
    return f"{x:.6g}".replace("e-0", "e-").replace("e+0", "e+")


def value_text(key, value):
    if isinstance(value, (tuple, list)):
        if key.endswith("_dims"):
            return "-".join(num(v) for v in value) if value else "none"
        return "(" + ", ".join(value_text(key, v) for v in value) + ")"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float)):
        return num(value)
    return str(value)


def lr_text(base_lr, scaling, batch_size):
    """``0.3 x batch/256 = 4.8``, ``0.075 x sqrt(batch) = 1.2`` or ``0.03``."""
    if scaling == "linear":
        return f"{num(base_lr)} x batch/256 = {num(base_lr * batch_size / 256)}"
    if scaling == "sqrt":
        return f"{num(base_lr)} x sqrt(batch) = {num(base_lr * batch_size ** 0.5)}"
    return num(base_lr)


def optimizer_text(name, momentum=0.9, eta=1e-3, clip=False, nesterov=False, betas=None):
    if name == "lars":
        return f"LARS, momentum {num(momentum)}, eta {num(eta)}" + (", LARC clip" if clip else "")
    if name == "sgd":
        return f"SGD, momentum {num(momentum)}" + (", Nesterov" if nesterov else "")
    return f"{'AdamW' if name == 'adamw' else name.upper()}, betas ({num(betas[0])}, " \
           f"{num(betas[1])})"


def schedule_text(warmup_epochs, end_factor=0.0, warmup_steps=-1):
    """``10 warmup epochs from 0, cosine to 0.001 x peak``; ``warmup_steps`` >= 0 overrides."""
    end = "0" if end_factor == 0 else f"{num(end_factor)} x peak"
    if warmup_steps >= 0:
        warmup = f"{warmup_steps} warmup steps from 0, " if warmup_steps else "no warmup, "
    else:
        warmup = f"{num(warmup_epochs)} warmup epochs from 0, " if warmup_epochs else \
            "no warmup, "
    return f"{warmup}cosine to {end}"


def view_text(size, crop=(0.08, 1.0), flip=0.5, jitter=0.8, bcsh=(0.4, 0.4, 0.2, 0.1),
              gray=0.2, blur=0.0, solarize=0.0):
    """One view: ``224px crop (0.08, 1), flip 0.5, jitter 0.8 x (0.4, 0.4, 0.2, 0.1), ...``."""
    return (f"{size}px crop ({num(crop[0])}, {num(crop[1])}), flip {num(flip)}, jitter "
            f"{num(jitter)} x ({', '.join(num(v) for v in bcsh)}), gray {num(gray)}, blur "
            f"{num(blur)}, solarize {num(solarize)}")


def config_view_text(v):
    text = view_text(v.size, tuple(v.crop_scale), v.flip_prob, v.jitter_prob,
                     (v.brightness, v.contrast, v.saturation, v.hue), v.grayscale_prob,
                     v.blur_prob, v.solarize_prob)
    if tuple(v.crop_ratio) != (3 / 4, 4 / 3):
        text += f", aspect ({num(v.crop_ratio[0])}, {num(v.crop_ratio[1])})"
    if tuple(v.blur_sigma) != (0.1, 2.0):
        text += f", blur sigma ({num(v.blur_sigma[0])}, {num(v.blur_sigma[1])})"
    return text


def encoder_text(m):
    text = m.encoder
    if m.encoder.startswith("vit"):
        text += f", patch {m.patch_size}, {m.posemb} position embedding"
        if m.frozen_patch_embedding:
            text += ", frozen patch projection"
    if m.stem == "cifar" and not m.encoder.startswith("vit"):
        text += ", 3x3 stem without max-pool"
    if m.zero_init_residual:
        text += ", last BN of each block zero-init"
    return text


def probe_text(settings):
    length = (f"{num(settings.epochs)} epochs" if settings.epochs >= 0
              else f"{settings.steps} steps")
    return f"{length}, batch {settings.batch_size}"


def recipe_rows(config):
    """The table's fields of one config, in order: label -> text."""
    o = config.optim
    rows = {
        "encoder": encoder_text(config.model),
        "batch": str(config.batch_size),
        "epochs": num(config.num_epochs) if config.total_steps < 0 else
                  f"{config.total_steps} steps",
        "optimizer": optimizer_text(o.name, o.momentum, o.trust_coefficient, o.clip_lr,
                                    o.nesterov, (o.b1, o.b2)),
        "learning rate": lr_text(o.base_lr, o.lr_scaling, config.batch_size),
        "schedule": schedule_text(o.warmup_epochs, o.end_lr_factor, o.warmup_steps),
        "weight decay": f"{num(o.weight_decay)}, not on biases/norms",
    }
    if o.bias_lr_factor != 1.0:
        rows["biases/norms lr"] = f"{num(o.bias_lr_factor)} x"
    if o.constant_lr_modules:
        rows["constant-lr modules"] = ", ".join(o.constant_lr_modules)
    for key, value in flat_items(config.method):
        if key == "name" or key.split(".")[-1] in SKIPPED_METHOD_FIELDS or not \
                method_field_used(config, key):
            continue
        rows[f"method.{key}"] = value_text(key, value)
    a = config.augment
    views = [config_view_text(a.view1)]
    if a.num_global_views > 1:
        views.append(config_view_text(a.view2))
    if len(views) == 2 and views[0] == views[1]:
        rows["views (both)"] = views[0]
    else:
        for i, text in enumerate(views, 1):
            rows[f"view {i}" if len(views) > 1 else "view"] = text
    if a.num_local_views:
        rows["local views"] = f"{a.num_local_views} x {config_view_text(a.local)}"
    rows["linear probe"] = probe_text(config.evals.linear)
    return rows


def flat_items(group, prefix=""):
    """(dotted key, value) of a ConfigDict, nested groups flattened."""
    for key, value in group.items():
        if hasattr(value, "items"):
            yield from flat_items(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def method_field_used(config, key):
    """False for a loss's parameters when another loss is chosen, and MoCHi's when off."""
    m = config.method
    if m.name == "simclr":
        used = {"dclw": {"dclw_sigma"}, "debiased": {"tau_plus"},
                "hard_negative": {"tau_plus", "beta"}}.get(m.loss, set())
        return key not in {"tau_plus", "beta", "dclw_sigma"} or key in used
    if m.name == "mocov2" and key.startswith("mochi_"):
        return m.mochi
    return True


def group_rows(name, presets):
    """label -> "here" text for a group of presets ("stl10: a; folder: b" where they differ)."""
    module = config_lib.load_config_module(name)
    per_preset = {p: recipe_rows(module.get_config(p)) for p in presets}
    labels = list(dict.fromkeys(label for rows in per_preset.values() for label in rows))
    merged = {}
    for label in labels:
        texts = {p: rows.get(label, "—") for p, rows in per_preset.items()}
        if len(set(texts.values())) == 1:
            merged[label] = next(iter(texts.values()))
        else:
            merged[label] = "; ".join(f"{p}: {t}" for p, t in texts.items())
    return merged


def cell(text):
    return text.replace("|", "\\|")


def flag(mine, theirs):
    """"**≠**" where the source's value (its text before " — ") differs from ours, "≈" where
    the source marks its own value (a leading "≈ ") as an immaterial difference, else ""."""
    if theirs == "—" or theirs.startswith("— "):
        return ""
    if theirs.startswith("≈ "):
        return "≈"
    return "" if mine == theirs.split(" — ")[0] else "**≠**"


def source_cell(mine, theirs):
    """The source column: "same" (and any remark) where the values agree."""
    value, _, remark = theirs.partition(" — ")
    if theirs != "—" and not theirs.startswith("— ") and value == mine:
        return "same" + (f" — {remark}" if remark else "")
    return theirs


def render_group(name, presets, source):
    here = group_rows(name, presets)
    stated = source.get("values", {})
    lines = [f"**{', '.join(presets)}** — source: {source['ref']}", ""]
    if stated:
        lines += ["| field | here | source | |", "|---|---|---|---|"]
        for label in list(here) + [k for k in stated if k not in here]:
            mine, theirs = here.get(label, "—"), stated.get(label, "—")
            lines.append(f"| {label} | {cell(mine)} | {cell(source_cell(mine, theirs))} | "
                         f"{flag(mine, theirs)} |")
    else:
        lines += ["| field | here |", "|---|---|"]
        lines += [f"| {label} | {cell(mine)} |" for label, mine in here.items()]
    notes = source.get("notes", [])
    if notes:
        lines.append("")
        lines += [f"- {note}" for note in notes]
    return "\n".join(lines)


def preset_groups(presets):
    """``GROUPS`` that a config's presets fill, then each other preset on its own."""
    groups = [g for g in GROUPS if set(g) <= set(presets)]
    grouped = {p for g in groups for p in g}
    return groups + [(p,) for p in presets if p not in grouped]


def render():
    """The tables of every config with an entry in ``SOURCES``, in name order."""
    sections = []
    for name in sorted(SOURCES):
        parts = [f"### {name}"]
        for group in preset_groups(config_lib.load_config_module(name).PRESETS):
            source = DIGITS if group == ("digits",) else SOURCES.get(name, {}).get(group, MISSING)
            parts.append(render_group(name, group, source))
        sections.append("\n\n".join(parts))
    return "\n\n".join(sections) + "\n"



# ---------------------------------------------------------------------------------------------
# The sources. Each entry: the reference ("ref"), the values it states in the formats above
# ("values"; text after " — " is a remark, not compared), and notes on the deviations.

GROUPS = (("digits",), ("cifar10", "cifar100"), ("stl10", "folder"), ("imagenet",),
          ("imagenet_vit",))
DIGITS = dict(ref="none; tuned here for scikit-learn's 8x8 digits (the README's numbers). "
                  "Not to be changed without rerunning benchmarks/digits_table.py.")
MISSING = dict(ref="not written yet: add this preset's entry to SOURCES in "
                   "benchmarks/recipes_table.py")
CIFAR_R18 = "resnet18, 3x3 stem without max-pool"
SOLO_LARS = optimizer_text("lars", 0.9, 0.02, clip=True)
SOLO_SGD = optimizer_text("sgd", 0.9)
SOLO_SCHEDULE = "≈ 10 warmup epochs from 3e-5, cosine to 0"
SOLO_PROBE = "— an online linear classifier trained alongside (the number quoted)"
SOLO_IN100_BATCH = "256 — 128 per GPU on 2 GPUs"
SOLO_IN100_NOTE = ("stl10 runs the ImageNet-100 yaml at 96 px on STL-10's 100k unlabelled "
                   "images (probes on the 5k labelled ones); no published number for it.")


def wd_text(wd, all_params=False):
    return f"{num(wd)}, {'on all parameters' if all_params else 'not on biases/norms'}"


def sized(size, make):
    """``make(size)``; for the ImageNet-100 yamls (224 px) the stl10 / folder pair: the yaml's
    pipeline at 96 px for stl10 (the preset's definition) and as written for folder."""
    if size != 224:
        return make(size)
    return f"stl10: {make(96)}; folder: {make(224)} — the yaml's 224 px pipeline"


def solo_asymmetric(size, blur=(0.0, 0.0)):
    """solo-learn's augmentations/asymmetric.yaml (BYOL's pair; CIFAR without blur)."""
    return {"view 1": sized(size, lambda px: view_text(px, blur=blur[0])),
            "view 2": sized(size, lambda px: view_text(px, blur=blur[1], solarize=0.2))}


def solo_symmetric(size, blur=0.5):
    """solo-learn's augmentations/symmetric.yaml (SimCLR's jitter, blur 0.5)."""
    return {"views (both)": sized(size, lambda px: view_text(px, bcsh=(0.8, 0.8, 0.8, 0.2),
                                                             blur=blur))}


def solo_symmetric_weak(size):
    """solo-learn's augmentations/symmetric_weak.yaml (MoCo v2's aug+ with crop 0.08)."""
    return {"views (both)": sized(size, lambda px: view_text(px, bcsh=(0.4, 0.4, 0.4, 0.1),
                                                             blur=0.5))}


def solo(yaml, epochs, optimizer, lr, wd, views, method, cifar=True, schedule=SOLO_SCHEDULE,
         notes=(), stl10_note=SOLO_IN100_NOTE):
    """An entry for a solo-learn yaml: its values plus the defaults of solo/args and
    solo/methods/base.py (warmup 10 epochs from 3e-5, cosine to 0, lr x batch/256)."""
    folder = "cifar" if cifar else "imagenet-100"
    values = {"encoder": CIFAR_R18 if cifar else "resnet18",
              "batch": "256" if cifar else SOLO_IN100_BATCH,
              "epochs": str(epochs), "optimizer": optimizer,
              "learning rate": lr_text(lr, "linear", 256), "schedule": schedule,
              "weight decay": wd, **{f"method.{k}": v for k, v in method.items()}, **views,
              "linear probe": SOLO_PROBE}
    notes = list(notes) + ([] if cifar else [stl10_note])
    return dict(ref=f"solo-learn scripts/pretrain/{folder}/{yaml}", values=values, notes=notes)


BYOL_VIEWS_224 = {"view 1": view_text(224, blur=1.0), "view 2": view_text(224, blur=0.1,
                                                                            solarize=0.2)}
SIMCLR_VIEWS_224 = {"views (both)": view_text(224, bcsh=(0.8, 0.8, 0.8, 0.2), blur=0.5)}
def cmc_source(ref, temperature, note):
    """HobbitLong/CMC ``train_CMC.py``'s defaults (L against ab), for a CIFAR or STL-10 preset."""
    return dict(
        ref=ref,
        values={"batch": "128", "epochs": "240", "optimizer": optimizer_text("sgd", 0.9),
                "learning rate": "0.06 x batch/256 = 0.03 — lr 0.03 at batch 128",
                "schedule": "no warmup, x0.1 at epochs 120, 160 and 200",
                "weight decay": wd_text(1e-4, all_params=True),
                "method.bank_momentum": "0.5", "method.num_noise": "4096",
                "method.objective": "nce", "method.proj_dim": "128",
                "method.temperature": num(temperature), "method.split": "channels",
                "method.channel_groups": "((0), (1, 2)) — L against ab"},
        notes=["Step decay there, cosine here; weight decay on every parameter there. " + note])


IMAGENET_LARS = optimizer_text("lars", 0.9, 1e-3)
SIMCLR_LINEAR_EVAL = ("— 90 epochs, batch 4096: SGD with Nesterov momentum, lr 0.1 x "
                      "batch/256, on random crops and flips (google-research/simclr README)")
SIMCLR_HEAD_NOTE = ("The reference's projection head ends in BatchNorm (no bias: "
                    "model_util.projection_head, ``use_bn=True`` on the last layer); the MLP "
                    "here ends in a plain linear layer.")
SIMCLR_LOSS_NOTE = ("``method.loss_scale`` 2 makes the objective the reference's "
                    "``mean(loss_a + loss_b)`` (objective.py), twice ``nt_xent``; see the "
                    "loss-scale section above for why LARS needs it.")
SIMCLR_LARS_NOTE = ("The reference's LARS (lars_optimizer.py, ``classic_momentum``) puts the "
                    "learning rate inside the momentum buffer; here (as BYOL) it multiplies "
                    "the buffer. The two differ only while the learning rate changes.")
VICREG_SOLO_STD = ("50 — var_loss_weight 25 on solo-learn's variance term, the sum over the "
                   "two branches: twice this library's (and the official code's) mean")
SUPCON_IN100_NOTE = ("solo-learn's supcon loss is ``simclr_loss_func`` with class labels: all "
                     "positives inside one log (the paper's L_in); the loss here is L_out "
                     "(eq. 2). Its 84.40% is not this loss's number.")


SOURCES = {
    "barlow_twins": {
        ("cifar10", "cifar100"): solo(
            "barlow.yaml + augmentations/asymmetric.yaml", 1000, SOLO_LARS, 0.3, wd_text(1e-4),
            solo_asymmetric(32),
            dict(lambda_="0.0051 — solo-learn's default", proj_dim="2048",
                 proj_hidden_dims="2048-2048", scale_loss="0.1")),
        ("stl10", "folder"): solo(
            "barlow.yaml + augmentations/asymmetric.yaml", 400, SOLO_LARS, 0.3, wd_text(1e-4),
            solo_asymmetric(224, blur=(1.0, 0.1)),
            dict(lambda_="0.0051", proj_dim="2048", proj_hidden_dims="2048-2048",
                 scale_loss="0.1"), cifar=False),
        ("imagenet",): dict(
            ref="facebookresearch/barlowtwins main.py defaults and evaluate.py",
            values={"encoder": "resnet50, last BN of each block zero-init", "batch": "2048",
                    "epochs": "1000", "optimizer": IMAGENET_LARS,
                    "learning rate": lr_text(0.2, "linear", 2048),
                    "schedule": "10 warmup epochs from 0, cosine to 0.001 x peak",
                    "weight decay": wd_text(1.5e-6),
                    "biases/norms lr": "0.024 x — --learning-rate-biases 0.0048 over 0.2",
                    "method.lambda_": "0.0051", "method.proj_dim": "8192",
                    "method.proj_hidden_dims": "8192-8192",
                    "method.scale_loss": "1 — loss = on_diag + lambd * off_diag",
                    **BYOL_VIEWS_224,
                    "linear probe": "— 100 epochs, batch 256: SGD lr 0.3, weight decay 1e-6, "
                                    "cosine, on random crops and flips (evaluate.py)"},
            notes=["The reference resizes crops bicubically; the pipeline here uses its own "
                   "resize (cl_jax.data)."]),
    },
    "byol": {
        ("cifar10", "cifar100"): solo(
            "byol.yaml + augmentations/asymmetric.yaml", 1000, SOLO_LARS, 1.0, wd_text(1e-5),
            solo_asymmetric(32),
            dict(pred_hidden_dims="4096", proj_dim="256", proj_hidden_dims="4096",
                 tau_base="0.99 — final_tau 1.0")),
        ("stl10", "folder"): solo(
            "byol.yaml + augmentations/asymmetric.yaml", 400, SOLO_LARS, 0.5, wd_text(1e-6),
            solo_asymmetric(224, blur=(1.0, 0.1)),
            dict(pred_hidden_dims="8192", proj_dim="256", proj_hidden_dims="4096",
                 tau_base="0.99"), cifar=False),
        ("imagenet",): dict(
            ref="deepmind-research byol/configs/byol.py (1000-epoch preset), "
                "utils/augmentations.py, utils/schedules.py, configs/eval.py, main_loop.py",
            values={"encoder": "resnet50", "batch": "4096 — main_loop.py's default",
                    "epochs": "1000", "optimizer": IMAGENET_LARS,
                    "learning rate": lr_text(0.2, "linear", 4096),
                    "schedule": "10 warmup epochs from 0, cosine to 0",
                    "weight decay": wd_text(1.5e-6), "method.pred_hidden_dims": "4096",
                    "method.proj_dim": "256", "method.proj_hidden_dims": "4096",
                    "method.tau_base": "0.996 — 1 - (1 - 0.996)(cos + 1)/2",
                    **BYOL_VIEWS_224,
                    "linear probe": "— 80 epochs, batch 4096: SGD with Nesterov momentum, "
                                    "base lr 0.2, no weight decay, on random crops and flips "
                                    "(configs/eval.py)"},
            notes=["The loss here is the reference's: the sum over the two directions of the "
                   "batch mean of 2 - 2 cos (helpers.regression_loss)."]),
    },
    "dcl": {
        ("cifar10", "cifar100"): dict(
            ref="none: SimCLR's cifar preset (solo-learn's simclr.yaml, see simclr) with "
                "``method.loss=dcl``; no paper reports it"),
        ("stl10", "folder"): dict(
            ref="none: SimCLR's stl10 / folder presets with ``method.loss=dcl``; no paper "
                "reports them"),
        ("imagenet",): dict(
            ref="the DCL paper (Yeh et al. 2022) as cited by configs/dcl.py — not re-checked "
                "here: the paper's text was not available; the learning-rate rule is SimCLR "
                "appendix B.1's",
            values={"method.loss": "dcl",
                    "method.loss_scale": "2 — raminnakhli/Decoupled-Contrastive-Learning "
                                         "(experiment/simclr/main.py) sums the two "
                                         "directions; the paper's own code was not checked"},
            notes=["The docstring's ResNet-50, batch 256, 200 epochs and 68.2% are the "
                   "paper's as cited, not re-checked here.",
                   "Everything else is SimCLR's imagenet preset (see simclr), including the "
                   "projection head without output BatchNorm and the 90-epoch probe."]),
    },
    "deepclusterv2": {
        ("cifar10", "cifar100"): solo(
            "deepclusterv2.yaml + augmentations/symmetric.yaml", 1000, SOLO_LARS, 0.6,
            wd_text(1e-6), solo_symmetric(32),
            dict(kmeans_iters="10 — solo-learn's default", num_prototypes="(3000, 3000, 3000)",
                 proj_dim="128", proj_hidden_dims="2048",
                 temperature="0.1 — solo-learn's default"),
            schedule="11 warmup epochs from 0, cosine to 0.001 x peak"),
        ("stl10", "folder"): solo(
            "deepclusterv2.yaml + augmentations/symmetric.yaml", 400, SOLO_LARS, 0.6,
            wd_text(1e-6), solo_symmetric(224),
            dict(kmeans_iters="10", num_prototypes="(3000, 3000, 3000)", proj_dim="128",
                 proj_hidden_dims="2048", temperature="0.1"),
            schedule="11 warmup epochs from 0, cosine to 0.001 x peak", cifar=False,
            notes=["The yaml's scheduler (11 warmup epochs from 0, min_lr 6e-4 = 0.001 x the "
                   "peak 0.6) is not carried over here: 10 warmup epochs, cosine to 0."]),
        ("imagenet",): dict(
            ref="facebookresearch/swav scripts/deepclusterv2_800ep_pretrain.sh "
                "(main_deepclusterv2.py), README, eval_linear.py",
            values={"encoder": "resnet50", "batch": "4096 — 64 per GPU on 64",
                    "epochs": "800", "optimizer": IMAGENET_LARS + " — apex LARC, clip=False",
                    "learning rate": lr_text(0.3, "linear", 4096) + " — --base_lr 4.8",
                    "schedule": "10 warmup epochs from 0.3, cosine to 0.001 x peak",
                    "weight decay": wd_text(1e-6, all_params=True),
                    "method.crops_for_assign": "(0, 1)", "method.kmeans_iters": "10",
                    "method.num_prototypes": "(3000, 3000, 3000)", "method.proj_dim": "128",
                    "method.proj_hidden_dims": "2048", "method.temperature": "0.1",
                    "views (both)": view_text(224, crop=(0.14, 1.0), bcsh=(0.8, 0.8, 0.8, 0.2),
                                              blur=0.5),
                    "local views": "6 x " + view_text(96, crop=(0.05, 0.14),
                                                      bcsh=(0.8, 0.8, 0.8, 0.2), blur=0.5),
                    "linear probe": "— 100 epochs, batch 256: SGD lr 0.3, weight decay 1e-6, "
                                    "cosine, on random crops and flips (eval_linear.py)"},
            notes=["The reference wraps SGD (weight decay on every parameter) in apex's LARC "
                   "(``clip=False``), so biases and BatchNorm parameters get the decay and the "
                   "trust ratio too; here they get neither.",
                   "Warmup starts at 0.3 there, at 0 here."]),
    },
    "dino": {
        ("cifar10", "cifar100"): solo(
            "dino.yaml + augmentations/asymmetric.yaml", 1000, SOLO_LARS, 0.3, wd_text(1e-6),
            solo_asymmetric(32),
            dict(bottleneck_dim="256", center_momentum="0.9 — solo-learn's default",
                 freeze_last_layer_epochs="1", head_hidden_dims="2048-2048",
                 momentum_teacher="0.9995", norm_last_layer="yes", out_dim="4096",
                 student_temp="0.1", teacher_temp="0.07", use_bn_in_head="no",
                 warmup_teacher_temp_epochs="0"),
            notes=["solo-learn's warmup_teacher_temperature (0.04) is unused with 0 warmup "
                   "epochs; the preset writes 0.07 for the same constant 0.07."]),
        ("stl10", "folder"): solo(
            "dino.yaml + augmentations/asymmetric.yaml", 400, SOLO_LARS, 0.3, wd_text(1e-6),
            solo_asymmetric(224, blur=(1.0, 0.1)),
            dict(bottleneck_dim="256", freeze_last_layer_epochs="1",
                 head_hidden_dims="2048-2048", momentum_teacher="0.9995",
                 norm_last_layer="yes", out_dim="4096", student_temp="0.1",
                 teacher_temp="0.07", use_bn_in_head="no", warmup_teacher_temp="0.04",
                 warmup_teacher_temp_epochs="50"), cifar=False),
        ("imagenet",): dict(
            ref="facebookresearch/dino README (ResNet-50 row) and eval_linear.py; the "
                "checkpoint's args.txt (a download) could not be read here, so the "
                "pre-training values are not checked",
            values={"encoder": "resnet50",
                    "linear probe": "— 100 epochs, batch 1024: SGD lr 0.001 x batch/256, no "
                                    "weight decay, cosine, on random crops and flips "
                                    "(eval_linear.py)"},
            notes=["The config's docstring says its pre-training values were recalled, not "
                   "read: check them against args.txt before a long run."]),
        ("imagenet_vit",): dict(
            ref="facebookresearch/dino README (\"boosted\" ViT-S/16 command) and main_dino.py "
                "defaults, eval_linear.py",
            values={"encoder": "vit_small, patch 16, learn position embedding",
                    "batch": "1024 — 64 per GPU on 16", "epochs": "300",
                    "optimizer": optimizer_text("adamw", betas=(0.9, 0.999)),
                    "learning rate": lr_text(0.0005, "linear", 1024),
                    "schedule": "10 warmup epochs from 0, cosine to 0.0005 x peak — min_lr 1e-6",
                    "weight decay": "0.04 -> 0.4 (cosine), not on biases/norms",
                    "method.bottleneck_dim": "256", "method.center_momentum": "0.9",
                    "method.freeze_last_layer_epochs": "1",
                    "method.head_hidden_dims": "2048-2048", "method.momentum_teacher": "0.996",
                    "method.norm_last_layer": "no", "method.num_teacher_views": "2",
                    "method.out_dim": "65536", "method.student_temp": "0.1",
                    "method.teacher_temp": "0.07", "method.use_bn_in_head": "no",
                    "method.warmup_teacher_temp": "0.04",
                    "method.warmup_teacher_temp_epochs": "30",
                    "view 1": view_text(224, crop=(0.4, 1.0), blur=1.0),
                    "view 2": view_text(224, crop=(0.4, 1.0), blur=0.1, solarize=0.2),
                    "local views": "8 x " + view_text(96, crop=(0.05, 0.4), blur=0.5),
                    "gradient clipping": "3 — --clip_grad",
                    "stochastic depth": "0.1 — --drop_path_rate",
                    "linear probe": "— 100 epochs, batch 1024: SGD lr 0.001 x batch/256 on the "
                                    "last 4 blocks' [CLS] tokens, random crops and flips"},
            notes=["The reference raises the weight decay from 0.04 to 0.4 along a cosine and "
                   "clips gradients at norm 3; the shared optimiser here keeps 0.04 and does "
                   "not clip. Stochastic depth (drop path 0.1) is not implemented."]),
    },
    "amdim": {
        ("cifar10",): dict(
            ref="Philip-Bachman/amdim-public: train.py's CIFAR-10 command and defaults, "
                "task_self_supervised.py's optimiser, datasets.py's TransformsC10",
            values={"encoder": "— ndf 128 residual blocks of depth 3 to 7x7, 5x5 and 1x1",
                    "batch": "200", "epochs": "300",
                    "optimizer": optimizer_text("adamw", betas=(0.8, 0.999)),
                    "learning rate": "0.0002",
                    "schedule": "— 500 warmup steps, x0.2 at epochs 250 and 280",
                    "weight decay": "— 1e-5 as Adam's L2 term", "method.n_rkhs": "1024",
                    "method.tclip": "20", "method.score_penalty": "0.05",
                    "views (both)": "— flip p=0.5 once for both views, translate up to 4 px "
                            "(reflection padding) p=0.8, jitter 0.8 x (0.4, 0.4, 0.4, 0.2), "
                            "gray 0.25"},
            notes=["The encoder is the ConvNet (128, 256, 512, 512) of 3x3 convolutions, its "
                   "8x8 and 4x4 maps the \"7\" and \"5\" scales.",
                   "A random crop of scale (0.75, 1) stands in for the translation; each view "
                   "flips on its own."]),
    },
    "cmc": {
        ("cifar10",): cmc_source(
            "none: HobbitLong/CMC train_CMC.py's defaults and README (L / ab, NCE, K 4096) with "
            "a ResNet-18 per view; the reference has no CIFAR setting", 0.07,
            "The reference's encoders are half-width ResNet-50s (or AlexNet halves)."),
        ("stl10",): cmc_source(
            "HobbitLong/CMC train_CMC.py's defaults and README (L / ab, NCE, K 4096, T 0.1 for "
            "STL-10) with a ResNet-18 per view", 0.1,
            "The paper's STL-10 encoders are its own AlexNet-style halves."),
    },
    "cpc": {
        ("imagenet",): dict(
            ref="CPC v1's ImageNet grid (van den Oord et al. 2018, section 3.2) with CPC v2's "
                "LayerNorm and colour dropping (Hénaff et al. 2020); v2's appendix not checked",
            values={"encoder": "— ResNet-161 (v2's best; ResNet-50 for its 63.8%)",
                    "batch": "512 — SimCLR's table C.1 on CPC v2", "epochs": "200 — ibid.",
                    "optimizer": "— v1: Adam", "learning rate": "— v1: 0.0002",
                    "method.patch_size": "64", "method.patch_stride": "32",
                    "method.pred_steps": "5 — v1", "method.patch_shift": "4 — v1: 60 of 64",
                    "method.patch_drop_colour_prob": "1 — two of three channels per patch"},
            notes=["CPC v2 also predicts from below, left and right; only top-down here.",
                   "v2's further augmentations (RandAugment primitives, elastic "
                   "deformations) are not implemented."]),
    },
    "dim": {
        ("cifar10",): dict(
            ref="rdevon/DIM README's CIFAR-10 command (``local classifier``, JSD) with "
                "cortex's defaults (cortex_DIM/models/dim.py, cortex optimizer.py)",
            values={"encoder": "— basic32x32: 4x4 stride-2 convs 64-128-256, FC 1024, Y 64",
                    "batch": "64", "epochs": "1000",
                    "optimizer": optimizer_text("adamw", betas=(0.5, 0.999)),
                    "learning rate": "0.0001", "schedule": "constant",
                    "weight decay": wd_text(0.0), "method.alpha": "0", "method.beta": "1",
                    "method.measure": "jsd", "method.mi_units": "2048",
                    "method.global_dim": "64", "method.global_hidden_dims": "1024",
                    "view": "— none: no augmentation"},
            notes=["The encoder is the ConvNet of 3x3 convolutions here, its 8x8 map of 256 "
                   "channels the local features (the reference's 8x8 map has 128).",
                   "A constant learning rate there, the shared cosine decay here.",
                   "The reference's command has no prior matching; gamma 0.1 is its README's "
                   "prior example."]),
    },
    "instdisc": {
        ("cifar10", "cifar100"): dict(
            ref="zhirongw/lemniscate.pytorch cifar.py with the README's CIFAR command "
                "(``--nce-k 0 --nce-t 0.1 --lr 0.03``)",
            values={"encoder": CIFAR_R18 + " — models/resnet_cifar.py", "batch": "128",
                    "epochs": "200", "optimizer": optimizer_text("sgd", 0.9),
                    "learning rate": "0.06 x batch/256 = 0.03 — lr 0.03 at batch 128",
                    "schedule": "no warmup, x0.1 at epochs 120 and 160",
                    "weight decay": wd_text(5e-4, all_params=True),
                    "method.bank_momentum": "0.5", "method.num_noise": "0",
                    "method.proj_dim": "128", "method.temperature": "0.1",
                    "view": view_text(32, crop=(0.2, 1.0), flip=0.0, jitter=1.0,
                                      bcsh=(0.4, 0.4, 0.4, 0.4)),
                    "linear probe": "— the paper's CIFAR number is weighted kNN on the 128-d "
                                    "bank features"},
            notes=["Step decay there, cosine here; weight decay on every parameter there."]),
        ("stl10", "folder"): dict(
            ref="none: the ImageNet recipe below with a ResNet-18; no paper reports these",
            values={}),
        ("imagenet",): dict(
            ref="zhirongw/lemniscate.pytorch main.py defaults and README (the paper's ImageNet "
                "setting)",
            values={"encoder": "resnet50 — the paper's; main.py defaults to resnet18",
                    "batch": "256", "epochs": "200", "optimizer": optimizer_text("sgd", 0.9),
                    "learning rate": "0.03 x batch/256 = 0.03 — lr 0.03 at batch 256",
                    "schedule": "no warmup, x0.1 at epochs 120 and 160",
                    "weight decay": wd_text(1e-4, all_params=True),
                    "method.bank_momentum": "0.5", "method.num_noise": "4096",
                    "method.proj_dim": "128", "method.temperature": "0.07",
                    "view": view_text(224, crop=(0.2, 1.0), jitter=1.0,
                                      bcsh=(0.4, 0.4, 0.4, 0.4)),
                    "linear probe": "— not checked: the paper's linear classifier on conv5 "
                                    "features (54.0%); README 58.5% for the updated model"},
            notes=["main.py applies grayscale before the colour jitter; the pipeline here "
                   "jitters first.", "The 90-epoch probe length is a choice, not the paper's."]),
    },
    "mocov2": {
        ("cifar10", "cifar100"): solo(
            "mocov2plus.yaml + augmentations/symmetric_weak.yaml", 1000, SOLO_SGD, 0.3,
            wd_text(1e-4, all_params=True), solo_symmetric_weak(32),
            dict(mochi="no", proj_dim="256", proj_hidden_dims="2048", queue_size="32768",
                 shuffle_bn_groups="1 — SyncBN, no shuffle", symmetric="yes — the two "
                 "directions averaged", tau_base="0.99", tau_final="0.999",
                 temperature="0.2"),
            notes=["solo-learn's SGD decays every parameter (``exclude_bias_n_norm_wd`` is "
                   "False by default); biases and norms are left out here."]),
        ("stl10", "folder"): solo(
            "mocov2plus.yaml + augmentations/symmetric_weak.yaml", 400, SOLO_SGD, 0.3,
            wd_text(1e-4, all_params=True), solo_symmetric_weak(224),
            dict(mochi="no", proj_dim="256", proj_hidden_dims="2048", queue_size="65536",
                 shuffle_bn_groups="1", symmetric="yes", tau_base="0.99", tau_final="0.999",
                 temperature="0.2"), cifar=False,
            notes=["The preset trains at a global batch of 128 (the yaml's per-GPU 128, on one "
                   "device), so with linear scaling its peak rate is half solo-learn's.",
                   "The final momentum is 1 here, 0.999 in the yaml; stl10's queue is 16384.",
                   "solo-learn's SGD decays every parameter."]),
        ("imagenet",): dict(
            ref="the MoCo v2 paper (table 2) via facebookresearch/moco main_moco.py "
                "(``--mlp --moco-t 0.2 --aug-plus --cos``), README, main_lincls.py",
            values={"encoder": "resnet50", "batch": "256", "epochs": "800",
                    "optimizer": optimizer_text("sgd", 0.9),
                    "learning rate": lr_text(0.03, "linear", 256),
                    "schedule": "no warmup, cosine to 0 — per epoch",
                    "weight decay": wd_text(1e-4, all_params=True), "method.mochi": "no",
                    "method.proj_dim": "128", "method.proj_hidden_dims": "2048",
                    "method.queue_size": "65536",
                    "method.shuffle_bn_groups": "8 — shuffling BN over 8 GPUs",
                    "method.symmetric": "no", "method.tau_base": "0.999",
                    "method.tau_final": "0.999", "method.temperature": "0.2",
                    "views (both)": view_text(224, crop=(0.2, 1.0), bcsh=(0.4, 0.4, 0.4, 0.1),
                                              blur=0.5),
                    "linear probe": "— 100 epochs, batch 256: SGD lr 30, x0.1 at epochs 60 and "
                                    "80, no weight decay, on random crops and flips "
                                    "(main_lincls.py)"},
            notes=["The reference's projection head has no BatchNorm (Linear-ReLU-Linear), as "
                   "here.", "The reference decays every parameter (torch SGD weight_decay)."]),
    },
    "mocov3": {
        ("cifar10", "cifar100"): solo(
            "mocov3.yaml + augmentations/asymmetric.yaml", 1000, SOLO_LARS, 0.3, wd_text(1e-6),
            solo_asymmetric(32),
            dict(pred_hidden_dims="4096", proj_dim="256", proj_hidden_dims="4096",
                 tau_base="0.99 — final_tau 1.0", temperature="0.2")),
        ("stl10", "folder"): solo(
            "mocov3.yaml + augmentations/asymmetric.yaml", 400, SOLO_LARS, 0.3, wd_text(1e-6),
            solo_asymmetric(224, blur=(1.0, 0.1)),
            dict(pred_hidden_dims="4096", proj_dim="256", proj_hidden_dims="4096",
                 tau_base="0.99", temperature="0.2"), cifar=False),
        ("imagenet",): dict(
            ref="facebookresearch/moco-v3 CONFIG.md (ResNet-50, 1000 epochs), main_moco.py "
                "defaults, moco/builder.py, main_lincls.py",
            values={"encoder": "resnet50, last BN of each block zero-init", "batch": "4096",
                    "epochs": "1000", "optimizer": IMAGENET_LARS,
                    "learning rate": lr_text(0.3, "linear", 4096),
                    "schedule": "10 warmup epochs from 0, cosine to 0",
                    "weight decay": wd_text(1.5e-6), "method.pred_hidden_dims": "4096",
                    "method.pred_output_norm": "no", "method.proj_dim": "256",
                    "method.proj_hidden_dims": "4096",
                    "method.tau_base": "0.996 — --moco-m-cos to 1",
                    "method.temperature": "1",
                    "view 1": view_text(224, crop=(0.2, 1.0), blur=1.0),
                    "view 2": view_text(224, crop=(0.2, 1.0), blur=0.1, solarize=0.2),
                    "linear probe": "— 90 epochs, batch 1024: SGD lr 0.1 x batch/256, no "
                                    "weight decay, cosine, on random crops and flips "
                                    "(main_lincls.py)"},
            notes=["The loss is the reference's: ``2T`` times the sum of the two directions' "
                   "cross-entropies (builder.contrastive_loss)."]),
        ("imagenet_vit",): dict(
            ref="facebookresearch/moco-v3 CONFIG.md (\"ViT-Small, 4-node (32-GPU)\"), "
                "main_moco.py, vits.py, main_lincls.py",
            values={"encoder": "vit_small, patch 16, sincos2d position embedding, frozen "
                               "patch projection — --stop-grad-conv1",
                    "batch": "4096", "epochs": "300",
                    "optimizer": optimizer_text("adamw", betas=(0.9, 0.999)),
                    "learning rate": lr_text(1.5e-4, "linear", 4096),
                    "schedule": "40 warmup epochs from 0, cosine to 0",
                    "weight decay": wd_text(0.1, all_params=True),
                    "method.pred_hidden_dims": "4096", "method.pred_output_norm": "yes",
                    "method.proj_dim": "256", "method.proj_hidden_dims": "4096-4096",
                    "method.tau_base": "0.99 — cosine to 1", "method.temperature": "0.2",
                    "view 1": view_text(224, blur=1.0),
                    "view 2": view_text(224, blur=0.1, solarize=0.2),
                    "linear probe": "— 90 epochs, batch 1024: SGD lr 3 x batch/256, on random "
                                    "crops and flips (main_lincls.py ``--lr=3``)"},
            notes=["The reference's AdamW decays every parameter "
                   "(``torch.optim.AdamW(model.parameters(), ...)``); biases and norms are left "
                   "out here."]),
    },
    "nnclr": {
        ("cifar10", "cifar100"): solo(
            "nnclr.yaml + augmentations/asymmetric.yaml", 1000, SOLO_LARS, 0.4, wd_text(1e-5),
            solo_asymmetric(32),
            dict(pred_hidden_dims="4096", proj_dim="256", proj_hidden_dims="2048-2048",
                 support_size="65536", temperature="0.2")),
        ("stl10", "folder"): solo(
            "nnclr.yaml + augmentations/asymmetric.yaml", 400, SOLO_LARS, 0.4, wd_text(1e-5),
            solo_asymmetric(224, blur=(1.0, 0.1)),
            dict(pred_hidden_dims="4096", proj_dim="256", proj_hidden_dims="2048-2048",
                 support_size="65536", temperature="0.2"), cifar=False,
            notes=["The preset trains at a global batch of 128 (the yaml's per-GPU 128, on one "
                   "device), so with linear scaling its peak rate is half solo-learn's; "
                   "stl10's support set is 16384."]),
        ("imagenet",): dict(
            ref="the NNCLR paper (section 4.1) as cited by configs/nnclr.py — not re-checked "
                "here: the paper's text was not available and no official code was found",
            values={},
            notes=["All values in the config's docstring (batch 4096, 1000 epochs, projector "
                   "2048-2048-256, predictor 4096-256, support set 98,304, T = 0.1, BYOL's "
                   "views, SimCLR's LARS values) are unverified here; so is the loss's "
                   "reduction (here the mean of the two directions, as solo-learn).",
                   "The 90-epoch probe length is SimCLR's, not checked against NNCLR's."]),
    },
    "simclr": {
        ("cifar10", "cifar100"): solo(
            "simclr.yaml + augmentations/symmetric.yaml", 1000, SOLO_LARS, 0.4, wd_text(1e-4),
            solo_symmetric(32),
            dict(loss="nt_xent — simclr_loss_func, a mean over the 2N views", loss_scale="1",
                 proj_dim="256", proj_hidden_dims="2048", temperature="0.2"),
            notes=["Blur: the current symmetric.yaml blurs with p=0.5; the preset keeps the "
                   "earlier scripts/pretrain/cifar/simclr.sh setting (``--gaussian_prob 0.0 "
                   "0.0``, which also had weight decay 1e-5)."]),
        ("stl10", "folder"): solo(
            "simclr.yaml + augmentations/symmetric.yaml", 400, SOLO_LARS, 0.3, wd_text(1e-4),
            solo_symmetric(224),
            dict(loss="nt_xent", loss_scale="1", proj_dim="512", proj_hidden_dims="4096",
                 temperature="0.2"), cifar=False),
        ("imagenet",): dict(
            ref="the paper (section 2.3, appendix B.1, as cited by the config) and "
                "google-research/simclr (run.py flags, README, objective.py, lars_optimizer.py)",
            values={"encoder": "resnet50", "batch": "4096",
                    "epochs": "1000 — the paper's longest run; the README's example trains 100",
                    "optimizer": IMAGENET_LARS, "learning rate": lr_text(0.3, "linear", 4096),
                    "schedule": "10 warmup epochs from 0, cosine to 0",
                    "weight decay": wd_text(1e-6),
                    "method.loss": "nt_xent", "method.loss_scale": "2 — mean(loss_a + loss_b)",
                    "method.proj_dim": "128", "method.proj_hidden_dims": "2048",
                    "method.temperature": "0.1", **SIMCLR_VIEWS_224,
                    "linear probe": SIMCLR_LINEAR_EVAL},
            notes=[SIMCLR_LOSS_NOTE, SIMCLR_HEAD_NOTE, SIMCLR_LARS_NOTE,
                   "The reference blurs with p=0.5 per image, sigma in (0.1, 2), kernel 1/10 of "
                   "the image side, as here."]),
    },
    "simsiam": {
        ("cifar10", "cifar100"): solo(
            "simsiam.yaml + augmentations/symmetric_weak.yaml", 1000, SOLO_SGD, 0.5,
            wd_text(1e-5, all_params=True), solo_symmetric_weak(32),
            dict(pred_hidden_dims="512", proj_dim="2048", proj_hidden_dims="2048-2048"),
            notes=["solo-learn keeps the predictor's learning rate constant (``static_lr``), as "
                   "``optim.constant_lr_modules`` does here.",
                   "solo-learn's SGD decays every parameter."]),
        ("stl10", "folder"): solo(
            "simsiam.yaml + augmentations/asymmetric.yaml", 400, SOLO_SGD, 0.5,
            wd_text(1e-5, all_params=True), solo_asymmetric(224, blur=(1.0, 0.1)),
            dict(pred_hidden_dims="512", proj_dim="2048", proj_hidden_dims="2048-2048"),
            cifar=False, notes=["solo-learn's SGD decays every parameter."]),
        ("imagenet",): dict(
            ref="facebookresearch/simsiam main_simsiam.py defaults with ``--fix-pred-lr`` "
                "(README), main_lincls.py ``--lars``",
            values={"encoder": "resnet50, last BN of each block zero-init", "batch": "512",
                    "epochs": "100", "optimizer": optimizer_text("sgd", 0.9),
                    "learning rate": lr_text(0.05, "linear", 512),
                    "schedule": "no warmup, cosine to 0 — per epoch",
                    "weight decay": wd_text(1e-4, all_params=True),
                    "constant-lr modules": "predictor", "method.pred_hidden_dims": "512",
                    "method.proj_dim": "2048", "method.proj_hidden_dims": "2048-2048",
                    "views (both)": view_text(224, crop=(0.2, 1.0), bcsh=(0.4, 0.4, 0.4, 0.1),
                                              blur=0.5),
                    "linear probe": "— 90 epochs, batch 4096: LARS lr 0.1 x batch/256, no "
                                    "weight decay, cosine, on random crops and flips "
                                    "(main_lincls.py --lars)"},
            notes=["The reference decays every parameter (torch SGD weight_decay)."]),
    },
    "supcon": {
        ("cifar10", "cifar100"): dict(
            ref="HobbitLong/SupContrast README (``--batch_size 1024 --learning_rate 0.5 "
                "--temp 0.1 --cosine``) and main_supcon.py defaults",
            values={"encoder": "resnet50, 3x3 stem without max-pool", "batch": "1024",
                    "epochs": "1000", "optimizer": optimizer_text("sgd", 0.9),
                    "learning rate": "0.125 x batch/256 = 0.5 — lr 0.5, no batch scaling",
                    "schedule": "10 warmup epochs from 0.01, cosine to 0.001 x peak",
                    "weight decay": wd_text(1e-4, all_params=True),
                    "method.loss_scale": "1.42857 — temperature / base_temperature = 0.1/0.07",
                    "method.proj_batch_norm": "no", "method.proj_dim": "128",
                    "method.proj_hidden_dims": "2048", "method.temperature": "0.1",
                    "views (both)": view_text(32, crop=(0.2, 1.0), bcsh=(0.4, 0.4, 0.4, 0.1)),
                    "linear probe": "— main_linear.py: a linear classifier on frozen "
                                    "features, random crops and flips"},
            notes=["SupContrast's warmup (``--warm``, on for batches above 256) starts at 0.01 "
                   "and its cosine ends at lr x 0.1^3; here warmup starts at 0 and the cosine "
                   "ends at 0. Its SGD decays every parameter."]),
        ("stl10", "folder"): solo(
            "supcon.yaml + augmentations/symmetric.yaml", 400, SOLO_SGD, 0.5,
            wd_text(1e-5, all_params=True), solo_symmetric(224),
            dict(proj_dim="512", proj_hidden_dims="2048", temperature="0.2"), cifar=False,
            notes=[SUPCON_IN100_NOTE, "solo-learn's SGD decays every parameter."],
            stl10_note="stl10 runs the ImageNet-100 yaml at 96 px on STL-10's 5k labelled "
                       "training images (the unlabelled split has no classes); no published "
                       "number for it."),
        ("imagenet",): dict(
            ref="google-research/google-research supcon/scripts/supcon_imagenet_resnet50.sh "
                "with configs.sh (SUPCON_FLAGS, IMAGENET_FLAGS) and supcon/losses.py",
            values={"encoder": "resnet50", "batch": "6144", "epochs": "350",
                    "optimizer": "— LARS; its momentum and eta were not checked",
                    "learning rate": lr_text(0.4, "linear", 6144),
                    "schedule": "12 warmup epochs from 0, cosine to 0 — hparams_flags.py "
                                "defaults; start and end values not checked",
                    "weight decay": "0.001, on all parameters — use_bias_weight_decay",
                    "method.loss_scale": "0.1 — scale_by_temperature multiplies by T",
                    "method.proj_batch_norm": "no", "method.proj_dim": "128",
                    "method.proj_hidden_dims": "none — projection_head_layers=128: one "
                                               "linear layer",
                    "method.temperature": "0.1",
                    "views (both)": "224px AutoAugment (magnitude 1.0), blur 0.5 — not "
                                    "implemented here",
                    "linear probe": "— stage 2: 90 epochs, batch 6144, RMSProp lr 0.05 x "
                                    "batch/256 decayed x0.97 every 0.5 epoch, weight decay "
                                    "1e-6, label smoothing 0.05"},
            notes=["This preset keeps SimCLR's LARS recipe, head and views, as its docstring "
                   "says; the official script differs in the rows marked. Aligning the "
                   "learning rate, weight decay, head and ``loss_scale`` is possible with "
                   "the existing fields; AutoAugment is not available.",
                   "The official loss is T x the mean over anchors of L_out (losses.py, "
                   "``scale_by_temperature=True``), 0.1 x the loss here at T = 0.1.",
                   "The official model L2-normalises the encoder output before the projection "
                   "head (``normalize_embedding``); the head here takes it unnormalised."]),
    },
    "swav": {
        ("cifar10", "cifar100"): solo(
            "swav.yaml + augmentations/symmetric.yaml", 1000, SOLO_LARS, 0.6, wd_text(1e-6),
            solo_symmetric(32),
            dict(epsilon="0.05 — solo-learn's default", freeze_prototypes_epochs="2",
                 num_prototypes="3000", proj_dim="128", proj_hidden_dims="2048",
                 queue_length="3840", queue_start_epoch="50",
                 sinkhorn_iterations="3 — solo-learn's default", temperature="0.1")),
        ("stl10", "folder"): solo(
            "swav.yaml + augmentations/symmetric.yaml", 400, SOLO_LARS, 0.6, wd_text(1e-6),
            solo_symmetric(224),
            dict(epsilon="0.05", freeze_prototypes_epochs="2", num_prototypes="3000",
                 proj_dim="128", proj_hidden_dims="2048", queue_length="3840",
                 queue_start_epoch="50", sinkhorn_iterations="3", temperature="0.1"),
            cifar=False),
        ("imagenet",): dict(
            ref="facebookresearch/swav scripts/swav_800ep_pretrain.sh (main_swav.py), "
                "src/multicropdataset.py, README, eval_linear.py",
            values={"encoder": "resnet50", "batch": "4096 — 64 per GPU on 64", "epochs": "800",
                    "optimizer": IMAGENET_LARS + " — apex LARC, clip=False",
                    "learning rate": lr_text(0.3, "linear", 4096) + " — --base_lr 4.8",
                    "schedule": "10 warmup epochs from 0.3, cosine to 0.001 x peak",
                    "weight decay": wd_text(1e-6, all_params=True),
                    "method.crops_for_assign": "(0, 1)", "method.epsilon": "0.05",
                    "method.freeze_prototypes_epochs": "1 — 313 iterations",
                    "method.num_prototypes": "3000", "method.proj_dim": "128",
                    "method.proj_hidden_dims": "2048", "method.queue_length": "0",
                    "method.sinkhorn_iterations": "3", "method.temperature": "0.1",
                    "views (both)": view_text(224, crop=(0.14, 1.0), bcsh=(0.8, 0.8, 0.8, 0.2),
                                              blur=0.5),
                    "local views": "6 x " + view_text(96, crop=(0.05, 0.14),
                                                      bcsh=(0.8, 0.8, 0.8, 0.2), blur=0.5),
                    "linear probe": "— 100 epochs, batch 256: SGD lr 0.3, weight decay 1e-6, "
                                    "cosine, on random crops and flips (eval_linear.py)"},
            notes=["The reference wraps SGD (weight decay on every parameter) in apex's LARC, "
                   "so biases and BatchNorm parameters get the decay and the trust ratio too; "
                   "here they get neither.", "Warmup starts at 0.3 there, at 0 here."]),
    },
    "vicreg": {
        ("cifar10", "cifar100"): solo(
            "vicreg.yaml (augmentations inline)", 1000, SOLO_LARS, 0.3, wd_text(1e-4),
            {"views (both)": view_text(32, crop=(0.2, 1.0), solarize=0.1)},
            dict(cov_coeff="1", proj_dim="2048", proj_hidden_dims="2048-2048",
                 sim_coeff="25", std_coeff=VICREG_SOLO_STD)),
        ("stl10", "folder"): solo(
            "vicreg.yaml (augmentations inline)", 400, SOLO_LARS, 0.3, wd_text(1e-4),
            {"views (both)": sized(224, lambda px: view_text(px, crop=(0.2, 1.0), blur=0.5,
                                                             solarize=0.1))},
            dict(cov_coeff="1", proj_dim="2048", proj_hidden_dims="2048-2048",
                 sim_coeff="25", std_coeff=VICREG_SOLO_STD), cifar=False),
        ("imagenet",): dict(
            ref="facebookresearch/vicreg main_vicreg.py, README (1000-epoch command), "
                "augmentations.py, evaluate.py",
            values={"encoder": "resnet50, last BN of each block zero-init", "batch": "2048",
                    "epochs": "1000", "optimizer": IMAGENET_LARS,
                    "learning rate": lr_text(0.2, "linear", 2048),
                    "schedule": "10 warmup epochs from 0, cosine to 0.001 x peak",
                    "weight decay": wd_text(1e-6), "method.cov_coeff": "1",
                    "method.proj_dim": "8192", "method.proj_hidden_dims": "8192-8192",
                    "method.sim_coeff": "25", "method.std_coeff": "25", **BYOL_VIEWS_224,
                    "linear probe": "— 100 epochs, batch 256: SGD lr 0.02 (README), weight "
                                    "decay 1e-6, cosine, on random crops and flips "
                                    "(evaluate.py)"}),
    },
}

def replace_between_markers(text, table):
    start, end = text.index(MARKERS[0]) + len(MARKERS[0]), text.index(MARKERS[1])
    return text[:start] + "\n" + table + text[end:]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="update docs/recipes.md")
    args = parser.parse_args()
    table = render()
    if not args.write:
        print(table)
        return
    with open(DOC) as f:
        text = f.read()
    with open(DOC, "w") as f:
        f.write(replace_between_markers(text, table))
    print(f"wrote {DOC}")


if __name__ == "__main__":
    main()
