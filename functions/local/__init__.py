"""Local mode (`flux dev`): the same layers as in AWS, composed in one process with embedded defaults."""
