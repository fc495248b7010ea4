"""Settings of the studies (``dtm study NAME``), one module per study, torch-free so that a bad key is refused
before the study imports torch."""
