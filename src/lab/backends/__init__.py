"""Navigation, manipulation and instrument backends (embedded and full-stack)."""
