"""How each view of an example is made: one ``ViewAugment`` per view. No TensorFlow, so the
train step (device-side colour augmentation) can read them too."""

import dataclasses


@dataclasses.dataclass(frozen=True)
class ViewAugment:
    """How one view is made. Probabilities of 0 or 1 skip the random draw entirely."""

    size: int
    crop_scale: tuple = (0.08, 1.0)
    crop_ratio: tuple = (3 / 4, 4 / 3)
    flip_prob: float = 0.5
    jitter_prob: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.2
    hue: float = 0.1
    grayscale_prob: float = 0.2
    blur_prob: float = 0.0
    blur_sigma: tuple = (0.1, 2.0)
    solarize_prob: float = 0.0
    # RandAugment / AutoAugment after the crop and flip (cl_jax.data.randaugment): the
    # ``augment`` config's fields, the same for every view.
    randaugment_num_ops: int = 0
    randaugment_magnitude: int = 9
    randaugment_ops: str = "paper"
    autoaugment: str = ""

    @classmethod
    def from_config(cls, config):
        fields = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in config.items() if k in fields}
        for key in ("crop_scale", "crop_ratio", "blur_sigma"):
            if key in values:
                values[key] = tuple(values[key])
        return cls(**values)


def view_augments(augment_config):
    """The views of one example: ``view1``, ``view2`` (``num_global_views`` of them), then
    ``num_local_views`` copies of ``local`` (multi-crop, Caron et al. 2020)."""
    c = augment_config
    views = [c.view1, c.view2][: c.num_global_views] + [c.local] * c.num_local_views
    shared = {k: c[k] for k in POLICY_FIELDS}
    return [ViewAugment.from_config({**v, **shared}) for v in views]


POLICY_FIELDS = ("randaugment_num_ops", "randaugment_magnitude", "randaugment_ops",
                 "autoaugment")
