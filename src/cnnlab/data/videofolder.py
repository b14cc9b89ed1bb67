"""Your own videos: one sub-folder of video files per class, the layout of UCF-101.

    PATH/ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi
    PATH/Archery/a/clip.mp4

Classes are the sub-folder names, sorted (hidden folders are not classes); videos (.mp4, .avi,
.gif, .mov, .mkv, .webm) are found at any depth below them and split 70/10/20 (stratified,
seed 0). Every file goes through `read_clip`, as `cnnlab predict` does: decoded with PyAV
(FFmpeg's decoders, installed from the package index with their codecs), FRAMES frames taken
at even steps from first to last (a shorter video repeats frames), each converted to RGB and
stretched to opts.image_size (default 32) square with Pillow's bilinear filter.

A file that does not decode, has no video stream or no frame is skipped and named in a warning
and in `meta['skipped']` (on_corrupt='skip'), or stops the load with an error naming it
(on_corrupt='error').
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from cnnlab.data.dataset import Dataset, Split, stratified_split
from cnnlab.data.imagefolder import class_files
from cnnlab.data.registry import DataOptions, register_dataset
from cnnlab.errors import CnnlabError

VIDEO_SUFFIXES = (".mp4", ".avi", ".gif", ".mov", ".mkv", ".webm")
FRAMES, SIDE = 16, 32  # the clip length and frame side of moving-actions, which the video models are tuned for
TEST_FRACTION = 0.2
# Decoded frames are shrunk as they come, so memory holds only FRAMES-sized pictures; a video of
# more frames than this is refused (an hour at 30 fps), as a decode would take minutes per file.
MAX_FRAMES = 108_000
DISPLAY_SIDE = 256  # the longest side of a clip read to be shown (`cnnlab predict`'s GIF), not to be learned


@register_dataset("videofolder", "your own videos: PATH/<class>/*.mp4 (.avi, .gif...), the UCF-101 layout", takes_arg=True)
def videofolder(arg: str | None, opts: DataOptions) -> Dataset:
    root = Path(arg or "").expanduser()
    if not root.is_dir():
        why = "is not a folder" if root.exists() else "does not exist"
        raise CnnlabError(f"videofolder path {root} {why}; give a folder with one sub-folder of videos per class.")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if len(classes) < 2:
        raise CnnlabError(f"{root} has {len(classes)} class sub-folder(s); a classifier needs at least 2.")
    if opts.val_fraction + TEST_FRACTION >= 1:
        raise CnnlabError(f"videofolder keeps {TEST_FRACTION:.0%} for test, so val_fraction must be below {1 - TEST_FRACTION:g}.")
    side = opts.image_size or SIDE
    clips, labels, skipped = [], [], []
    for path, label in class_files(root, classes, root, VIDEO_SUFFIXES, "videos"):
        try:
            clips.append(read_clip(path, FRAMES, (side, side)))
            labels.append(label)
        except CnnlabError:
            if opts.on_corrupt == "error":
                raise
            skipped.append(path)
    skipped_names = ", ".join(str(p.relative_to(root)) for p in skipped)
    if skipped:
        warnings.warn(f"videofolder skipped {len(skipped)} unreadable video(s) in {root}: {skipped_names}", stacklevel=2)
    y = torch.tensor(labels, dtype=torch.int64)
    empty = [name for name, n in zip(classes, torch.bincount(y, minlength=len(classes)).tolist(), strict=True) if n == 0]
    if empty:
        raise CnnlabError(f"class folder(s) {', '.join(empty)} in {root} hold no readable video; add videos or remove the folder.")
    x = torch.stack(clips)
    train, val, test = (Split(x[i], y[i]) for i in stratified_split(y, (opts.val_fraction, TEST_FRACTION), seed=0))
    for part, split in (("train", train), ("test", test)):
        if len(split) == 0:
            raise CnnlabError(f"{root} has too few videos for a {part} split (it would hold none); add videos to each class.")
    return Dataset(
        name=f"videofolder:{arg}",
        classes=classes,
        train=train,
        val=val,
        test=test,
        source=str(root.resolve()),
        licence="the user's own",
        meta={
            "layout": "one folder, split train / val / test, stratified, seed 0",
            "clips": f"{FRAMES} frames at even steps, 3x{side}x{side}",
            **({"skipped": skipped_names} if skipped else {}),
        },
        task="video",
    )


def read_clip(path: str | Path, frames: int, size: tuple[int, int] | None = None, channels: int = 3,
              max_side: int | None = None) -> Tensor:
    """`frames` frames of the video at `path`, taken at even steps from its first frame to its
    last, as (frames, channels, H, W) float32 in [0, 1]; size (H, W), or None to keep the
    video's own, shrunk (keeping its shape) to at most `max_side` on its longer side when given.
    Any failure is one CnnlabError naming the file."""
    import av  # FFmpeg's libraries: loaded only when a video is read

    path = Path(path)
    if channels not in (1, 3):
        raise CnnlabError(f"videos can be read with 1 or 3 channels, not {channels}.")
    pictures: list[Image.Image] = []
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise CnnlabError(f"cannot read video {path}: it holds no video stream.")
            for frame in container.decode(video=0):
                if len(pictures) == MAX_FRAMES:
                    raise CnnlabError(f"cannot read video {path}: it has more than {MAX_FRAMES:,} frames; cut it shorter.")
                picture = frame.to_image().convert("L" if channels == 1 else "RGB")
                if size is None and max_side is not None:
                    picture.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)  # in place, never enlarges
                elif size is not None:
                    picture = picture.resize(size[::-1], Image.Resampling.BILINEAR)
                pictures.append(picture)
    except CnnlabError:
        raise
    except FileNotFoundError:
        raise CnnlabError(f"cannot read video {path}: no such file.") from None
    except (av.error.FFmpegError, OSError, ValueError) as e:  # what FFmpeg and Pillow raise on bad bytes
        raise CnnlabError(f"cannot read video {path}: {str(e).rstrip('.') or type(e).__name__}.") from None
    if not pictures:
        raise CnnlabError(f"cannot read video {path}: it holds no frame.")
    take = np.linspace(0, len(pictures) - 1, frames).round().astype(int)  # even steps, first and last included
    clip = np.stack([np.asarray(pictures[i], dtype=np.float32) / 255 for i in take])  # (T, H, W[, 3])
    clip = clip[..., None] if channels == 1 else clip
    return torch.from_numpy(clip).permute(0, 3, 1, 2).contiguous()
