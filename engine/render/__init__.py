"""Stage 5 of the data path: Gaussians + a camera -> pixels, and the files that carry them (docs/architecture.md).

  gaussians.py   `Gaussians`, the activated splat parameters every stage passes around
  camera.py      intrinsics, look-at and orbit cameras
  splat.py       the splat call (cuda_ext.rasterization) with back-face culling
  turntable.py   stills and orbits as png / mp4
  ply.py         the standard 3DGS .ply
  video.py       mp4 writing (ffmpeg, audio muxed in) and png
  metrics.py     PSNR and SSIM of images (the fit's report, benchmarks, the distillation's losses' reference)
An avatar seen through a camera, deformed by its decoder, is engine/view.py (`AvatarView`), one level up.
"""
