"""Text normalisation shared by the gates that compare texts.

Two texts that differ only in Unicode form (full-width letters, ligatures), case or spacing
normalise to the same string, so duplicate and contamination checks see them as equal.
"""

from __future__ import annotations

import unicodedata


def normalize_text(text: str) -> str:
    """Unicode NFKC, casefolded, every whitespace run collapsed to one space, stripped."""
    # str.split() with no argument splits on runs of Unicode whitespace (str.isspace) and drops
    # leading/trailing runs, so the join both collapses and strips.
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())
