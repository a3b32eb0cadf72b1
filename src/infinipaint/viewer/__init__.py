"""viewer stage."""
