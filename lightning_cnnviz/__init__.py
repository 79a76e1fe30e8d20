"""lightning-cnnviz."""
