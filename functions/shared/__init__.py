"""What every Flux layer needs: flux.json models, ids, the error body, spans and the sink port.

Nothing here does I/O except the manifest loader reading flux.json files.
"""
