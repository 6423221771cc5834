"""The simulated marketplace's fixed vocabulary: taxonomy tree, words, colors, shapes and price bands.

The tree has up to 8 top-level categories of up to 6 leaves each. A leaf's id is ``"<top>.<leaf>"``
(e.g. ``"home.candles"``). Every node carries a few words: a leaf's first word is its head noun (the
word a shopper types first), the top-level words describe the whole category. Titles, tags and queries
are drawn from these words plus color words and generic marketing words. Each top-level category has its
own image shape and each leaf (by its index inside its category) its own fill pattern.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

#: top-level name -> (category words, {leaf name: leaf words (head noun first)})
TREE: dict[str, tuple[str, dict[str, str]]] = {
    "home": (
        "home decor cozy interior",
        {
            "candles": "candle soy wax scented votive pillar",
            "pillows": "pillow cushion throw cover linen sham",
            "rugs": "rug runner woven mat kilim jute",
            "vases": "vase ceramic bud flower pottery stoneware",
            "blankets": "blanket quilt knit afghan wool fleece",
            "lamps": "lamp lampshade light pendant sconce bulb",
        },
    ),
    "jewelry": (
        "jewelry jewellery fine dainty",
        {
            "necklaces": "necklace pendant chain choker locket charm",
            "rings": "ring band stacking signet engagement solitaire",
            "earrings": "earrings studs hoops dangle drop huggie",
            "bracelets": "bracelet bangle cuff beaded anklet link",
            "brooches": "brooch pin lapel enamel badge clasp",
            "watches": "watch wristwatch strap dial leather automatic",
        },
    ),
    "clothing": (
        "clothing apparel outfit wear",
        {
            "dresses": "dress maxi midi sundress gown wrap",
            "sweaters": "sweater cardigan pullover jumper knitwear chunky",
            "tshirts": "tshirt tee graphic shirt crewneck print",
            "scarves": "scarf shawl infinity silk pashmina stole",
            "hats": "hat beanie cap beret bucket fedora",
            "socks": "socks crew ankle stockings woolen knee",
        },
    ),
    "accessories": (
        "accessories everyday carry style",
        {
            "bags": "bag tote handbag purse crossbody backpack",
            "wallets": "wallet cardholder billfold leather coin clip",
            "belts": "belt buckle waist leather strap woven",
            "sunglasses": "sunglasses shades eyewear frames polarized retro",
            "keychains": "keychain keyring fob charm lanyard key",
            "hair": "hairclip scrunchie headband barrette bow comb",
        },
    ),
    "art": (
        "art artwork wall gallery",
        {
            "prints": "print poster giclee artprint botanical typography",
            "paintings": "painting oil acrylic canvas watercolor original",
            "photography": "photograph photo landscape film polaroid darkroom",
            "sculptures": "sculpture statue figurine bust carving bronze",
            "illustrations": "illustration drawing sketch ink pencil doodle",
            "tapestries": "tapestry macrame weaving embroidery hoop fiber",
        },
    ),
    "toys": (
        "toys kids play children",
        {
            "plush": "plush stuffed teddy bear plushie soft",
            "puzzles": "puzzle jigsaw pieces brainteaser wooden maze",
            "dolls": "doll dollhouse ragdoll figure miniature outfit",
            "blocks": "blocks building stacking montessori wooden bricks",
            "games": "game board card dice tabletop chess",
            "kites": "kite flying outdoor string tail windsock",
        },
    ),
    "craft": (
        "craft supplies diy making",
        {
            "yarn": "yarn skein merino wool chunky roving",
            "beads": "beads seed glass bead gemstone spacer",
            "fabric": "fabric cotton quilting fatquarter yardage print",
            "patterns": "pattern sewing knitting crochet pdf template",
            "stamps": "stamp rubber ink pad embossing carved",
            "paper": "paper cardstock scrapbook washi origami sticker",
        },
    ),
    "wedding": (
        "wedding bridal bride celebration",
        {
            "invitations": "invitation invite savethedate rsvp stationery card",
            "toppers": "caketopper topper cake acrylic mr mrs",
            "veils": "veil cathedral lace tulle blusher fingertip",
            "favors": "favor favors guest bonbonniere sweets thankyou",
            "guestbooks": "guestbook book signing album polaroid keepsake",
            "decorations": "decoration arch centerpiece garland signage table",
        },
    ),
}

#: color name -> RGB of a listing's main color (the ``c_color`` listing feature and the image fill)
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (200, 35, 40),
    "blue": (40, 80, 205),
    "green": (45, 150, 60),
    "black": (25, 25, 28),
    "white": (245, 245, 242),
    "pink": (240, 130, 180),
    "yellow": (240, 210, 40),
    "brown": (120, 75, 40),
    "purple": (130, 60, 170),
    "orange": (240, 140, 30),
    "teal": (30, 150, 150),
    "gray": (128, 128, 128),
}

#: generic words mixed into titles and tags (never informative about taxonomy, color or price)
GENERIC_WORDS = [
    "handmade",
    "vintage",
    "custom",
    "personalized",
    "gift",
    "unique",
    "rustic",
    "minimalist",
    "boho",
    "modern",
    "cute",
    "elegant",
    "small",
    "large",
    "set",
]

#: image shape of each top-level category, in TREE order
SHAPES = ("square", "ring", "triangle", "diamond", "star", "circle", "cross", "hexagon")
#: fill pattern of each leaf, by its index inside its top-level category
PATTERNS = ("solid", "hstripes", "vstripes", "checker", "hole", "dots")
#: price band names, cheapest first
PRICE_BANDS = ("budget", "mid", "premium")


@dataclass(frozen=True)
class Taxonomy:
    """The tree cut to ``n_top`` x ``n_leaves`` plus ``n_colors`` colors, as index arrays and word lists.

    Node ids: leaves are ``0 .. n_leaf_total-1`` (leaf ``l`` belongs to top ``l // n_leaves``), top-level
    categories are ``n_leaf_total + t``. ``words`` holds every word once; node ``k``'s words are
    ``words[word_start[k] : word_start[k] + word_count[k]]``.
    """

    tops: tuple[str, ...]
    leaf_ids: tuple[str, ...]
    n_leaves: int
    colors: tuple[str, ...]
    words: tuple[str, ...]
    word_start: np.ndarray
    word_count: np.ndarray

    @classmethod
    def build(cls, n_top: int, n_leaves: int, n_colors: int) -> Taxonomy:
        if not (1 <= n_top <= len(TREE) and 1 <= n_leaves <= 6 and 2 <= n_colors <= len(COLORS)):
            raise ValueError(
                f"taxonomy size out of range: {n_top=} (1..8) {n_leaves=} (1..6) {n_colors=} (2..12)"
            )
        tops = tuple(TREE)[:n_top]
        leaf_ids, node_words = [], []
        for top in tops:
            for leaf, words in list(TREE[top][1].items())[:n_leaves]:
                leaf_ids.append(f"{top}.{leaf}")
                node_words.append(words.split())
        node_words += [TREE[top][0].split() for top in tops]
        colors = tuple(COLORS)[:n_colors]
        vocab: list[str] = []
        starts, counts = [], []
        for ws in [*node_words, list(colors), GENERIC_WORDS]:
            starts.append(len(vocab))
            counts.append(len(ws))
            vocab += ws
        return cls(
            tops,
            tuple(leaf_ids),
            n_leaves,
            colors,
            tuple(vocab),
            np.asarray(starts, np.int32),
            np.asarray(counts, np.int32),
        )

    @property
    def n_leaf_total(self) -> int:
        return len(self.leaf_ids)

    @property
    def color_node(self) -> int:
        """Pseudo-node whose words are the color names (in color index order)."""
        return self.n_leaf_total + len(self.tops)

    @property
    def generic_node(self) -> int:
        return self.color_node + 1

    def top_of(self, leaf: np.ndarray) -> np.ndarray:
        return leaf // self.n_leaves

    def sample_words(self, rng: np.random.Generator, node: np.ndarray, *, head: bool = False) -> np.ndarray:
        """One word index per entry of ``node`` (the node's head noun when ``head``, else uniform)."""
        node = np.asarray(node)
        offset = 0 if head else rng.integers(0, self.word_count[node])
        return (self.word_start[node] + offset).astype(np.int32)

    def color_words(self, color: np.ndarray) -> np.ndarray:
        return (self.word_start[self.color_node] + np.asarray(color)).astype(np.int32)

    def join(self, columns: list[np.ndarray]) -> pl.Series:
        """Join word-index columns (``-1`` = no word) into space-separated strings, vectorized."""
        vocab = pl.Series("w", self.words, dtype=pl.String)
        names = [f"c{i}" for i in range(len(columns))]
        frame = pl.DataFrame({n: np.asarray(c, np.int32) for n, c in zip(names, columns, strict=True)})
        exprs = [pl.lit(vocab).gather(pl.when(pl.col(n) >= 0).then(pl.col(n))) for n in names]
        return frame.select(pl.concat_str(exprs, separator=" ", ignore_nulls=True).alias("s"))["s"]

    def to_json(self) -> dict:
        return {
            "tree": {
                top: [lf.split(".")[1] for lf in self.leaf_ids if lf.startswith(top + ".")]
                for top in self.tops
            },
            "leaf_ids": list(self.leaf_ids),
            "words": {
                **{lf: self.node_words(i) for i, lf in enumerate(self.leaf_ids)},
                **{t: self.node_words(self.n_leaf_total + i) for i, t in enumerate(self.tops)},
                "_generic": self.node_words(self.generic_node),
            },
            "colors": {c: list(COLORS[c]) for c in self.colors},
            "shapes": {t: SHAPES[i] for i, t in enumerate(self.tops)},
            "patterns": {lf: PATTERNS[i % self.n_leaves] for i, lf in enumerate(self.leaf_ids)},
        }

    def node_words(self, node: int) -> list[str]:
        s = int(self.word_start[node])
        return list(self.words[s : s + int(self.word_count[node])])
