"""Makes this folder's test media from the public-domain NASA photograph of astronaut Eileen Collins (scikit-image's
``skimage/data/astronaut.png``, 512 x 512; see LICENSE.md):

    pip download scikit-image --no-deps -d /tmp/sk && unzip -j /tmp/sk/*.whl skimage/data/astronaut.png -d /tmp/sk
    python tests/data/video/make_clip.py /tmp/sk/astronaut.png

- ``astronaut.jpg``: the photograph at 256 x 256;
- ``astronaut.mp4``: 320 x 240, 15 frames/s, 36 frames: the photograph moving across a grey background and
  growing (frames 0-11), black frames with no person (12-17), then moving back (18-35).
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

HERE = Path(__file__).resolve().parent
W, H, FPS = 320, 240, 15
EMPTY = range(12, 18)


def frame(photo: np.ndarray, i: int) -> np.ndarray:
    out = np.full((H, W, 3), 128, np.uint8)
    if i in EMPTY:
        return np.zeros((H, W, 3), np.uint8)
    k = i if i < 12 else 35 - i
    side = 200 + 2 * k
    img = cv2.resize(photo, (side, side), interpolation=cv2.INTER_AREA)
    x0, y0 = 10 + 6 * k, H - side + 20  # the lower edge cut off, as in the photograph
    x1, y1 = min(W, x0 + side), min(H, y0 + side)
    out[max(y0, 0) : y1, x0:x1] = img[max(0, -y0) : y1 - y0, : x1 - x0]
    return out


def main(src: str) -> None:
    photo = cv2.imread(src)
    if photo is None:
        sys.exit(f"cannot read {src}")
    cv2.imwrite(str(HERE / "astronaut.jpg"), cv2.resize(photo, (256, 256), interpolation=cv2.INTER_AREA),
                [cv2.IMWRITE_JPEG_QUALITY, 90])  # fmt: skip
    writer = cv2.VideoWriter(str(HERE / "astronaut.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (W, H))
    for i in range(36):
        writer.write(frame(photo, i))
    writer.release()


if __name__ == "__main__":
    main(sys.argv[1])
