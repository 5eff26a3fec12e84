"""A tiny synthetic skeleton for the limb and silhouette tests: mediapipe pose joints of a standing person."""
import torch

# a standing person in a 200 x 200 photo (x, y pixels); the person's right (even indices) is on the image left
JOINTS = {0: (100, 30), 11: (120, 60), 12: (80, 60), 13: (125, 90), 14: (75, 90), 15: (127, 115), 16: (73, 115),
          23: (112, 120), 24: (88, 120), 25: (112, 155), 26: (88, 155), 27: (112, 185), 28: (88, 185),
          29: (112, 190), 30: (88, 190), 31: (118, 192), 32: (82, 192)}
for j, (x, y) in {17: (129, 120), 19: (127, 121), 21: (125, 119), 18: (71, 120), 20: (73, 121),
                  22: (75, 119)}.items():
    JOINTS[j] = (x, y)
for j in range(1, 11):
    JOINTS[j] = (100 + (j - 5), 27)


def pose() -> torch.Tensor:
    p = torch.zeros(33, 4)
    for j, (x, y) in JOINTS.items():
        p[j] = torch.tensor([x, y, 0.0, 1.0])
    return p
