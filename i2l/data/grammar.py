"""The formula grammar: seeded random formulas in Im2Latex-100K's normalized token style, and their statistics.

A small hand-written random grammar (weights chosen by hand, no real formula copied): an equation is
expressions joined by relations; an expression is terms joined by binary operators and spacing commands; a
term is a symbol with sub/superscripts, a fraction, a root, a bracketed expression (``( )``,
``\\left( \\right)``, ``[ ]``, ``\\{ \\}``, ``| |``, ``\\langle \\rangle``), a function application, a big
operator with limits, an accent, a font command, an array or matrix, nested to a random depth. Tokens are
separated by single spaces and every group is braced, like the output of the dataset's normalizer:
``\\frac { a } { b }``, ``x _ { i } ^ { 2 }``, ``\\mathrm { e f f }``.

- the token tables (``GREEK``, ``RELATION``, ``BRACKETS`` ...) and ``TERM_WEIGHTS``: what is drawn, how often
  (the full level's token shares tuned against real validation formulas, see ``TARGET_SHARES`` in
  tests/test_grammar.py); ``NOTATION``: per-formula habits (a formula with a prime, an accent, a font switch or
  a spacing command often has several); ``FULL_TARGET_SCALE``: keeps the full level's lengths where they were;
- ``LEVELS``: ``"full"`` (Im2Latex-like) and ``"basic"`` (``BASIC_TABLES``, ``BASIC_LENGTH``: short formulas
  in which every token is visible);
- :class:`FormulaGenerator` and :func:`generate_formulas`: the formulas, deterministic for a seed;
- :func:`compare_statistics` (with ``STRUCTURES``) and :func:`real_formulas_path`: generated formulas
  measured against real ones (token coverage, length, nesting depth, structure frequencies).

The synthetic datasets rendered from these formulas are in :mod:`i2l.data.synth`.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from i2l.errors import I2LError

# ============================================================================ vocabulary and weights
# (token, weight) tables, written by hand: the weights say how often a symbol shows up in physics/maths papers.
LOWER = "a b c d e f g h i j k l m n o p q r s t u v w x y z".split()
LOWER_W = [5, 3, 3, 5, 4, 3, 3, 2, 7, 3, 4, 3, 4, 5, 1, 4, 2, 4, 3, 4, 2, 2, 1, 7, 2, 3]
UPPER = "A B C D E F G H I J K L M N O P Q R S T U V W X Y Z".split()
UPPER_W = [5, 3, 3, 3, 2, 3, 3, 3, 2, 2, 2, 3, 3, 3, 1, 2, 2, 3, 3, 3, 2, 2, 2, 2, 1, 1]
# The full level's letter weights (the ones above are the basic level's), closer to the letters' shares in real
# formulas: the index letters (i, j, k, n ...) come from INDEX_LETTERS too.
LOWER_FULL_W = [6, 3, 3, 4, 4, 2, 3.2, 1.5, 5, 0.9, 1.7, 2.1, 2.5, 3.4, 0.8, 4, 2.2, 3.4, 2.1, 3.2, 1.6, 1.0, 0.8, 8, 2, 3]
UPPER_FULL_W = [6, 3, 2, 3, 1.8, 2.5, 2.2, 2.4, 2, 1.8, 1.4, 2.8, 2.8, 3, 0.7, 2.4, 1.7, 3, 2.8, 3,
                1.3, 2, 1.4, 2, 0.65, 1.2]
LETTER_SPLIT = (0.47, 0.72)  # the full level's letters: cumulative shares of lower case, upper case (then Greek)
GREEK = {
    "\\mu": 11.5, "\\alpha": 6.5, "\\nu": 5, "\\pi": 6.5, "\\phi": 6.5, "\\delta": 5.8, "\\lambda": 5.5,
    "\\beta": 3.6, "\\sigma": 4.6, "\\theta": 4.5, "\\gamma": 4.2, "\\psi": 3.9, "\\rho": 3.8, "\\omega": 3.4,
    "\\tau": 3.2, "\\epsilon": 3.2, "\\xi": 2.6, "\\eta": 2.6, "\\chi": 2, "\\varphi": 2, "\\kappa": 1.5,
    "\\zeta": 0.9, "\\varepsilon": 1.0, "\\vartheta": 0.2, "\\varrho": 0.15, "\\iota": 0.1, "\\upsilon": 0.04,
    "\\varsigma": 0.05, "\\varpi": 0.03,
    "\\Phi": 3, "\\Gamma": 2.3, "\\Delta": 2.2, "\\Lambda": 2.0, "\\Omega": 1.85, "\\Psi": 1.6,
    "\\Sigma": 0.95, "\\Pi": 0.5, "\\Theta": 0.4, "\\Xi": 0.1, "\\Upsilon": 0.03,
}
INDEX_LETTERS = {"i": 5, "j": 1.6, "k": 1.8, "m": 2, "n": 3, "p": 1.5, "q": 0.8, "r": 1, "s": 1.2, "t": 1}
# The full level's digits: real formulas write mostly single digits, 2 and 1 far ahead of 0, 3 and 4.
DIGITS = {"0": 10, "1": 19, "2": 30, "3": 2.9, "4": 2.3, "5": 0.65, "6": 0.5, "7": 0.2, "8": 0.4, "9": 0.2}
SPECIAL = {"\\partial": 10, "\\infty": 1.5, "\\nabla": 1.5, "\\hbar": 1, "\\ell": 1.2, "\\imath": 0.15,
           "\\jmath": 0.06, "\\wp": 0.12, "\\Re": 0.06, "\\Im": 0.06, "\\aleph": 0.03, "\\emptyset": 0.03}
BINARY = {"+": 10, "-": 8.5, "\\pm": 0.7, "\\mp": 0.15, "\\cdot": 0.55, "\\times": 0.3, "\\otimes": 0.3,
          "\\oplus": 0.1, "\\wedge": 0.3, "*": 0.4, "/": 1.6, "\\circ": 0.15, "\\cup": 0.05, "\\cap": 0.03,
          "\\ast": 0.2, "\\star": 0.15, "\\vee": 0.03, "\\bullet": 0.04}
RELATION = {"=": 44, "\\equiv": 2.3, "\\approx": 0.4, "\\sim": 0.7, "\\simeq": 0.3, "<": 1.5, ">": 1.5, "\\leq": 0.4,
            "\\geq": 0.3, "\\le": 0.15, "\\ge": 0.15, "\\neq": 0.3, "\\ne": 0.06, "\\propto": 0.15,
            "\\rightarrow": 0.3, "\\to": 0.5, "\\in": 0.6, "\\subset": 0.07, "\\subseteq": 0.07,
            "\\mapsto": 0.07, "\\Rightarrow": 0.08, "\\longrightarrow": 0.2, "\\leftrightarrow": 0.1,
            "\\Leftrightarrow": 0.03, "\\ll": 0.05, "\\gg": 0.08, "\\perp": 0.1, "\\parallel": 0.05,
            "\\cong": 0.03, "\\doteq": 0.03, "\\longleftrightarrow": 0.02, "\\Longrightarrow": 0.02,
            ":=": 0.0, ":": 0.3}
NEGATABLE = {"=", "\\in", "\\equiv", "\\sim", "\\subset", "<", ">"}  # relations written \not = ...
SPACING = {"\\,": 14, "\\;": 6.5, "~": 7, "\\": 1.5, "\\quad": 2, "\\!": 1.5, "\\qquad": 1.3, "\\:": 0.3}
SPACING_RUNS = {"~": 0.3, "\\;": 0.3, "\\!": 0.3, "\\,": 0.06}  # how often each is repeated: ~ ~ ~
# Spacing after the comma between two equations (``a = b , \quad c = d``): mostly the wide ones.
SEPARATOR_SPACING = {"\\quad": 7, "\\qquad": 6, "\\;": 2, "~": 2, "\\,": 1.5, "\\": 1}
PUNCT_END = {".": 7.5, ",": 5.5, ";": 0.1}
ACCENT = {"\\bar": 11, "\\tilde": 8.5, "\\hat": 8, "\\vec": 5.2, "\\dot": 5, "\\overline": 3.2,
          "\\widetilde": 1.2, "\\ddot": 0.4, "\\widehat": 0.6, "\\underline": 0.8, "\\check": 0.2,
          "\\breve": 0.06, "\\acute": 0.04}
FUNCTIONS = {"s i n": 4, "c o s": 3, "e x p": 3, "l o g": 2, "t r": 1, "T r": 2, "d e t": 1.5, "l n": 1,
             "s i n h": 0.5, "c o s h": 0.8, "t a n h": 0.5, "t a n": 0.6, "R e": 0.3, "I m": 0.3,
             "d i m": 0.3, "S t r": 0.2, "s g n": 0.2, "a r c t a n": 0.1, "d i a g": 0.2, "c o t": 0.1}
LIMIT_OPS = {"l i m": 4, "m a x": 1, "m i n": 1, "s u p": 0.4, "i n f": 0.2}
BIGOPS = {"\\sum": 10, "\\int": 13, "\\prod": 1.8, "\\oint": 0.6, "\\bigcup": 0.05, "\\bigotimes": 0.03,
          "\\bigoplus": 0.02, "\\bigwedge": 0.02}
MATHRM_WORDS = {"d": 5, "e": 3, "i": 2, "e f f": 1, "T r": 1, "c l": 0.3, "i n t": 0.3, "t o t": 0.3,
                "m i n": 0.2, "m a x": 0.2, "o u t": 0.2, "i n": 0.3, "c": 0.5, "R": 0.5, "t h": 0.2}
BRACKETS = [  # (open, close, weight)
    ("(", ")", 50), ("\\left(", "\\right)", 12), ("[", "]", 7), ("\\left[", "\\right]", 3.5),
    ("\\{", "\\}", 3.0), ("\\left\\{", "\\right\\}", 0.8), ("|", "|", 3.8), ("\\left|", "\\right|", 0.5),
    ("\\langle", "\\rangle", 2), ("\\left\\langle", "\\right\\rangle", 0.3), ("\\Big (", "\\Big )", 0.4),
    ("\\big (", "\\big )", 0.2), ("\\Bigl (", "\\Bigr )", 0.3), ("\\biggl [", "\\biggr ]", 0.2),
    ("\\bigl (", "\\bigr )", 0.2), ("\\Bigg (", "\\Bigg )", 0.1), ("\\Bigg [", "\\Bigg ]", 0.05),
    ("\\bigg (", "\\bigg )", 0.2), ("\\vert", "\\vert", 0.4),
    ("\\lbrack", "\\rbrack", 0.1), ("\\left\\{", "\\right.", 0.4), ("\\left.", "\\right|", 0.3),
    ("\\mid", "\\mid", 0.3), ("\\|", "\\|", 0.15), ("\\lbrace", "\\rbrace", 0.05),
    ("\\left<", "\\right>", 0.1), ("\\Biggl (", "\\Biggr )", 0.1),
    ("|", "\\rangle", 1.6), ("\\langle", "|", 0.4),  # Dirac's kets and bras: | \psi \rangle, \langle 0 |
]
SUFFIX_SYMBOLS = {"\\prime": 12, "\\dagger": 2.3, "*": 1.5, "\\ast": 0.4, "\\star": 0.3, "\\dag": 0.4}
DOTS = {"\\cdots": 3, "\\ldots": 2.5, "\\dots": 1, "\\vdots": 0.08}
MISC_ATOMS = {"!": 0.8, "\\forall": 0.3, "\\exists": 0.05, "\\triangle": 0.2, "\\bot": 0.1, "'": 0.3,
              "\\neg": 0.02, "\\angle": 0.02, "\\S": 0.03}

# Structure weights for a term (chosen by hand, then tuned against real statistics with compare_statistics).
TERM_WEIGHTS = {
    "symbol": 40, "number": 10, "product": 8, "frac": 6.5, "sqrt": 0.95, "bracket": 12, "function": 2.0,
    "limit": 0.25, "bigop": 2.3, "accent": 4.4, "font": 2.8, "array": 0.66, "group": 2.0, "dots": 0.8,
    "misc": 0.6, "stackrel": 0.1, "binom": 0.03, "style": 0.12,
}


# The "basic" level: short formulas of common symbols in which every token is visible, so that a transcription
# is determined by the image (no bare { } groups, spacing commands, synonyms such as \le / \leq, or
# delimiter sizes). A laptop CPU learns to read these in minutes (``cpu`` preset, ``make demo``).
LEVELS = ("full", "basic")
BASIC_TABLES: dict[str, dict[str, float]] = {
    "greek": {"\\mu": 10, "\\alpha": 7, "\\nu": 6, "\\pi": 5, "\\phi": 5, "\\delta": 4, "\\lambda": 4, "\\beta": 4,
              "\\sigma": 4, "\\theta": 3.5, "\\Phi": 2.2, "\\Gamma": 1.8},
    "special": {"\\partial": 10, "\\infty": 3},
    "binary": {"+": 10, "-": 13},
    "relation": {"=": 40, "<": 1, ">": 1},
    "punct": {",": 6, ".": 5},
    "suffix": {"\\prime": 8},
    "term": {"symbol": 40, "number": 12, "product": 8, "frac": 5, "sqrt": 0.7, "bracket": 11},
}
BASIC_LENGTH = (18.0, 10.0)  # mean and spread of the basic level's target length in tokens
# The full level's target length is scaled by this: its terms grew (spacing runs, function arguments, closing
# punctuation, a relation in nearly every formula) and the scale keeps the lengths that a given mean_len/std_len
# gives where they were (the reference preset's: mean 61, std 31, median 56 tokens).
FULL_TARGET_SCALE = 0.84
# Real formulas keep to their notation: most have no prime, accent, font switch or spacing command, and those
# that have one often have several. Each full-level formula draws a multiplier per feature: ``(q, a)`` means
# ``a`` with probability ``q``, else the multiplier that keeps the mean at 1, ``(1 - q a) / (1 - q)``; it
# scales the feature's chances in that formula (its ``term`` kind, primes, spacing, ``{ \cal X }`` capitals, the
# share of Greek letters).
NOTATION = {"prime": (0.12, 7.5), "accent": (0.22, 4.0), "font": (0.15, 5.5), "function": (0.25, 3.5),
            "spacing": (0.25, 3.5), "greek": (0.45, 1.9)}


def _table(d: dict[str, float]) -> tuple[list[str], list[float]]:
    keys = [k for k, w in d.items() if w > 0]
    return keys, [d[k] for k in keys]


class FormulaGenerator:
    """Seeded random formulas in the normalized token style; ``max_len`` caps the number of tokens.

    ``level="full"`` imitates Im2Latex-100K (its symbols, structures and lengths); ``level="basic"`` makes
    shorter formulas (``BASIC_LENGTH``) of common symbols, letters, numbers, scripts, fractions, roots and
    parentheses, in which every token is visible. ``mean_len``/``std_len`` default to the level's.
    """

    def __init__(self, seed: int = 0, max_len: int | None = None, mean_len: float | None = None,
                 std_len: float | None = None, level: str = "full") -> None:
        if level not in LEVELS:
            raise I2LError(f"unknown synthetic level {level!r}: choose one of {list(LEVELS)}")
        self.level = level
        default_mean, default_std = BASIC_LENGTH if level == "basic" else (36.0, 16.0)
        mean_len = default_mean if mean_len is None else mean_len
        std_len = default_std if std_len is None else std_len
        self.rng = random.Random(seed)
        self.max_len = max_len
        # A log-normal target length with the requested mean and spread.
        self._sigma = float(np.sqrt(np.log(1 + (std_len / mean_len) ** 2)))
        self._mu = float(np.log(mean_len) - self._sigma ** 2 / 2)
        self._tables = {name: _table(d) for name, d in {
            "greek": GREEK, "special": SPECIAL, "binary": BINARY, "relation": RELATION, "spacing": SPACING,
            "punct": PUNCT_END, "accent": ACCENT, "function": FUNCTIONS, "limit": LIMIT_OPS, "bigop": BIGOPS,
            "mathrm": MATHRM_WORDS, "suffix": SUFFIX_SYMBOLS, "dots": DOTS, "misc": MISC_ATOMS,
            "term": TERM_WEIGHTS, "digit": DIGITS, "separator": SEPARATOR_SPACING,
            "index": INDEX_LETTERS}.items()}
        if level == "basic":
            self._tables.update({name: _table(d) for name, d in BASIC_TABLES.items()})
        self._brackets = BRACKETS if level == "full" else [("(", ")", 1.0)]
        self.basic = level == "basic"
        self._lower_w, self._upper_w = (LOWER_W, UPPER_W) if self.basic else (LOWER_FULL_W, UPPER_FULL_W)
        self._letter_split = (0.58, 0.84) if self.basic else LETTER_SPLIT
        self._notation = dict.fromkeys(NOTATION, 1.0)  # this formula's multipliers (see NOTATION)

    # ------------------------------------------------------------------ helpers
    def _draw_notation(self) -> None:
        """The full level: this formula's NOTATION multipliers, and the term weights and letters they scale."""
        for feature, (q, a) in NOTATION.items():
            self._notation[feature] = a if self.chance(q) else (1 - q * a) / (1 - q)
        keys, _ = self._tables["term"]
        self._tables["term"] = (keys, [TERM_WEIGHTS[k] * self._notation.get(k, 1.0) for k in keys])
        lower, upper = LETTER_SPLIT
        greek = min(0.6, (1 - upper) * self._notation["greek"])
        self._letter_split = (lower / upper * (1 - greek), 1 - greek)

    def pick(self, table: str) -> str:
        """A weighted random key of one of the tables (``greek``, ``relation``, ``term`` ...)."""
        keys, weights = self._tables[table]
        return self.rng.choices(keys, weights)[0]

    def chance(self, p: float) -> bool:
        """True with probability ``p``."""
        return self.rng.random() < p

    def spacing(self, table: str = "spacing") -> list[str]:
        """A spacing command (``\\,``, ``\\quad`` ...), sometimes repeated as real formulas do (``~ ~ ~``,
        ``\\; \\;``, ``\\! \\!``); none at the basic level. ``table="separator"``: the wide spacing after a comma."""
        if self.basic:
            return []
        space = self.pick(table)
        if self.chance(SPACING_RUNS.get(space, 0.0)):
            return [space] * self.rng.choice([2, 2, 3, 3, 4])
        return [space]

    def letter(self) -> list[str]:
        """A Latin lower/upper case letter or a Greek letter."""
        r = self.rng.random()
        lower, upper = self._letter_split
        if r < lower:
            return [self.rng.choices(LOWER, self._lower_w)[0]]
        if r < upper:
            return [self.rng.choices(UPPER, self._upper_w)[0]]
        return [self.pick("greek")]

    def number(self) -> list[str]:
        """A digit (mostly small), a multi-digit number or a decimal."""
        if not self.basic and self.chance(0.9):
            return [self.pick("digit")]
        r = self.rng.random()
        if r < 0.55:
            return [self.rng.choice("1223344")]
        if r < 0.75:
            return [self.rng.choice("0123456789")]
        digits = [self.rng.choice("123456789")] + [self.rng.choice("0123456789")
                                                   for _ in range(self.rng.choice([1, 1, 2]))]
        if self.chance(0.3):
            digits = [self.rng.choice("0123")] + ["."] + digits
        return digits

    def index(self, depth: int) -> list[str]:
        """The inside of a sub/superscript: a letter, a number, index pairs, a small expression, a prime."""
        r = self.rng.random()
        if self.basic:
            if r < 0.45:
                return self.letter()
            if r < 0.7:
                return self.number()
            if r < 0.85 and depth < 3:
                return self.expression(depth + 1, self.rng.randint(2, 3))
            return [self.rng.choice("ijk"), "=", *self.number()]
        if r < 0.32:
            return self.letter() if self.chance(0.6) else [self.pick("index")]
        if r < 0.48:
            return self.number()
        if r < 0.60:
            return [self.pick("greek"), self.pick("greek")] if self.chance(0.5) else \
                [self.rng.choice("ijkmn"), self.rng.choice("ijklmn")]
        if r < 0.63:
            return ["\\mathrm", "{", *self.pick("mathrm").split(), "}"]
        if r < 0.74 and depth < 3:
            return self.expression(depth + 1, self.rng.randint(2, 4))
        if r < 0.80:
            return ["-", *self.number()] if self.chance(0.5) else [*self.letter(), self.rng.choice("+-"),
                                                                   *self.number()]
        if r < 0.86:
            return [self.rng.choice("ijk"), "=", *self.number()]
        if r < 0.9:
            return ["\\", self.rng.choice("abcmnrs")]
        return [self.rng.choice(["\\mu", "\\nu", "\\alpha", "\\beta", "i", "a"])]

    def scripts(self, base: list[str], depth: int, p_sub: float = 0.22, p_sup: float = 0.16) -> list[str]:
        """``base`` with an optional subscript and superscript (or a prime/dagger/star)."""
        out = list(base)
        if self.chance(p_sub):
            out += ["_", "{", *self.index(depth), "}"]
        if self.chance(0.013 if self.basic else 0.024 * self._notation["prime"]):
            suffix = self.pick("suffix")
            if not self.basic and suffix == "\\prime" and self.chance(0.1):
                out += ["^", "{", suffix, suffix, "}"]  # x ^ { \prime \prime }
            else:
                out += ["^", "{", suffix, "}"]
        elif self.chance(p_sup):
            sup = self.index(depth) if self.chance(0.65) else self.number()
            out += ["^", "{", *sup, "}"]
        return out

    # ------------------------------------------------------------------ terms
    def term(self, depth: int) -> list[str]:
        """One term; deeper terms prefer the simple kinds."""
        kind = self.pick("term")
        if depth >= 3 and kind in ("frac", "array", "bigop", "limit", "sqrt", "bracket", "stackrel", "binom"):
            kind = "symbol"
        if depth >= 2 and kind == "array":
            kind = "symbol"
        return getattr(self, "_" + kind)(depth)

    def _symbol(self, depth: int) -> list[str]:
        base = self.letter() if self.chance(0.88 if self.basic else 0.96) else [self.pick("special")]
        if self.basic:
            return self.scripts(base, depth)
        if base[0] in UPPER and self.chance(0.045 * self._notation["font"]):
            base = ["{", "\\cal", base[0], "}"]  # real formulas write \cal as a font switch: { \cal L }
        out = self.scripts(base, depth)
        if depth == 0 and self.chance(0.14):  # a function of arguments: \phi _ { i } ( x ), f ( x ; t )
            out += self._arguments(depth)
        return out

    def _arguments(self, depth: int) -> list[str]:
        """``( x )``, ``( x , y )``, ``( x ; t )``, ``( x - y )``: the arguments of a function."""
        args = self.expression(depth + 1, self.rng.choice([1, 1, 1, 2]))
        for _ in range(self.rng.choice([0, 0, 1, 1, 2])):
            args += [";" if self.chance(0.12) else ",", *self.expression(depth + 1, 1)]
        return ["(", *args, ")"]

    def _number(self, depth: int) -> list[str]:
        return self.scripts(self.number(), depth, p_sub=0.02, p_sup=0.12)

    def _product(self, depth: int) -> list[str]:
        out: list[str] = []
        for _ in range(self.rng.randint(2, 4)):
            out += self._symbol(depth) if self.chance(0.85) else self.number()
        return out

    def _frac(self, depth: int) -> list[str]:
        if not self.basic and self.chance(0.3):
            return self._common_frac(depth)
        num = self.expression(depth + 1, self.rng.choice([1, 1, 1, 2, 2, 3]))
        den = self.expression(depth + 1, self.rng.choice([1, 1, 1, 2, 2, 3]))
        out = ["\\frac", "{", *num, "}", "{", *den, "}"]
        if not self.basic and self.chance(0.3):
            out = ["{", *out, "}"]
        return out

    def _common_frac(self, depth: int) -> list[str]:
        """The fractions real formulas repeat: numbers (``\\frac { 1 } { 2 }``), derivatives
        (``\\frac { d } { d t }``, ``\\frac { \\partial f } { \\partial x }``), and one over a symbol."""
        r = self.rng.random()
        if r < 0.45:
            num, den = self.rng.choice("1111123"), self.rng.choice("2222344")
            return ["\\frac", "{", num, "}", "{", den if den != num else "2", "}"]
        if r < 0.75:
            d = "d" if self.chance(0.5) else "\\partial"
            top = [d] if self.chance(0.5) else [d, *self.letter()]
            out = ["\\frac", "{", *top, "}", "{", d, *self.letter(), "}"]
            return out + (self.term(depth + 1) if len(top) == 1 and depth < 2 else [])
        return ["\\frac", "{", "1", "}", "{", *self._symbol(depth + 1), "}"]

    def _sqrt(self, depth: int) -> list[str]:
        inner = self.expression(depth + 1, self.rng.choice([1, 1, 2, 3]))
        if self.chance(0.1):
            return ["\\sqrt", "[", self.rng.choice("34n"), "]", "{", *inner, "}"]
        return self.scripts(["\\sqrt", "{", *inner, "}"], depth, p_sub=0.0, p_sup=0.1)

    def _bracket(self, depth: int) -> list[str]:
        opens, closes, weights = zip(*self._brackets)
        k = self.rng.choices(range(len(self._brackets)), weights)[0]
        inner = self.expression(depth + 1, self.rng.choice([1, 2, 2, 3, 3, 4]))
        if self.chance(0.12):
            inner = inner + [","] + self.expression(depth + 1, self.rng.choice([1, 2]))
        out = [*opens[k].split(), *inner, *closes[k].split()]
        return self.scripts(out, depth, p_sub=0.1, p_sup=0.3)

    def _function(self, depth: int) -> list[str]:
        if self.chance(0.45):  # f ( x ), g ( x , y )
            name = self.scripts(self.letter(), depth, p_sub=0.25, p_sup=0.1)
            args = self.expression(depth + 1, self.rng.choice([1, 1, 2]))
            if self.chance(0.3):
                args += [";" if self.chance(0.15) else ","] + self.letter()
            return [*name, "(", *args, ")"]
        name = ["\\operatorname", "{", *self.pick("function").split(), "}"]
        if self.chance(0.15):
            name = ["\\mathrm", "{", *self.pick("function").split(), "}"]
        if self.chance(0.15):
            name += ["^", "{", *self.number(), "}"]
        arg = self._bracket(depth) if self.chance(0.5) else self._symbol(depth + 1)
        return name + arg

    def _limit(self, depth: int) -> list[str]:
        var = self.letter()
        target = self.rng.choice([["0"], ["\\infty"], ["-", "\\infty"], self.letter()])
        return ["\\operatorname*", "{", *self.pick("limit").split(), "}", "_", "{", *var, "\\rightarrow",
                *target, "}", *self.term(depth + 1)]

    def _bigop(self, depth: int) -> list[str]:
        op = self.pick("bigop")
        out = [op]
        r = self.rng.random()
        if op in ("\\sum", "\\prod", "\\bigcup", "\\bigotimes", "\\bigoplus", "\\bigwedge"):
            i = self.rng.choice("ijkmnl")
            if r < 0.45:
                out += ["_", "{", i, "=", self.rng.choice("01"), "}", "^", "{",
                        *self.rng.choice([["N"], ["N"], ["\\infty"], ["n"], ["n", "-", "1"]]), "}"]
            elif r < 0.85:
                out += ["_", "{", *self.index(depth + 1), "}"]
        else:
            if r < 0.4:
                lo, hi = self.rng.choice([(["0"], ["\\infty"]), (["-", "\\infty"], ["\\infty"]), (["0"], ["1"]),
                                          (["0"], ["t"]), (["a"], ["b"]), (["0"], ["2", "\\pi"]),
                                          (["0"], ["L"]), (["-", "1"], ["1"])])
                out += ["_", "{", *lo, "}", "^", "{", *hi, "}"]
            elif r < 0.6:
                out += ["_", "{", *self.index(depth + 1), "}"]
            if self.chance(0.5):
                out += ["d", *self.rng.choice([["x"], ["t"], ["^", "{", self.rng.choice("234D"), "}", "x"],
                                               ["\\tau"], ["k"], ["s"], ["z"]])]
                if self.chance(0.3):
                    out.append("\\,")  # \int d x \, f ( x )
        if self.chance(0.5):
            out += self.expression(depth + 1, self.rng.choice([1, 2, 2, 3]))
        else:
            out += self.term(depth + 1)
        return out

    def _accent(self, depth: int) -> list[str]:
        acc = self.pick("accent")
        if acc in ("\\overline", "\\widetilde", "\\widehat", "\\underline") and self.chance(0.4):
            inner = self.expression(depth + 1, self.rng.choice([1, 2]))
        else:
            inner = self.letter()
        out = [acc, "{", *inner, "}"]
        if self.chance(0.15):
            out = ["{", *out, "}"]
        return self.scripts(out, depth)

    def _font(self, depth: int) -> list[str]:
        r = self.rng.random()
        if r < 0.36:
            body = ["{", "\\cal", self.rng.choices(UPPER, self._upper_w)[0], "}"]
        elif r < 0.43:
            body = ["\\mathrm", "{", *self.pick("mathrm").split(), "}"]
        elif r < 0.73:
            body = ["{", "\\bf", *self.letter(), "}"]
        elif r < 0.79:
            body = ["\\mathbf", "{", *self.letter(), "}"]
        elif r < 0.85:
            body = ["\\mathcal", "{", self.rng.choice(UPPER), "}"]
        elif r < 0.97:
            body = ["{", "\\mathrm", "{", *self.pick("mathrm").split(), "}", "}"]
        else:
            body = ["\\boldsymbol" if self.chance(0.2) else "\\mathsf", "{", *self.letter(), "}"]
        if self.chance(0.08):  # the older switches: { \it x }, { \rm d }, { \sf A }, \textrm { a b }, { \boldmath x }
            switch = self.rng.choice(["\\it", "\\rm", "\\rm", "\\sf", "\\boldmath", "\\textrm"])
            if switch == "\\textrm":
                body = ["\\textrm", "{", *self.pick("mathrm").split(), "}"]
            else:
                body = ["{", switch, *(self.letter() if switch != "\\rm" else self.pick("mathrm").split()), "}"]
        return self.scripts(body, depth)

    def _array(self, depth: int) -> list[str]:
        rows, cols = self.rng.choice([(2, 1), (2, 2), (2, 2), (3, 2), (3, 2), (3, 1), (4, 1), (2, 3), (3, 3), (4, 2)])
        env = "matrix" if self.chance(0.22) else "array"
        out = [f"\\begin{{{env}}}"]
        if env == "array":
            out += ["{", *([self.rng.choice("ccccclr")] * cols if self.chance(0.8) else
                           [self.rng.choice("clr") for _ in range(cols)]), "}"]
        for _ in range(rows):
            for c in range(cols):
                cell = self.expression(depth + 2, self.rng.choice([1, 1, 1, 2]))
                out += ["{", *cell, "}"]
                if c < cols - 1:
                    out.append("&")
            out.append("\\\\")
        if self.chance(0.3):
            out.pop()  # no \\ after the last row
        out.append(f"\\end{{{env}}}")
        if self.chance(0.85):
            op, cl = self.rng.choice([("\\left(", "\\right)"), ("\\left(", "\\right)"), ("\\left[", "\\right]"),
                                      ("\\left\\{", "\\right."), ("\\left|", "\\right|")])
            out = [op, *out, cl]
        return out

    def _group(self, depth: int) -> list[str]:
        return ["{", *self.expression(depth + 1, self.rng.choice([1, 2, 3])), "}"]

    def _dots(self, depth: int) -> list[str]:
        return [self.pick("dots")]

    def _misc(self, depth: int) -> list[str]:
        return [self.pick("misc")]

    def _stackrel(self, depth: int) -> list[str]:
        return ["\\stackrel", "{", *self.index(depth + 1), "}", "{", self.pick("relation"), "}"]

    def _binom(self, depth: int) -> list[str]:
        return ["\\binom", "{", *self.letter(), "}", "{", *self.letter(), "}"]

    def _style(self, depth: int) -> list[str]:
        return [self.rng.choice(["\\displaystyle", "\\displaystyle", "\\textstyle", "\\scriptstyle"]),
                *self.term(depth + 1)]

    # ------------------------------------------------------------------ expressions and formulas
    def expression(self, depth: int, n_terms: int) -> list[str]:
        """``n_terms`` terms joined by binary operators, juxtaposition and spacing commands."""
        out: list[str] = []
        space = self._notation["spacing"]
        p_binary, p_spacing, p_comma = (0.42, 0.5, 0.53) if self.basic else \
            (0.33, 0.33 + 0.17 * space, 0.41 + 0.17 * space)  # cumulative
        if self.chance(0.1 if self.basic else 0.07):
            out.append("-")
        for t in range(n_terms):
            if t:
                r = self.rng.random()
                if r < p_binary:
                    out.append(self.pick("binary"))
                elif r < p_spacing and depth <= (0 if self.basic else 1):
                    out += self.spacing()
                elif r < p_comma and depth <= 1:
                    out.append(",")
            out += self.term(depth)
        return out

    def formula(self) -> str:
        """One formula (space-separated tokens), at most ``max_len`` tokens when set."""
        for _ in range(50):
            tokens = self._formula_tokens()
            if self.max_len is None or len(tokens) <= self.max_len:
                return " ".join(tokens)
        return self._short_formula()

    def _short_formula(self) -> str:
        return " ".join([*self._symbol(1), "=", *self.number()])

    def _formula_tokens(self) -> list[str]:
        """Terms are added until a log-normal target length is reached: LHS relation RHS (, more)."""
        target = self.rng.lognormvariate(self._mu, self._sigma) * (1.0 if self.basic else FULL_TARGET_SCALE)
        if not self.basic:
            self._draw_notation()
        if self.max_len is not None:
            target = min(target, self.max_len * 0.85)
        out: list[str] = []
        if self.chance(0.06 if self.basic else 0.04):
            out.append("-")
        out += self.term(0)
        if self.chance(0.35):
            out += self.term(0)
        relation_at = len(out)
        # cumulative chances of a relation, a second equation, a binary operator and a spacing command
        p_relation, p_second, p_binary, p_spacing = (0.04, 0.07, 0.45, 0.53) if self.basic else \
            (0.05, 0.11, 0.34, 0.34 + 0.19 * self._notation["spacing"])
        while len(out) < target:
            r = self.rng.random()
            if len(out) == relation_at and self.chance(0.97):
                out += [self.pick("relation")] if self.chance(0.98) or self.basic else self._stackrel(1)
                if not self.basic and out[-1] in NEGATABLE and self.chance(0.03):
                    out.insert(len(out) - 1, "\\not")
            elif r < p_relation:
                out += [self.pick("relation")]
            elif r < p_second:  # a second equation: a = b , \quad c = d  (or ; between them)
                if self.basic or self.chance(0.88):
                    out += [",", *self.spacing("separator")] if self.chance(0.7) else self.spacing()
                else:
                    out += [*self.spacing(), ";", *self.spacing()] if self.chance(0.5) else [";"]
                out += self.term(0)
                relation_at = len(out)
                continue
            elif r < p_binary:
                out.append(self.pick("binary"))
            elif r < p_spacing:
                out += self.spacing()
            out += self.term(0)
        if not self.basic and len(out) == relation_at and self.chance(0.75):
            out += [self.pick("relation"), *self.term(0)]  # no relation yet: nearly every real formula has one
        if self.chance(0.32 if self.basic else 0.68):
            if self.chance(0.4 if self.basic else 0.45 * self._notation["spacing"]):
                out += self.spacing()
            out.append(self.pick("punct"))
        return out

    def generate(self, n: int) -> list[str]:
        """``n`` formulas."""
        return [self.formula() for _ in range(n)]


def generate_formulas(n: int, seed: int = 0, max_len: int | None = None, level: str = "full") -> list[str]:
    """``n`` random formulas in the normalized token style (deterministic for a seed); see :class:`FormulaGenerator`."""
    return FormulaGenerator(seed=seed, max_len=max_len, level=level).generate(n)


# ============================================================================ the token set
#: Tokens the generator writes outside the tables above: digits, groups and scripts, alignment, and the
#: commands of its structures (fractions, roots, arrays, fonts, styles).
STRUCTURE_TOKENS = (
    *"0123456789", "{", "}", "_", "^", "&", "\\\\", "\\frac", "\\sqrt", "\\binom", "\\stackrel",
    "\\begin{array}", "\\end{array}", "\\begin{matrix}", "\\end{matrix}", "\\mathrm", "\\mathbf",
    "\\mathcal", "\\cal", "\\bf", "\\mathsf", "\\boldsymbol", "\\operatorname", "\\operatorname*",
    "\\displaystyle", "\\textstyle", "\\scriptstyle",
)

#: Tokens of real formulas kept in the fixed vocabulary ahead of the generator structures that will write them,
#: so that a long training run's vocabulary stays the same while the generator grows.
RESERVED_TOKENS = (
    ":", "\\hspace", "\\boldmath", "\\not", "\\Bigg", "\\it", "\\rm", "\\sf", "\\textrm", "\\text",
    "\\mathit", "\\mathbb", "\\phantom", "\\underbrace", "\\overbrace", "\\begin{cases}", "\\end{cases}",
    "\\scriptscriptstyle", "\\nonumber", "\\uparrow", "\\downarrow", "\\Longleftrightarrow",
    "\\overrightarrow", "\\lfloor", "\\rfloor", "\\lceil", "\\rceil", "\\ddots", "\\Vert", "\\hline",
    "\\atop", "\\left\\vert", "\\right\\vert", "\\left\\|", "\\right\\|", "\\left[", "\\right/",
    "\\bigcirc", "\\ni", "\\colon", "\\varphi", "\\Bigl", "\\Bigr", "\\bigl", "\\bigr", "\\biggl",
    "\\biggr", "\\Biggl", "\\Biggr", "\\big", "\\Big", "\\bigg",
)


def grammar_tokens() -> list[str]:
    """Every token the generator can write (both levels), sorted: a fixed vocabulary that does not depend on
    which formulas a dataset happens to hold (``Config.vocab = "grammar"``)."""
    tables = [GREEK, SPECIAL, BINARY, RELATION, SPACING, PUNCT_END, ACCENT, FUNCTIONS, LIMIT_OPS, BIGOPS,
              MATHRM_WORDS, SUFFIX_SYMBOLS, DOTS, MISC_ATOMS]
    tokens = set(LOWER) | set(UPPER) | set(STRUCTURE_TOKENS) | set(RESERVED_TOKENS)
    for table in tables:
        tokens.update(t for entry, weight in table.items() if weight > 0 for t in entry.split())
    for opening, closing, _weight in BRACKETS:
        tokens.update(opening.split() + closing.split())
    return sorted(tokens)


# ============================================================================ statistics
STRUCTURES: dict[str, str] = {
    "fraction": r"\\frac ",
    "subscript": r" _ ",
    "superscript": r" \^ ",
    "sqrt": r"\\sqrt ",
    "left/right": r"\\left",
    "array/matrix": r"\\begin\{(?:array|matrix)\}",
    "big operator": r"\\(?:sum|int|prod|oint) ",
    "accent": r"\\(?:hat|bar|tilde|vec|dot|ddot|overline|widetilde|widehat|underline|check|breve) ",
    "font": r"\\(?:mathrm|mathbf|cal|bf|mathcal|rm|it|mathsf|boldsymbol) ",
    "operatorname": r"\\operatorname",
    "spacing": r"(?:\\[,;:!] |\\quad|\\qquad| ~ |\\ )",
    "greek": r"\\(?:alpha|beta|gamma|delta|mu|nu|pi|phi|psi|lambda|sigma|theta|rho|omega|tau|epsilon)",
    "relation": r" (?:=|<|>|\\leq|\\geq|\\equiv|\\approx|\\sim|\\simeq|\\neq|\\rightarrow) ",
    "prime": r"\\prime",
    "parentheses": r" \( ",
}


def _depth(tokens: Sequence[str]) -> int:
    depth = best = 0
    for tok in tokens:
        if tok == "{":
            depth += 1
            best = max(best, depth)
        elif tok == "}":
            depth -= 1
    return best


def compare_statistics(generated: list[str], real: list[str]) -> dict:
    """Generated vs real formulas: token coverage, length mean/std, nesting depth, structure frequencies.

    ``token_coverage``: share of the real token occurrences whose token the generated formulas use;
    ``structures``: {name: {"generated": share, "real": share}} of formulas containing each construct
    (``pandas.DataFrame(stats["structures"]).T`` is a table).
    """
    generated = [f for f in generated if f.strip()]
    real = [f for f in real if f.strip()]
    if not generated or not real:
        raise I2LError("compare_statistics needs non-empty lists of generated and real formulas")
    gen_tokens = [f.split() for f in generated]
    real_tokens = [f.split() for f in real]
    vocab = {t for toks in gen_tokens for t in toks}
    real_counts = Counter(t for toks in real_tokens for t in toks)
    total = sum(real_counts.values())
    covered = sum(c for t, c in real_counts.items() if t in vocab)
    gen_len = np.array([len(t) for t in gen_tokens], dtype=float)
    real_len = np.array([len(t) for t in real_tokens], dtype=float)

    def share(formulas: list[str], pattern: str) -> float:
        rx = re.compile(pattern)
        return float(np.mean([bool(rx.search(f" {f} ")) for f in formulas]))

    return {
        "n_generated": len(generated),
        "n_real": len(real),
        "token_coverage": covered / total,
        "type_coverage": sum(1 for t in real_counts if t in vocab) / len(real_counts),
        "missing_tokens": [t for t, _ in real_counts.most_common() if t not in vocab][:20],
        "length_mean": {"generated": float(gen_len.mean()), "real": float(real_len.mean())},
        "length_std": {"generated": float(gen_len.std()), "real": float(real_len.std())},
        "length_mean_ratio": float(gen_len.mean() / real_len.mean()),
        "length_std_ratio": float(gen_len.std() / real_len.std()),
        "depth_mean": {"generated": float(np.mean([_depth(t) for t in gen_tokens])),
                       "real": float(np.mean([_depth(t) for t in real_tokens]))},
        "structures": {name: {"generated": share(generated, p), "real": share(real, p)}
                       for name, p in STRUCTURES.items()},
    }


def real_formulas_path() -> Path:
    """The real validation formulas of :func:`i2l.config.shared_data` (may be absent)."""
    from i2l.config import shared_data

    return shared_data() / "formulas" / "val.formulas.norm.txt"


__all__ = ["FormulaGenerator", "grammar_tokens", "STRUCTURE_TOKENS", "RESERVED_TOKENS", "LEVELS", "BASIC_TABLES", "BASIC_LENGTH", "TERM_WEIGHTS", "generate_formulas",
           "compare_statistics", "real_formulas_path", "STRUCTURES"]
