"""The embedded glyph image-text data set: rendering, splits, captions, scripts, cache."""

import json
import unicodedata

import numpy as np
import pytest
from matplotlib import ft2font

from cl_jax.data import glyphs
from cl_jax.errors import DataError

# ASCII (with space, a separator), Greek, Cyrillic, box drawings, super- and subscript two,
# a glyph wider than the image (PER TEN THOUSAND SIGN), one arrow, a blank glyph (BRAILLE
# PATTERN BLANK) and a combining mark (COMBINING ACUTE ACCENT).
SUBSET = (list(range(0x20, 0x7F)) + list(range(0x391, 0x3CA)) + list(range(0x410, 0x450))
          + list(range(0x2500, 0x2580)) + [0xB2, 0x2082, 0x2031, 0x2192, 0x2800, 0x301])


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("glyph_cache"))


@pytest.fixture(scope="module")
def subset(cache):
    return glyphs.load(code_points=SUBSET, min_script_count=5, cache_dir=cache)


def _all(dataset):
    return [dataset[s] for s in glyphs.SPLITS]


def _image(dataset, char, font="DejaVuSans"):
    """The picture of ``char`` in a training font, wherever the split put it."""
    font_index = dataset.font_names.index(font)
    for split in _all(dataset):
        hit = np.flatnonzero((split.code_points == ord(char)) & (split.font == font_index))
        if len(hit):
            return split.images[hit[0], ..., 0]
    raise KeyError(char)


def _ink_rows_cols(image):
    return np.flatnonzero(image.any(axis=1)), np.flatnonzero(image.any(axis=0))


def test_script_of_known_code_points():
    expected = {0x41: "latin", 0xE1: "latin", 0x3B1: "greek", 0x410: "cyrillic",
                0x5D0: "hebrew", 0x661: "arabic", 0x6F1: "arabic", 0x2500: "box drawings",
                0x2800: "braille pattern", 0x1D400: "mathematical", 0x2192: "arrow",
                0x21: "punctuation", 0x31: "number", 0xA9: "symbol", 0x2B0: "letter",
                0x1F0A1: "playing card"}
    assert {cp: glyphs.script_of(cp) for cp in expected} == expected


def test_build_is_deterministic(subset, tmp_path):
    again = glyphs.load(code_points=SUBSET, min_script_count=5, cache_dir=str(tmp_path))
    assert again.script_names == subset.script_names and again.fonts_hash == subset.fonts_hash
    for a, b in zip(_all(subset), _all(again), strict=True):
        assert a.images.tobytes() == b.images.tobytes() and a.captions == b.captions
        for field in ("code_points", "font", "script"):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field))


def test_images_captions_and_filtering(subset):
    cps = np.concatenate([s.code_points for s in _all(subset)])
    for split in _all(subset):
        assert split.images.dtype == np.uint8 and split.images.shape[1:] == (32, 32, 1)
        flat = split.images.reshape(len(split), -1)
        assert flat.max(axis=1).min() > 0  # no blank image
        assert split.captions == [unicodedata.name(chr(c)).lower() for c in split.code_points]
        border = np.concatenate([split.images[:, [0, -1]].reshape(len(split), -1),
                                 split.images[:, :, [0, -1]].reshape(len(split), -1)], 1)
        assert not border.any()  # the one-pixel margin holds, even for PER TEN THOUSAND SIGN
    # The fonts do map BRAILLE PATTERN BLANK, SPACE and COMBINING ACUTE ACCENT...
    charmap = ft2font.FT2Font(glyphs.font_path("DejaVuSans")).get_charmap()
    assert {0x2800, 0x20, 0x301} <= charmap.keys()
    # ...but a blank glyph, a separator and a combining mark are dropped.
    assert not np.isin([0x2800, 0x20, 0x301], cps).any()
    assert "latin capital letter a" in subset["train"].captions + subset["eval_novel"].captions


def test_glyph_pictures_keep_size_and_position(subset):
    a, b = _image(subset, "A"), _image(subset, "B")
    assert np.abs(a.astype(int) - b).sum() > 20 * 255
    # Same baseline for the flat-bottomed x, z, n and '.' (round 'a' overshoots it by a
    # faint row); g and p descend below it; '-' sits above.
    bottom = {c: _ink_rows_cols(_image(subset, c))[0].max() for c in "xzn.agp-"}
    assert bottom["x"] == bottom["z"] == bottom["n"] == bottom["."] == bottom["a"] - 1
    assert bottom["g"] >= bottom["x"] + 4 and bottom["p"] >= bottom["x"] + 4
    assert bottom["-"] < bottom["x"] - 4
    # Superscript two above subscript two; '╴' left of '╶'; 'A' centred.
    sup, sub = (_ink_rows_cols(_image(subset, c))[0] for c in "\u00b2\u2082")
    assert sub.min() - sup.min() >= 6 and sub.max() - sup.max() >= 6
    assert _ink_rows_cols(_image(subset, "\u2574"))[1].max() <= \
        _ink_rows_cols(_image(subset, "\u2576"))[1].min()
    cols = np.arange(32)
    assert abs((a.sum(axis=0) * cols).sum() / a.sum() - 15.5) < 1.0
    # The ink is exactly what matplotlib's own text layout draws for 'A' at the same em.
    face = ft2font.FT2Font(glyphs.font_path("DejaVuSans"))
    face.set_size(24, 72)
    face.set_text("A", 0, ft2font.LoadFlags.NO_HINTING)
    face.draw_glyphs_to_bitmap()
    reference = np.asarray(face.get_image())
    crop = lambda im: im[np.ix_(*_ink_rows_cols(im))]
    np.testing.assert_array_equal(crop(a), crop(reference))


def test_splits_hold_out_a_font_and_code_points(subset, cache):
    train, eval_font, eval_novel = _all(subset)
    held_font = subset.font_names.index(glyphs.DEFAULT_EVAL_FONT)
    assert held_font not in train.font and held_font not in eval_novel.font
    assert set(eval_font.font.tolist()) == {held_font}
    assert not np.isin(eval_novel.code_points, train.code_points).any()
    assert np.isin(eval_font.code_points, train.code_points).all()
    pool = np.union1d(train.code_points, eval_novel.code_points)
    assert len(np.unique(eval_novel.code_points)) == round(0.1 * len(pool))
    other = glyphs.load(seed=1, code_points=SUBSET, min_script_count=5, cache_dir=cache)
    assert set(other["eval_novel"].code_points) != set(eval_novel.code_points)
    with pytest.raises(DataError, match="held-out font"):
        glyphs.load(fonts=("DejaVuSans",), code_points=SUBSET, cache_dir=cache)


def test_script_labels(subset):
    names = subset.script_names
    assert names == ("box drawings", "cyrillic", "greek", "latin", "number", "punctuation",
                     "symbol")  # sorted; 'arrow' has one code point, fewer than 5
    for split in _all(subset):
        for cp, label in zip(split.code_points, split.script, strict=True):
            expected = glyphs.script_of(int(cp))
            assert label == (names.index(expected) if expected in names else -1)
    scripts = np.concatenate([s.script for s in _all(subset)])
    cps = np.concatenate([s.code_points for s in _all(subset)])
    assert set(scripts[cps == 0x2192]) == {-1}  # the arrow
    assert set(scripts[cps == ord("A")]) == {names.index("latin")}
    assert set(scripts[cps == 0x2500]) == {names.index("box drawings")}


def test_cache_is_reused(subset, cache, monkeypatch):
    def fail(*args):
        raise AssertionError("rendered again")

    monkeypatch.setattr(glyphs, "render_font", fail)
    again = glyphs.load(code_points=SUBSET, min_script_count=5, cache_dir=cache)
    assert again["train"].images.tobytes() == subset["train"].images.tobytes()
    for other in ({"size": 24}, {"fonts": ("DejaVuSans", "DejaVuSerif")},
                  {"code_points": SUBSET[:-1]}):  # other settings: another cache file
        with pytest.raises(AssertionError, match="rendered again"):
            glyphs.load(**{"code_points": SUBSET, "cache_dir": cache, **other})


def test_full_set(tmp_path):
    dataset = glyphs.load(cache_dir=str(tmp_path))
    train, eval_font, eval_novel = _all(dataset)
    pool = np.union1d(train.code_points, eval_novel.code_points)
    assert len(pool) > 5000 and len(train) > 40000
    assert len(np.unique(eval_novel.code_points)) == round(0.1 * len(pool))
    assert min(s.images.reshape(len(s), -1).max(axis=1).min() for s in _all(dataset)) > 0
    # Prompts and class names use only words a caption-trained text encoder knows.
    words = set(glyphs.vocabulary(train.captions))
    assert len(words) > 1500
    for name in dataset.script_names:
        for template in glyphs.zero_shot_templates():
            assert set(template.format(name).split()) <= words, (template, name)
    summary = json.loads(json.dumps(glyphs.describe(dataset)))
    assert summary["fonts"] == list(glyphs.DEFAULT_FONTS)
    assert len(summary["fonts_hash"]) == 64  # SHA-256, and of the fonts in order:
    assert summary["fonts_hash"] != glyphs.fonts_hash(glyphs.DEFAULT_FONTS[::-1])
    assert summary["splits"]["eval_font"] == {
        "images": len(eval_font), "code_points": len(eval_font),
        "words": len(glyphs.vocabulary(eval_font.captions))}
    assert len(list(tmp_path.iterdir())) == 1  # the cache file; no temporary left behind
