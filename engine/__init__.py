"""AudioAvatar runtime: photo -> avatar, audio -> motion -> deformed Gaussians -> frames.

Shape glossary used in every docstring and assert:
    N  Gaussians of an avatar            K  control particles (or SH coefficients, where said)
    T  frames (25 fps)                   C  channels of a motion / cameras of a render, as said
    H, W  image height and width         D  colour channels of a render
Gaussians are stored activated (scales > 0, opacities in [0, 1], unit-free wxyz quaternions) in memory and
in the standard 3DGS layout on disk (`engine.render.ply`). Rendering goes through `cuda_ext.rasterization`.
"""
