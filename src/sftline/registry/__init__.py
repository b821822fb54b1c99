"""The model registry without the record: stages and their rules, model cards, exports."""
