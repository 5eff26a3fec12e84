"""A VersaAnimator-style motion prior (VersaAnimator, ACM MM'25): body motion as discrete tokens, predicted
from audio and from a text command, so a command ("raise right hand") changes the gesture live.

  commands.py  the fixed command vocabulary, its built-in text features, and the gesture templates that
               make training data (the offline stand-in for text-labelled video: no CLIP weights here)
  vqvae.py     MotionVQVAE: body-slot motion [B, T, 192] <-> tokens [B, T / l] (512 codes, EMA + reset)
  tokens.py    MotionTokenModel: an audio branch and a text branch of the same Transformer, summed layer by
               layer, predicting masked motion tokens
  prior.py     GesturePrior: a trained pair loaded from a folder; text -> canonical motion for the engine
Training: distill/versa.py. Teacher: distill/teachers/versa.py. Live: AvatarEngine.command(text).
"""
