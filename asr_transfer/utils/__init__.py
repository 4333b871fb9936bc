"""Small helpers shared across the package (one place per rule)."""
