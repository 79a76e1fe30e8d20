"""gradcam."""
