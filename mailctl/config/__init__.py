"""Where the config lives, what it may contain, and how it is read and written atomically."""
