"""Root of the test tree: puts helper modules here (``image_bombs``) on the import path."""
