"""CERT (Fang et al. 2020, "CERT: Contrastive Self-supervised Learning for Language
Understanding", arXiv:2005.12766): MoCo on (sentence, back-translation) pairs
(``cl_jax.methods.cert``).

Presets (``--config=cert:<preset>``):

wordnet (default) — a stand-in on the embedded WordNet derivative: (gloss, usage example) of
  one synset as the pair (not a paraphrase: no translation model can be downloaded here),
  the small bidirectional text tower of ``simcse``, queue 4,096, momentum 0.999, T = 0.2
  (MoCo v2's head and temperature), batch 64.
    python -m cl_jax.main --config=cert --workdir=runs/cert
pairs — your pairs: ``--config.data.train_file=FILE``, a TSV with ``sentence1`` and
  ``sentence2`` (or ``sentence`` / ``paraphrase``) columns, the second a back-translation made
  beforehand (the paper translates English to German and back, and to Chinese and back, with
  machine translation). The paper then fine-tunes BERT-large with MoCo on each GLUE task's
  own sentences before the task's fine-tuning; start from it with
  ``--config.model.text.init_from_hf=DIR``. The paper's MoCo settings (queue size, momentum,
  temperature) were not checked here: the values above are MoCo v2's (Chen et al. 2020).
"""

from cl_jax.configs.simcse import sentence_config
from cl_jax.errors import ConfigError

PRESETS = ("wordnet", "pairs")


def get_config(preset=PRESETS[0]):
    if preset not in PRESETS:
        raise ConfigError(f"Unknown preset {preset!r}; choose one of {', '.join(PRESETS)}.")
    method = dict(name="cert", temperature=0.2, queue_size=4096, momentum=0.999, pooler=True,
                  mlp_only_train=True, cutoff="", cutoff_ratio=0.0)
    c = sentence_config(method, "wordnet")
    c.data.train_split = "gloss_example"
    if preset == "pairs":
        c.data.update(source="pairs", train_split="train")
    return c
