"""The deployed tier's emulation of AWS: each module models one documented AWS behaviour.

Nothing here imports the product (``functions``, ``cli``, ``infra``): the product is only
ever run as the artifacts ``flux synth`` writes and as CLI subprocesses.
"""
