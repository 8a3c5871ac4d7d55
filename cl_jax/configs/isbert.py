"""IS-BERT (Zhang, He, Liu, Lim & Bing 2020, "An Unsupervised Sentence Embedding Method by
Mutual Information Maximization", EMNLP, arXiv:2009.12061): n-gram convolutions over the
token features and their mean as the sentence embedding, trained to maximise the
Jensen-Shannon mutual information between each token's n-gram feature and its sentence's
embedding against the other sentences of the batch (``cl_jax.methods.isbert``).

Presets (``--config=isbert:<preset>``):

wordnet (default) — the embedded WordNet 3.0 glosses (``cl_jax.data.wordnet``, 30,000), the
  small bidirectional text tower of ``simcse`` (2 layers, 128 wide, dropout 0.1) from scratch,
  convolutions of kernel sizes 1, 3, 5 with 256 channels each (a 768-dim embedding), JSD,
  batch 64, AdamW, evaluated on WordNet like the other sentence methods (``sts_spearman`` is
  a taxonomy proxy, not human STS; see ``simcse``).
    python -m cl_jax.main --config=isbert --workdir=runs/isbert
lines — your text: ``--config.data.train_file=FILE`` (one sentence a line).

The paper's recipe (the reference yanzhangnlp/IS-BERT, ``examples/training/nli/
unsupervised_training_nli.py`` and its ``SentenceTransformer.fit`` defaults): BERT-base
(uncased), max sequence length 128, the CNN of kernel sizes 1, 3, 5 with 256 channels each
and no activation in the code (the paper's eq. 1 has a ReLU: ``method.activation=relu``),
mean pooling; trained on the unlabelled sentences of SNLI + MultiNLI for one epoch, batch 32,
AdamW lr 2e-6 (eps 1e-7, no bias correction, weight decay 0.01), linear warmup over 10% of
the steps then linear decay, gradient norm clipped at 1, STS-B dev evaluated every 1000 steps
and the best model kept. Reported (IS-BERT-NLI, table 1): 66.58 average Spearman x 100 over
STS12-16, STS-B and SICK-R (69.21 on STS-B; the per-task values Papers with Code lists,
56.77 / 69.24 / 61.21 / 75.23 / 70.16 / 64.25 for STS12-16 and SICK-R, agree with that
average). To approach it, train ``lines`` on those
sentences with ``--config.model.text.init_from_hf=DIR`` (a local BERT), ``max_len=128``,
``batch_size=32``, ``optim.base_lr=2e-6``, ``optim.warmup_steps`` at a tenth of the run, and
STS-B as ``--config.eval.sts_file``.

What differs here by default: a small transformer trained from scratch instead of BERT-base
(hence lr 1e-3, not 2e-6), max length 32, no warmup, weight decay and gradient clipping,
optax's AdamW (with bias correction), no checkpoint selection on a development set; the
tower's own pooling is unused (``cls`` only puts a [bos] in front, BERT's [CLS]); and the
token features are zeroed at padding before the convolutions (the reference's convolutions
read the transformer's outputs at [PAD] positions, so there the last n-grams of a sentence
depend on the lengths of the rest of its batch).
"""

from cl_jax.configs.simcse import sentence_config
from cl_jax.errors import ConfigError

PRESETS = ("wordnet", "lines")


def get_config(preset=PRESETS[0]):
    if preset not in PRESETS:
        raise ConfigError(f"Unknown preset {preset!r}; choose one of {', '.join(PRESETS)}.")
    method = dict(name="isbert", measure="jsd", channels=256, kernel_sizes=(1, 3, 5),
                  activation="none")
    return sentence_config(method, preset)
