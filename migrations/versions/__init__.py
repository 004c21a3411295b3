"""The migration scripts, oldest first by their dated file names."""
