"""Quick-Thoughts (Logeswaran & Lee 2018, "An efficient framework for learning sentence
representations", arXiv:1803.02893): a sentence's neighbours in running text are its
positives, the rest of the batch its negatives (``cl_jax.methods.quick_thoughts``).

Presets (``--config=quick_thoughts:<preset>``):

pydoc (default) — the running prose of the Python reference manual that ships with CPython
  (``pydoc_data``: about 2,000 sentences in 79 topics), in runs of 8 consecutive sentences,
  batch 16 runs (128 candidates), the small bidirectional text tower of ``simcse`` (2,000
  sentencepiece pieces: the manual's text has fewer than 3,000 to give) as ``f``
  and ``g``, evaluated on WordNet like the other sentence methods (the embedding is
  ``[f(s); g(s)]``). A small corpus: expect little beyond the random-init baseline.
    python -m cl_jax.main --config=quick_thoughts --workdir=runs/qt
lines — your ordered text: ``--config.data.train_file=FILE`` (one sentence a line, blank lines
  between documents). The paper's recipe: BookCorpus (74M sentences), batch 400 contiguous
  sentences, context size 3 (previous and next), Adam lr 5e-4, GRU encoders of 2400 units,
  evaluated by SentEval's classification probes (MR, CR, SUBJ, MPQA, TREC, MSRP, SICK); the
  paper's table numbers were not checked here. Transformers replace the GRUs.
"""

from cl_jax.configs.simcse import sentence_config
from cl_jax.errors import ConfigError

PRESETS = ("pydoc", "lines")


def get_config(preset=PRESETS[0]):
    if preset not in PRESETS:
        raise ConfigError(f"Unknown preset {preset!r}; choose one of {', '.join(PRESETS)}.")
    c = sentence_config(dict(name="quick_thoughts", cutoff="", cutoff_ratio=0.0), "wordnet")
    c.data.update(source="pydoc" if preset == "pydoc" else "lines", train_split="train",
                  text_chunk=8)
    c.model.text.update(pooling="mean", dropout_rate=0.0,
                        vocab_size=2000 if preset == "pydoc" else 4000)  # pydoc: ~2,800 max
    c.optim.base_lr = 5e-4
    c.batch_size = 16
    c.total_steps = 500
    return c
