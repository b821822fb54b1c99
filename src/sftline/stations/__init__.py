"""The stations: the only code that opens the Workspace (record + object store)."""
