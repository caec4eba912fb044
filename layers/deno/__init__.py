"""The deno Lambda layer builder (see build.py)."""
