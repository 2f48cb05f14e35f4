"""genrec package."""
