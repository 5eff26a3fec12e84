"""The SD-1.x video-diffusion toolkit the latent-diffusion teachers share (EchoMimicV2, VividAnimator, PAHA): the
released EchoMimicV2 architecture's parts, under names of their own, so each teacher keeps only what is its own.

Files, one concept each:
    config.py      SDVideoConfig (U-Net, motion, whisper, VAE, sampling keys) and ReferenceVideoConfig (+ ReferenceNet)
    motion.py      temporal motion module (self-attention over frames)
    blocks.py      spatial blocks: reference attention + audio cross-attention; down/mid/up blocks
    unet3d.py      the denoising UNet over video latents [B, C, F, h, w]
    reference.py   ReferenceNet (diffusers UNet2DConditionModel) and the capture of its attention tokens
    pose.py        PoseEncoder (pose images -> features on the latent grid)
    audio.py       whisper-tiny features -> per-frame audio windows
    components.py  the components container (modules, scheduler, device/dtype), strict state loading
    images.py      images <-> VAE latents, latents -> uint8 frames
    sampling.py    initial noise, temporal context windows, averaging over windows
Importing this package loads nothing heavy; the modules that need diffusers/transformers import them themselves.
"""
