"""Stage 4 of the data path: particle motion -> per-Gaussian deformation (docs/architecture.md).

  decoder.py  GaussianDecoder: skinning + learned residuals (Δmean, Δrotation, Δscale, Δcolour, Δopacity)
"""
