"""Draws docs/img/video_capture_vmc.png, the path of a webcam frame into a VMC avatar, from the contact sheet
beside it (docs/img/video_contact_sheet.jpg, made by ``rtik video tests/data/video/astronaut.mp4 --preview``):

    python docs/img/video_capture_vmc.py
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.image as mpimg  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

HERE = Path(__file__).resolve().parent
sheet = mpimg.imread(HERE / "video_contact_sheet.jpg")
frame, skeleton = sheet[0:240, 0:320], sheet[0:240, 320:560]

fig = plt.figure(figsize=(12, 3.4), dpi=100)
ax = fig.add_axes([0, 0, 1, 1])
ax.set_xlim(0, 12)
ax.set_ylim(0, 3.4)
ax.axis("off")
ax.imshow(frame, extent=(0.1, 2.3, 0.75, 2.4))
ax.imshow(skeleton, extent=(10.3, 11.95, 0.75, 2.4))
ax.text(1.2, 2.55, "webcam (or --video FILE)", ha="center", fontsize=10)
ax.text(11.1, 2.55, "solved pose -> avatar", ha="center", fontsize=10)

boxes = [
    (2.6, "rtik capture", "MediaPipe Pose:\n33 landmarks, metres,\nY up, visibility mask"),
    (5.2, "rtik serve", "solver: denoiser +\nrecurrent IK network,\none tick per frame"),
    (7.8, "[output.vmc]", "21 humanoid bones,\nrelative to the T-pose,\nUnity's left-handed axes"),
]
for x, title, body in boxes:
    ax.add_patch(FancyBboxPatch((x, 0.8), 2.0, 1.6, boxstyle="round,pad=0.05", fc="#eef3fb", ec="#36c"))
    ax.text(x + 1.0, 2.15, title, ha="center", fontsize=11, weight="bold", family="monospace")
    ax.text(x + 1.0, 1.45, body, ha="center", va="center", fontsize=9)
arrows = [(2.3, 2.6, ""), (4.6, 5.2, "ZeroMQ :7700\nmediapipe33 frames"), (7.2, 7.8, ""),
          (9.8, 10.3, "VMC / OSC\nUDP :39539")]  # fmt: skip
for x0, x1, label in arrows:
    ax.add_patch(FancyArrowPatch((x0, 1.6), (x1, 1.6), arrowstyle="-|>", mutation_scale=16, color="#333"))
    if label:
        ax.text((x0 + x1) / 2, 0.35, label, ha="center", fontsize=8.5, color="#333")
ax.text(6.0, 3.05, "a webcam into Unity through VMC", ha="center", fontsize=13, weight="bold")
fig.savefig(HERE / "video_capture_vmc.png")
