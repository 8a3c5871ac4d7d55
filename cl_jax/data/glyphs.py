"""The embedded image-text data set: Unicode glyphs and their names.

Every named code point that the fonts bundled with matplotlib cover is rendered to a small
grayscale image and paired with its lowercased name from Python's ``unicodedata``
(U+00E1 -> "latin small letter a with acute"). It needs no download, so the CLIP, SigLIP
and LiT defaults train on it anywhere matplotlib is installed.

Splits, all deterministic from ``seed``:
  train       the training fonts' images of the training code points;
  eval_font   the held-out font's images of the training code points (a new style for
              names seen in training);
  eval_novel  the training fonts' images of a held-out ``eval_fraction`` of the code points,
              never seen in training with any font (zero-shot names).
The held-out font's images of held-out code points belong to no split, so each evaluation
measures one kind of novelty.

Each image also carries a coarse script label for zero-shot classification (``script_of``),
scored with CLIP's prompt ensembling (Radford et al., 2021, "Learning Transferable Visual
Models From Natural Language Supervision", Sec. 3.1.4) over ``zero_shot_templates()``.

The set is a function of the installed fonts, of the Unicode version of ``unicodedata`` and
of matplotlib's FreeType: ``describe`` records all three for the run's workdir. Rendering
takes a few seconds; the result is cached as a compressed .npz keyed by all of them.
"""

import dataclasses
import hashlib
import json
import os
import tempfile
import unicodedata

import matplotlib
import numpy as np
from matplotlib import ft2font

from cl_jax.errors import DataError

# Four faces each of DejaVu Sans, Sans Mono, Serif and STIXGeneral. Left out: LastResortHE
# (a placeholder glyph for every code point), the Display and STIX size variants (a few
# dozen glyphs each), STIXNonUnicode (private use code points, which have no names) and the
# TeX cm* fonts (their cmaps follow TeX's encodings, not Unicode).
DEFAULT_FONTS = (
    "DejaVuSans", "DejaVuSans-Bold", "DejaVuSans-Oblique", "DejaVuSans-BoldOblique",
    "DejaVuSansMono", "DejaVuSansMono-Bold", "DejaVuSansMono-Oblique",
    "DejaVuSansMono-BoldOblique",
    "DejaVuSerif", "DejaVuSerif-Bold", "DejaVuSerif-Italic", "DejaVuSerif-BoldItalic",
    "STIXGeneral", "STIXGeneralBol", "STIXGeneralItalic", "STIXGeneralBolIta",
)
# Named, not drawn from the seed: the evaluation set's size then does not jump with the seed
# (the fonts cover 1,000 to 5,600 code points). Its bold and italic faces stay in training.
DEFAULT_EVAL_FONT = "DejaVuSerif"
SPLITS = ("train", "eval_font", "eval_novel")

# Letters, numbers, punctuation and symbols. Left out: marks (combining marks, drawn around
# a dotted circle or offset from the origin), separators (blank) and Other (controls, format
# characters, private use: unnamed or invisible).
KEPT_CATEGORIES = "LNPS"

# Bumped whenever the rendering below changes, so stale caches are not reused.
RENDER_VERSION = 1

# --- script labels ---------------------------------------------------------------------

# Unicode name prefix -> class name; the first match wins. Class names are words of the
# names themselves ("box drawings", not "box drawing"), so a text encoder that learned its
# vocabulary from the captions knows them.
NAME_PREFIXES = (
    ("LATIN", "latin"), ("GREEK", "greek"), ("COPTIC", "coptic"), ("CYRILLIC", "cyrillic"),
    ("ARMENIAN", "armenian"), ("HEBREW", "hebrew"), ("ARABIC", "arabic"),
    ("EXTENDED ARABIC-INDIC", "arabic"), ("NKO", "nko"), ("GEORGIAN", "georgian"),
    ("CANADIAN SYLLABICS", "canadian syllabics"), ("OGHAM", "ogham"),
    ("TIFINAGH", "tifinagh"), ("LAO", "lao"), ("LISU", "lisu"), ("OLD ITALIC", "old italic"),
    ("BRAILLE PATTERN", "braille pattern"), ("BOX DRAWINGS", "box drawings"),
    ("MATHEMATICAL", "mathematical"), ("DOMINO TILE", "domino tile"),
    ("PLAYING CARD", "playing card"),
)
MAJOR_CLASSES = {"L": "letter", "N": "number", "P": "punctuation", "S": "symbol"}


def script_of(code_point):
    """The coarse script class of a named code point, from its Unicode name.

    Python's ``unicodedata`` has no Script property, so the rule reads the name: (1) the
    first prefix of ``NAME_PREFIXES`` the name starts with, as a whole word or followed by a
    hyphen ("ARABIC-INDIC DIGIT ONE" -> arabic); (2) a symbol whose name has the word ARROW
    -> "arrow"; (3) else the general category's major class: letter, number, punctuation,
    symbol. U+0041 -> latin, U+03B1 -> greek, U+2500 -> box drawings, U+2192 -> arrow,
    U+0021 -> punctuation.
    """
    name = unicodedata.name(chr(code_point))
    for prefix, script in NAME_PREFIXES:
        if name == prefix or name.startswith((prefix + " ", prefix + "-")):
            return script
    category = unicodedata.category(chr(code_point))[0]
    if category == "S" and "ARROW" in name.split():
        return "arrow"
    return MAJOR_CLASSES[category]


def zero_shot_templates():
    """Prompt templates for zero-shot script classification; a class's text embedding is
    the normalized mean of its prompts' embeddings (CLIP's prompt ensembling, Radford et
    al., 2021, Sec. 3.1.4). Every word is a word of the captions, so none is out of the
    vocabulary of a word-level text encoder trained on them ("a photo of" would be)."""
    return ("{}", "{} letter", "{} small letter", "{} capital letter", "{} sign",
            "{} symbol")


# --- fonts -----------------------------------------------------------------------------


def font_dir():
    return os.path.join(matplotlib.get_data_path(), "fonts", "ttf")


def available_fonts():
    """The names (file stems) of every TrueType font matplotlib ships."""
    return sorted(f[:-4] for f in os.listdir(font_dir()) if f.endswith(".ttf"))


def font_path(name):
    path = os.path.join(font_dir(), name + ".ttf")
    if not os.path.isfile(path):
        raise DataError(f"matplotlib ships no font {name!r}; it has {available_fonts()}.")
    return path


def fonts_hash(fonts):
    """SHA-256 over the fonts' names and file contents, in order."""
    digest = hashlib.sha256()
    for name in fonts:
        with open(font_path(name), "rb") as f:
            digest.update(f"{name}\0{hashlib.sha256(f.read()).hexdigest()}\0".encode())
    return digest.hexdigest()


def covered_code_points(font):
    """The sorted code points the font's cmap maps to a real glyph (not .notdef) that have
    a Unicode name and a general category in ``KEPT_CATEGORIES``."""
    charmap = ft2font.FT2Font(font_path(font)).get_charmap()
    return np.array(sorted(
        cp for cp, glyph in charmap.items()
        if glyph and unicodedata.name(chr(cp), "")
        and unicodedata.category(chr(cp))[0] in KEPT_CATEGORIES), np.int32)


# --- rendering -------------------------------------------------------------------------


def _bitmap_box(glyph):
    """The glyph's bitmap in whole pixels around its origin: left, right, top, bottom (y up).
    FreeType rounds the 26.6 fixed-point outline box outwards."""
    x0, y0, x1, y1 = glyph.bbox
    return x0 // 64, -(-x1 // 64), -(-y1 // 64), y0 // 64


def render_font(font, code_points, size=32):
    """uint8 images (N, size, size) of the font's glyphs, ink 255 on 0, unhinted, 8-bit
    antialiased.

    Every font gets the same em (3/4 of ``size``) and baseline (row 0.78 ``size``), and the
    glyph's advance box is centred horizontally: relative size and position survive, so "."
    and "●", "²" and "₂", "╴" and "╶" differ. A glyph is shifted inwards when it would leave
    the one-pixel margin, and one larger than the image is scaled down to fit and centred.
    """
    face = ft2font.FT2Font(font_path(font))
    em, baseline, margin = round(0.75 * size), round(0.78 * size), 1
    room = size - 2 * margin
    face.set_size(em, 72)  # 72 dpi: points are pixels
    images = np.zeros((len(code_points), size, size), np.uint8)
    for image, cp in zip(images, code_points, strict=True):
        glyph = face.load_char(int(cp), ft2font.LoadFlags.NO_HINTING)
        left, right, top, bottom = _bitmap_box(glyph)
        if right - left <= room and top - bottom <= room:
            x = (size - glyph.horiAdvance / 64) // 2
            x = int(min(max(x, margin - left), size - margin - right))
            y = min(max(baseline - top, margin), size - margin - (top - bottom))
        else:
            scale = 1.0
            while right - left > room or top - bottom > room:
                scale *= 0.99 * min(room / (right - left), room / (top - bottom))
                face.set_size(em * scale, 72)
                glyph = face.load_char(int(cp), ft2font.LoadFlags.NO_HINTING)
                left, right, top, bottom = _bitmap_box(glyph)
            face.set_size(em, 72)
            x = (size - (right - left)) // 2 - left
            y = (size - (top - bottom)) // 2
        face.draw_glyph_to_bitmap(image, x, y, glyph)  # draws the bitmap at (x + left, y)
    return images


def default_cache_dir():
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(root, "cl_jax")


def _render_key(fonts, size, code_points):
    """What the rendered set depends on; hashed into the cache file's name."""
    return {"fonts": list(fonts), "fonts_hash": fonts_hash(fonts), "size": size,
            "code_points": None if code_points is None else [int(c) for c in code_points],
            "unidata_version": unicodedata.unidata_version,
            "matplotlib": matplotlib.__version__,
            "freetype": ft2font.__freetype_version__, "render_version": RENDER_VERSION}


def render_all(fonts, size=32, code_points=None, cache_dir=None):
    """Every (font, covered code point) image, blank ones dropped, ordered by font and code
    point: {'images' (N, size, size) uint8, 'code_points' int32, 'font' int32 index into
    ``fonts``}. ``code_points`` (optional) restricts the set. Cached under ``cache_dir``
    (default ``default_cache_dir()``), written atomically."""
    key = _render_key(fonts, size, code_points)
    cache_dir = cache_dir or default_cache_dir()
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    path = os.path.join(cache_dir, f"glyphs-{size}px-{digest}.npz")
    if os.path.exists(path):
        with np.load(path) as cached:
            return {k: cached[k] for k in ("images", "code_points", "font")}
    images, cps, font_index = [], [], []
    for i, font in enumerate(fonts):
        covered = covered_code_points(font)
        if code_points is not None:
            covered = covered[np.isin(covered, np.asarray(code_points))]
        rendered = render_font(font, covered, size)
        inked = rendered.reshape(len(rendered), -1).any(axis=1)  # blank glyphs: NaN losses
        images.append(rendered[inked])
        cps.append(covered[inked])
        font_index.append(np.full(int(inked.sum()), i, np.int32))
    result = {"images": np.concatenate(images), "code_points": np.concatenate(cps),
              "font": np.concatenate(font_index)}
    os.makedirs(cache_dir, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=cache_dir, suffix=".npz.tmp", delete=False) as f:
        np.savez_compressed(f, key=json.dumps(key), **result)
    os.replace(f.name, path)
    return result


# --- the data set ----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class GlyphSplit:
    images: np.ndarray  # uint8 (N, H, W, 1), ink 255 on 0
    captions: list  # N lowercased Unicode names
    code_points: np.ndarray  # int32 (N,)
    font: np.ndarray  # int32 (N,), index into GlyphDataset.font_names
    script: np.ndarray  # int32 (N,), index into GlyphDataset.script_names; -1: a rare class

    def __len__(self):
        return len(self.code_points)


@dataclasses.dataclass(frozen=True)
class GlyphDataset:
    splits: dict  # split name (SPLITS) -> GlyphSplit
    font_names: tuple
    eval_font: str
    fonts_hash: str
    script_names: tuple  # the zero-shot classes, sorted
    size: int
    seed: int

    def __getitem__(self, split):
        return self.splits[split]


def caption(code_point):
    return unicodedata.name(chr(code_point)).lower()


def _script_labels(code_points, min_script_count):
    """(int32 label per code point, sorted class names): the classes of ``script_of`` that
    at least ``min_script_count`` distinct code points have; the rest get -1."""
    unique, inverse = np.unique(code_points, return_inverse=True)
    scripts = np.array([script_of(int(cp)) for cp in unique])
    names, counts = np.unique(scripts, return_counts=True)
    kept = tuple(str(n) for n in names[counts >= min_script_count])
    labels = np.array([kept.index(s) if s in kept else -1 for s in scripts], np.int32)
    return labels[inverse], kept


def load(seed=0, size=32, fonts=DEFAULT_FONTS, eval_font=DEFAULT_EVAL_FONT,
         eval_fraction=0.1, min_script_count=50, code_points=None, cache_dir=None):
    """The glyph data set's three splits (see the module docstring).

    The held-out code points are ``round(eval_fraction * n)`` of the n code points that
    some training font covers, drawn with ``np.random.RandomState(seed)``. Script classes
    with fewer than ``min_script_count`` code points over all fonts are labelled -1 and
    are left out of ``script_names``. ``code_points`` restricts the set (tests).
    """
    fonts = tuple(fonts)
    if eval_font not in fonts:
        raise DataError(f"The held-out font {eval_font!r} is not one of the fonts {fonts}.")
    rendered = render_all(fonts, size, code_points, cache_dir)
    cps, font = rendered["code_points"], rendered["font"]
    is_eval_font = font == fonts.index(eval_font)
    pool = np.unique(cps[~is_eval_font])
    novel = np.random.RandomState(seed).choice(pool, round(eval_fraction * len(pool)),
                                               replace=False)
    is_novel = np.isin(cps, novel)
    masks = {"train": ~is_eval_font & ~is_novel,
             "eval_font": is_eval_font & ~is_novel & np.isin(cps, pool),
             "eval_novel": ~is_eval_font & is_novel}
    script, script_names = _script_labels(cps, min_script_count)
    splits = {name: GlyphSplit(images=rendered["images"][m][..., None],
                               captions=[caption(int(c)) for c in cps[m]],
                               code_points=cps[m], font=font[m], script=script[m])
              for name, m in masks.items()}
    return GlyphDataset(splits, fonts, eval_font, fonts_hash(fonts), script_names, size, seed)


def vocabulary(captions):
    """The sorted distinct words (split at spaces) of the captions."""
    return sorted({word for c in captions for word in c.split()})


def describe(dataset):
    """A JSON-able summary for the run's workdir: what the set was made from, and its
    sizes (images, distinct code points, distinct caption words per split)."""
    return {
        "fonts": list(dataset.font_names), "eval_font": dataset.eval_font,
        "fonts_hash": dataset.fonts_hash, "font_dir": font_dir(),
        "matplotlib": matplotlib.__version__, "freetype": ft2font.__freetype_version__,
        "unidata_version": unicodedata.unidata_version, "size": dataset.size,
        "seed": dataset.seed, "script_names": list(dataset.script_names),
        "splits": {name: {"images": len(s), "code_points": len(np.unique(s.code_points)),
                          "words": len(vocabulary(s.captions))}
                   for name, s in dataset.splits.items()},
    }
