"""Stage 3 of the data path: audio features -> canonical particle motion [T, K_c, 3] (docs/architecture.md).

  source.py      the MotionSource protocol (push / reset / interrupt) every live motion source follows
  dit.py         MotionDiT: a diffusion Transformer over windows of motion (DDIM), with its streaming twin
  refiner.py     FaceHandRefiner: a face/hand correction conditioned on the time index
  procedural.py  the rule-based rig: the fallback motion, and the offline procedural teacher's motion
  versa/         the gesture prior: text commands ("raise right hand") -> body motion
"""
