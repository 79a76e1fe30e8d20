"""feature_maps."""
