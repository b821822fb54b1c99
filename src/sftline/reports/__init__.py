"""Self-contained HTML reports (inline SVG plots, no external assets)."""
