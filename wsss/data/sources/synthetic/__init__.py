"""The built-in synthetic dataset: cluttered scenes that are hard in the ways WSSS is hard, with objects whose
class can be learnt from other images (docs/builtin-dataset.md).

`generate_dataset(root, {"train": 600, "val": 200}, seed=0)` writes a complete dataset in PASCAL VOC layout
(see `wsss.data.voc`) plus `parts/` (every object's body and marking, `wsss.data.parts`), `dataset.json` and
`diagnostics.json`, and returns the diagnostics. The pieces, in the order an image is made:

* `options`: the knobs (`DEFAULTS`) and the class tables. An object is a body carrying one small marking, a
  patch of the class's saturated colour in the class's pattern (`part_area` of the object): the strongest cue,
  so a tag-trained classifier lights it first. With `body_style: class` (the default) every body wears its
  class's style across the dataset, a colour family, a texture orientation and a period, each shared with other
  classes and faint (`body_texture_contrast`), together the class's own: a body's class can be learnt from
  other images, RCA's premise. `EARLIER_DESIGN` is the earlier generator's (bodies from a pool shared by all
  classes, so their class follows from the marking alone). `class_set: pretrain` shows other classes with cues of the same kinds (the pretraining stand-in).
* `backgrounds`: six texture families, sometimes two split by a line; "water" for the context class.
* `shapes`: random outlines and their placement (apart, touching or overlapping, bounded occlusion).
* `paint`: markings and bodies; distractors of no class wear neutral bodies and markings of no class.
* `scene`: one image: layout, paint, lighting and noise, masks, parts, an imperfect saliency map.
* `diagnostics`, `writer`: the per-split report and the files.

Every image comes from its own `numpy.random.default_rng(SeedSequence([seed, crc32(split), index]))`, so the
output is byte-identical for the same (splits, seed, options) and does not depend on generation order.
"""

from .backgrounds import BACKGROUND_TEXTURES, CONTEXT_TEXTURE
from .options import DEFAULTS, EARLIER_DESIGN, MARKINGS, class_names, class_table, class_weights, resolve_options
from .writer import GENERATOR, generate_dataset, generate_sample

__all__ = [
    "DEFAULTS", "EARLIER_DESIGN", "MARKINGS", "BACKGROUND_TEXTURES", "CONTEXT_TEXTURE", "GENERATOR",
    "class_names", "class_table", "class_weights", "resolve_options", "generate_dataset", "generate_sample",
]
