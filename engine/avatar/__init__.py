"""Stage 1 of the data path: one photo -> an `Avatar` bundle (docs/architecture.md).

  photo.py        reading, decoding and cropping the photo
  landmarks.py    mediapipe face mesh (478), hands (21 each), pose (33) and the person mask
  regions.py      a region label per pixel / Gaussian (body, face, lips, eyes, hands, hair)
  inflate.py      silhouette inflation: a smooth relief from a 2-D mask
  depth.py        the relief that gives the photo its depth, and the outward normals
  shell.py        front and back shells of Gaussians on that relief
  mouth.py        the mouth interior shown when the jaw opens
  particles.py    control particles on named landmarks, and the canonical slots every identity shares
  knn.py          k nearest neighbours in torch (pytorch3d is not installable here)
  skinning.py     each Gaussian's weights on its nearest particles
  personalize.py  the entry point: photo -> fitted Gaussians + particles + skinning
  bundle.py       the `Avatar` and its folder on disk (save_pretrained / from_pretrained), decoder included
  web_export.py   the avatar as a .ply for web 3DGS viewers (upright, centred, facing +z)
"""
