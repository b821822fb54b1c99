"""CLINC150 training queries as chat examples, for tests that train on real text."""

from __future__ import annotations

import json
from pathlib import Path

from sftline.data.example import Example, Provenance

CLINC = Path(__file__).resolve().parents[2] / "examples" / "clinc150" / "data_full.json"
CLINC_SYSTEM_PROMPT = "Name the intent of the user's request with one label, or oos if it is out of scope."
"""The demo's system prompt (scripts/demo.sh)."""


def clinc_chats(rows: slice, id_prefix: str, first_id: int = 0) -> list[Example]:
    """The `rows` of CLINC150's train split as user query -> assistant intent chats, with ids
    `{id_prefix}{first_id}`, `{id_prefix}{first_id + 1}`, ..."""
    pairs = json.loads(CLINC.read_text())["train"][rows]
    return [
        Example(
            id=f"{id_prefix}{first_id + i}",
            provenance=Provenance("d", "0" * 64, "chat", i + 1),
            messages=[{"role": "user", "content": text}, {"role": "assistant", "content": label}],
        )
        for i, (text, label) in enumerate(pairs)
    ]
