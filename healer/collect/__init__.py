"""healer."""
