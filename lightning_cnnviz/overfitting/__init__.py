"""overfitting."""
