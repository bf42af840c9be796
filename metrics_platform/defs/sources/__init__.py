"""One folder per raw source: its resource, its pure normalizer, its asset and checks."""
