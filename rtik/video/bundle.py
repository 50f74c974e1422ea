"""Build the pose landmarker bundle rtik ships (``rtik/video/models/pose_landmarker_full.task``) from the two
TFLite models inside the ``mediapipe==0.10.21`` wheel, the last one that carries them.

A MediaPipe Tasks ``.task`` bundle is an uncompressed zip of ``pose_detector.tflite`` and
``pose_landmarks_detector.tflite``, each with TFLite metadata that tells the Tasks graph how to normalise its input
image: the detector reads RGB in [-1, 1] (mean 127.5, std 127.5), the landmark model RGB in [0, 1] (mean 0,
std 255). The metadata is written with mediapipe's own metadata writers, which work in the 0.10.21 wheel (1.2's
lack their compiled half), so the bundle is built once, in a separate environment, and committed::

    python -m venv /tmp/mp010 && /tmp/mp010/bin/pip install --no-deps mediapipe==0.10.21
    /tmp/mp010/bin/pip install "numpy<2" "protobuf<5" flatbuffers absl-py attrs matplotlib "opencv-contrib-python<4.12"
    pip download mediapipe==0.10.21 --no-deps -d wheels/
    PYTHONPATH=. /tmp/mp010/bin/python -m rtik.video.bundle wheels/mediapipe-0.10.21-*.whl \
        -o rtik/video/models/pose_landmarker_full.task

Both models are Apache-2.0 (Google LLC); ``rtik/video/models/NOTICE`` says so beside the bundle.
"""

from __future__ import annotations

import argparse
import os
import zipfile
from pathlib import Path

from rtik.errors import InputError

#: member of the 0.10.21 wheel -> (name in the bundle, input normalisation (mean, std) on 0..255 RGB)
MODELS = {
    "mediapipe/modules/pose_detection/pose_detection.tflite": ("pose_detector.tflite", (127.5, 127.5)),
    "mediapipe/modules/pose_landmark/pose_landmark_full.tflite": ("pose_landmarks_detector.tflite", (0.0, 255.0)),
}


def with_metadata(model: bytes, name: str, mean: float, std: float) -> bytes:
    """``model`` (a TFLite flatbuffer) with metadata naming its image input and its normalisation."""
    from mediapipe.tasks.python.metadata.metadata_writers import metadata_writer

    writer = metadata_writer.MetadataWriter.create(bytearray(model))
    writer.add_general_info(name, "MediaPipe Pose (BlazePose GHUM 3D), Apache-2.0, Google LLC")
    writer.add_image_input(norm_mean=[mean], norm_std=[std])
    content, _ = writer.populate()
    return bytes(content)


def build(wheel: Path, out: Path) -> Path:
    """Write the bundle to ``out`` (atomically) from the mediapipe 0.10.21 ``wheel``."""
    from mediapipe.tasks.python.metadata.metadata_writers import model_asset_bundle_utils as bundle_utils

    try:
        with zipfile.ZipFile(wheel) as z:
            raw = {member: z.read(member) for member in MODELS}
    except (OSError, KeyError, zipfile.BadZipFile) as e:
        raise InputError(f"{wheel}: not a mediapipe 0.10.21 wheel with the pose models: {e}") from e
    models = {name: with_metadata(raw[m], Path(name).stem, *norm) for m, (name, norm) in MODELS.items()}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".part")
    bundle_utils.create_model_asset_bundle(models, str(tmp))
    os.replace(tmp, out)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m rtik.video.bundle", description=__doc__.split("\n\n")[0])
    p.add_argument("wheel", type=Path, help="the mediapipe 0.10.21 wheel (pip download mediapipe==0.10.21 --no-deps)")
    p.add_argument("-o", "--output", type=Path, required=True, help="the .task bundle to write")
    args = p.parse_args(argv)
    print(build(args.wheel, args.output))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
