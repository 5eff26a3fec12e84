"""Stage 2 of the data path: speech -> 25 fps features (docs/architecture.md).

  features.py  files and live PCM -> mono 16 kHz -> causal log-mel [T, n_mels] + RMS [T]; streaming == offline
  encoder.py   AudioEncoder: log-mel -> learned features a_t [T, D_a], causal, with a streaming twin
"""
