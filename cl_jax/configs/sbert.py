"""Sentence-BERT (Reimers & Gurevych 2019, "Sentence-BERT: Sentence Embeddings using Siamese
BERT-Networks", arXiv:1908.10084): one encoder on both sentences of a pair, trained with
``method.objective`` (``cl_jax.methods.sbert``): ``softmax`` | ``cosine`` | ``cosent`` |
``triplet`` | ``mnrl``.

Presets (``--config=sbert:<preset>``):

wordnet (default) — ``mnrl`` (sentence-transformers' MultipleNegativesRankingLoss, scale 20) on
  the embedded WordNet derivative's (gloss, usage example, sibling-synset gloss) triples, mean
  pooling, the small text tower of ``simcse``; the same evaluators (WordNet's taxonomy STS
  proxy, category probes, definition -> word retrieval).
    python -m cl_jax.main --config=sbert --workdir=runs/sbert
  ``--config.method.objective=triplet`` trains the same triples with the triplet objective;
  ``cosine`` / ``cosent`` need scored pairs: ``--config.data.train_split=similarity_train``
  (WordNet synset pairs scored by Wu-Palmer similarity, disjoint from the evaluation pairs).
nli — ``softmax`` on your NLI file's labelled pairs (``--config.data.train_file=FILE``), the
  paper's recipe (section 4: SNLI + MNLI, one epoch, batch 16, Adam lr 2e-5, 10% linear
  warmup, mean pooling, 3 classes on ``[u; v; |u - v|]``) with ``--config.model.text.init_from_hf
  =DIR`` for BERT-base. Reported: 74.89 average STS for SBERT-NLI-base (table 1).
"""

from cl_jax.configs.simcse import sentence_config
from cl_jax.errors import ConfigError

PRESETS = ("wordnet", "nli")


def get_config(preset=PRESETS[0]):
    if preset not in PRESETS:
        raise ConfigError(f"Unknown preset {preset!r}; choose one of {', '.join(PRESETS)}.")
    method = dict(name="sbert", objective="mnrl", scale=20.0, margin=5.0, score_scale=1.0,
                  num_labels=3, pooler=False, mlp_only_train=False, cutoff="", cutoff_ratio=0.0)
    c = sentence_config(method, "wordnet")
    c.model.text.pooling = "mean"
    c.data.train_split = "gloss_example"
    if preset == "nli":
        c.method.objective = "softmax"
        c.data.update(source="nli", train_split="train", nli_form="pairs")
        c.batch_size = 16
        c.total_steps = -1
        c.num_epochs = 1.0
        c.optim.update(base_lr=2e-5, warmup_epochs=0.1, warmup_steps=-1, weight_decay=0.01)
    return c
