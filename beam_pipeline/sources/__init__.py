"""Input sources: each yields Arrow record batches through a tfx_bsl TFXIO."""
