"""sftline: supervised fine-tuning as a reproducible production line."""

from __future__ import annotations

__version__ = "0.1.0"
