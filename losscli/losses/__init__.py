"""One module per loss family; each defines SPECS, a tuple of LossSpec (see losscli.registry)."""
