"""Offline evaluation of a talking clip with evaluators nobody on this project wrote (issue 8).

Data path: a clip (a video file, or an avatar folder rendered here for the audio) and its speech ->
  sync.py      lip sync: mediapipe mouth opening vs the audio RMS envelope, peak r and lag (SyncC/SyncD-like)
  identity.py  dlib 128-d face descriptor cosine to a reference photo (CSIM-like); optional extra
  hands.py     mediapipe hand landmarks: detection rate, confidence (HKC-like), keypoint spread (HKV-like)
  fidelity.py  PSNR / SSIM / MS-SSIM against a teacher video (torchmetrics), no-reference PIQE (pypiqe)
  temporal.py  flicker: mean absolute frame difference outside the moving regions
-> suite.py (one dict) -> report.py (report.json, PNG plots, contact sheet, report.html).
CLI: `audioavatar eval VIDEO_OR_AVATAR --audio AUDIO [--reference PHOTO] [--teacher VIDEO] -o DIR`.
"""
