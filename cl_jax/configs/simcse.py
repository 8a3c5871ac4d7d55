"""SimCSE (Gao, Yao & Chen 2021, "SimCSE: Simple Contrastive Learning of Sentence
Embeddings", arXiv:2104.08821): two dropout passes of one sentence are a positive pair
(``cl_jax.methods.simcse``); supervised, NLI's entailment is the positive and its contradiction
a hard negative.

Presets (``--config=simcse:<preset>``):

wordnet (default) — unsupervised SimCSE on the embedded WordNet 3.0 derivative
  (``cl_jax.data.wordnet``): 30,000 glosses, a 2-layer, 128-wide bidirectional transformer
  from scratch (sentencepiece pieces trained on the glosses at the start of the run), [CLS]
  pooling with the MLP pooler in training only, dropout 0.1, T = 0.05, batch 64, AdamW
  (lr 1e-3, linear decay), 500 steps (about 4 minutes on a 2-core CPU). Deviation: besides
  the two dropout masks, each sentence loses each word with probability 0.2 (on the host,
  before it is duplicated) and its second view 20% of its tokens to token cutoff (ConSERT's,
  on the device). A small tower trained from scratch tells two dropout masks apart within
  100 steps (loss 0.004) and learns little from it; at 400 steps these gave STS 0.160 /
  kNN 0.297 / linear 0.335, against 0.143 / 0.266 / 0.307 with word dropout and mean pooling
  and 0.128 / 0.269 / 0.300 with dropout alone after 1000 steps (README: the table).
  ``--config.augment.word_dropout=0 --config.method.cutoff=`` is the paper's dropout-only
  SimCSE.
    python -m cl_jax.main --config=simcse --workdir=runs/simcse
  Prints ``sts_spearman`` on WordNet's similarity benchmark: synset pairs scored by their
  Wu-Palmer similarity in the noun hypernym hierarchy against the cosine of their gloss
  embeddings. That is a taxonomy proxy, not human STS: it rewards embeddings that place a
  gloss near glosses of nearby concepts. Also the whitened and BERT-flow variants, kNN and
  linear probes of the gloss embeddings by lexicographer category (45 classes), and
  definition -> word retrieval (``text_r@1``, ``text_r@10``). README has the numbers and the
  random-init baseline (``--config.total_steps=0``).
sup — supervised SimCSE on WordNet: (gloss, usage example) of one synset as the positive pair,
  a gloss of a sibling synset (another hyponym of the same hypernym) as the hard negative;
  the MLP pooler kept in evaluation, as the paper's supervised models.
lines — unsupervised, on your text: ``--config.data.train_file=FILE`` (one sentence per line).
nli — supervised, on your NLI file: ``--config.data.train_file=FILE`` (a TSV with
  ``sentence1``, ``sentence2``, ``label`` (entailment / neutral / contradiction), or
  ``anchor``, ``positive``, ``negative`` columns, or SimCSE's ``sent0``, ``sent1``,
  ``hard_neg``).
wiki1m, nli_paper — the paper's two recipes (section 3 and appendix A: BERT-base, [CLS],
  max length 32, T = 0.05, evaluated on the STS-B development set every 250 steps):
  - ``wiki1m``: unsupervised, 10^6 English Wikipedia sentences (``wiki1m_for_simcse.txt``), one
    epoch, batch 64, lr 3e-5, MLP pooler in training only. Reported: 76.25 average STS
    (Spearman x 100, table 5, SimCSE-BERT-base).
  - ``nli_paper``: supervised, SNLI + MNLI triples (``nli_for_simcse.csv``: 275,601), 3 epochs,
    batch 512, lr 5e-5, MLP pooler kept. Reported: 81.57 average STS.
  Both need what cannot be downloaded here: the data file (``--config.data.train_file``), a
  local Hugging Face BERT directory (``--config.model.text.init_from_hf=DIR``) and STS-B
  (``--config.eval.sts_file=FILE`` or ``--config.eval.sts_tfds=glue/stsb:validation`` after
  ``tfds build glue/stsb``). Deviations: no checkpoint selection on STS-B dev (the paper keeps
  the best of the 250-step evaluations); the HF trainer's AdamW is optax's adamw with the same
  linear decay and no warmup.
"""

from cl_jax import config_lib
from cl_jax.errors import ConfigError

PRESETS = ("wordnet", "sup", "lines", "nli", "wiki1m", "nli_paper")


def sentence_config(method, preset):
    """Text data, a small bidirectional text tower, AdamW and the text evaluators."""
    c = config_lib.base_config()
    c.online_probe = False
    c.method = method
    c.data.update(source="wordnet", train_split="glosses", eval_train_split="categories_train",
                  eval_test_split="categories_test", **config_lib.NO_VALIDATION_SPLIT,
                  extra_eval_splits=("sts", "definitions", "probe"),
                  text_limit=30_000, text_eval_limit=10_000, tokenizer_captions=200_000)
    c.augment.update(num_global_views=0)
    c.model.update(encoder="text", text=config_lib.text_tower(
        vocab_size=4000, width=128, depth=2, num_heads=4, max_len=32, causal=False,
        pooling="cls", dropout_rate=0.1))
    c.optim.update(name="adamw", base_lr=1e-3, lr_scaling="none", warmup_steps=0,
                   schedule="linear", weight_decay=0.0, b1=0.9, b2=0.999)
    c.batch_size = 64
    c.total_steps = 500
    c.log_every_steps = 100
    c.eval.update(batch_size=512)
    probe = dict(epochs=-1.0, steps=1000, batch_size=1024, lr=0.01, weight_decay=1e-4)
    c.evals = dict(
        sts=dict(type="sts", every_steps=0, split="sts", whiten=True, whiten_dim=0,
                 flow=True),
        knn=dict(type="knn", every_steps=0, k=20, temperature=0.07),
        linear=dict(type="linear", every_steps=0, **probe),
        definitions=dict(type="text_retrieval", every_steps=0, split="definitions",
                         ks=(1, 10)),
        probe=dict(type="sentence_probe", every_steps=0, split="probe", folds=10, **probe))
    if preset == "wordnet":  # from scratch, dropout alone is too easy a task (see above)
        c.augment.word_dropout = 0.2
        c.method.update(cutoff="token", cutoff_ratio=0.2)
        return c
    if preset == "sup":
        c.data.update(train_split="gloss_example")
        return c
    if preset in ("lines", "nli", "wiki1m", "nli_paper"):
        return user_text_preset(c, preset)
    raise ConfigError(f"Unknown preset {preset!r}; choose one of {', '.join(PRESETS)}.")


def user_text_preset(c, preset):
    """Training on the user's file; the probes and retrieval stay on WordNet, STS on the
    user's file when ``eval.sts_file`` is set (else WordNet's proxy)."""
    c.data.update(source="nli" if preset in ("nli", "nli_paper") else "lines",
                  train_split="train", nli_form="triples")
    if preset in ("wiki1m", "nli_paper"):
        c.model.text.update(max_len=32, dropout_rate=0.1, pooling="cls")
        c.optim.update(base_lr=3e-5 if preset == "wiki1m" else 5e-5)
        c.batch_size = 64 if preset == "wiki1m" else 512
        c.total_steps = -1
        c.num_epochs = 1.0 if preset == "wiki1m" else 3.0
        c.eval_every_steps = 250
        c.checkpoint_every_steps = 1000
    return c


def get_config(preset=PRESETS[0]):
    sup = preset in ("sup", "nli", "nli_paper")
    method = dict(name="simcse", temperature=0.05, hard_negative_weight=0.0, pooler=True,
                  mlp_only_train=not sup, cutoff="", cutoff_ratio=0.0)
    return sentence_config(method, preset)
