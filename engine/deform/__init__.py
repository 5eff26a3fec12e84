"""Stage 4 of the data path: particle motion -> per-Gaussian deformation (docs/architecture.md).

  decoder.py  GaussianDecoder: skinning + learned residuals (Δmean, Δrotation, Δscale, Δcolour, Δopacity)
  stretch.py  FaceStretch: the face's splats grow where the motion stretches the skin (after the decoder)
"""
