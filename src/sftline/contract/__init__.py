"""The behaviour contract applied: rendering, labels, output validation, the metric registry."""
