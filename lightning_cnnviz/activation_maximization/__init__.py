"""activation_maximization."""
