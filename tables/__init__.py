"""Table declarations and the pure state model of an album in flight."""
