"""Prism's model store: versioned, checksummed storage of model versions, and nothing else.

Versions (immutable directories with a manifest), aliases, integrity checks and the
`prism-store` CLI. What the files mean is the business of `explain` (which reads them) and
`training` (which writes them); this package neither imports them nor torch.
"""
