"""coco:DIR -- your own detection and scene-labelling data, in the COCO instances format.

    DIR/train.json                images, annotations and categories (Lin et al. 2014, "Microsoft
    DIR/val.json, DIR/test.json   COCO", format at cocodataset.org/#format-data); both optional
    DIR/images/<file_name>        the pixels of each image entry

An annotation is a box `[x, y, w, h]` in pixels, a `category_id`, and optionally a mask, as
polygons or as RLE (compressed or not), decoded by pycocotools. Targets (see targets.py), per
image, in the pixels of the resized image:

    boxes      (M, 4) float32  x1, y1, x2, y2 of each object; padding rows of zeros after them
    labels     (M,) int64      each box's class (1..K), -1 on padding rows
    mask       (S, S) int64    a class per pixel: 0 background, IGNORE where nothing is known
    image_id   () int64        the image's id in its JSON: predictions are written back with it
    orig_size  (2,) int64      height and width of the image file (DETR's COCO loader's name for
                               it), to scale predictions back to the file's pixels

Choices, each for a reason:
- Classes are "background" and then the categories of train.json by ascending id, so the ids
  1, 3, 7 become classes 1, 2, 3; `meta['category_ids']` keeps the ids for writing results.
- Every image is stretched to one square side S (DataOptions.image_size, default 128), boxes and
  masks with it: cnnlab keeps a split as one tensor, and 128 is a multiple of 32 (feature maps
  of stride 8, 16 and 32 tile it) that still trains in minutes on 2 CPU cores. The price: an
  object of COCO's "small" size (under 32x32 px) in a 640 px photo is under 7 px here.
- Masks are painted largest first, so a smaller object lies over a larger one it overlaps: the
  order of annotations in a COCO file is that of the tool that wrote it, not depth, while a
  small object overlapping a large one is usually in front of it (a cup on a table); painted in
  file order, a late large region would hide whole objects. Crowd regions (`iscrowd: 1`) and
  the boxes of objects without a mask are IGNORE below them: their pixels have no known class.
  Crowd annotations give no box: COCOeval too counts a detection on a crowd neither right nor wrong.
- A part without its file is split off train.json's images by rank of a seeded hash of each
  file name (test first, TEST_FRACTION, then val, val_fraction), before any pixel is read: a
  skipped or added image moves at most the images at a boundary, never the whole split
  (Geron 2019, "Hands-On Machine Learning", ch. 2: hash-based test sets stay put).
- Broken input is named in one sentence; with on_corrupt='skip' the image (or val.json /
  test.json) is left out with a warning naming it, with 'error' the load stops. An image is
  left out whole when one of its annotations is broken: kept without it, the object would be
  taught as background. A missing DIR, or a missing or unreadable train.json, always stops.
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, NamedTuple, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from cnnlab.data.dataset import Dataset, Split
from cnnlab.data.images import read_image
from cnnlab.data.registry import DataOptions, register_dataset
from cnnlab.data.targets import IGNORE, Targets
from cnnlab.errors import CnnlabError

SIDE = 128
TEST_FRACTION = 0.2  # as imagefolder
SPLIT_SEED = 0
EDGE_SLACK = 1.0  # px a box may pass the image edge: annotation tools round, or count x2 = width as inside
PARTS = ("train", "val", "test")
KINDS = {"boxes": "boxes", "labels": "label", "mask": "mask", "image_id": "label", "orig_size": "label"}
CATEGORY_IDS = "category_ids"  # meta key: the COCO id of each class after background, space-separated

T = TypeVar("T")


@dataclass(frozen=True)
class ImageEntry:
    id: int
    file_name: str
    size: tuple[int, int] | None  # (height, width) as the JSON states it
    source: str  # the JSON file that lists it
    annotations: list[dict] = field(default_factory=list)

    def __str__(self) -> str:
        return f"image {self.id} ({self.file_name}) of {self.source}"


@register_dataset(
    "coco", "your own detection data in COCO format: DIR/train.json (val.json, test.json optional), DIR/images/", takes_arg=True
)
def coco(arg: str | None, opts: DataOptions) -> Dataset:
    side = opts.image_size or SIDE
    skipped: list[str] = []
    root, docs, split_off = read_folder("coco", arg, opts, skipped)
    categories = read_categories(docs["train"], "train.json")
    entries = {part: image_entries(doc, f"{part}.json", opts, skipped) for part, doc in docs.items()}
    entries.update(split_by_hash(entries["train"], split_off))

    loaded = {part: [im for e in es if (im := tolerant(opts, skipped, load_image, root, e, categories, side))]
              for part, es in entries.items()}
    if not loaded["train"]:
        raise CnnlabError(f"no image of train.json in {root} could be used; see the warnings above for why.")
    most = max([1, *(len(im.labels) for images in loaded.values() for im in images)])
    ids = sorted(categories)
    return Dataset(
        name=f"coco:{arg}",
        classes=["background", *(categories[i][1] for i in ids)],
        train=stack(loaded["train"], most, side),
        val=stack(loaded["val"], most, side),
        test=stack(loaded["test"], most, side),
        source=str(root.resolve()),
        licence="the user's own",
        meta={
            "layout": ", ".join(f"{p}.json" for p in docs)
            + "".join(f"; {p} split off train.json ({f:g}, seed {SPLIT_SEED})" for p, f in split_off.items()),
            "image_size": f"3x{side}x{side}",
            CATEGORY_IDS: " ".join(map(str, ids)),
            **({"skipped": "; ".join(skipped)} if skipped else {}),
        },
        task="detect",
        other_tasks=("segment",),
    )


def read_folder(name: str, arg: str | None, opts: DataOptions, skipped: list[str]) -> tuple[Path, dict[str, dict], dict[str, float]]:
    """A `NAME:DIR` folder in COCO's layout: its path, its documents (train.json, which must be
    readable; val.json and test.json where present, skipped by `opts.on_corrupt` if not) and the
    shares of train.json to split off for the parts it lacks; one sentence for what is missing."""
    root = Path(arg or "").expanduser()
    if not root.is_dir():
        why = "is not a folder" if root.exists() else "does not exist"
        raise CnnlabError(f"{name} path {root} {why}; give a folder with train.json and an images/ folder.")
    if not (root / "train.json").is_file():
        raise CnnlabError(f"{root} has no train.json; a {name}: folder needs DIR/train.json and DIR/images/.")
    try:
        docs = {"train": read_json(root / "train.json")}
    except CnnlabError as e:
        raise CnnlabError(f"{e}; fix it: a {name}: folder has nothing to train on without its train.json.") from None
    for part in PARTS[1:]:
        if (root / f"{part}.json").is_file() and (doc := tolerant(opts, skipped, read_json, root / f"{part}.json")):
            docs[part] = doc
    split_off = {p: f for p, f in (("test", TEST_FRACTION), ("val", opts.val_fraction)) if p not in docs}
    if sum(split_off.values()) >= 1:
        raise CnnlabError(f"{name} keeps {TEST_FRACTION:.0%} of train.json for test, "
                          f"so val_fraction must be below {1 - TEST_FRACTION:g}.")
    return root, docs, split_off


def tolerant(opts: DataOptions, skipped: list[str], read: Callable[..., T], *args: object) -> T | None:
    """read(*args), or None after `skip_or_stop` when it raised."""
    try:
        return read(*args)
    except CnnlabError as e:
        skip_or_stop(str(e), opts, skipped)
        return None


def skip_or_stop(problem: str, opts: DataOptions, skipped: list[str]) -> None:
    """Stop with the problem (on_corrupt 'error'), or warn and note it in `skipped` ('skip')."""
    problem = problem.rstrip(".")
    if opts.on_corrupt == "error":
        raise CnnlabError(f"{problem}; fix it, or use --on-corrupt skip to leave it out.")
    skipped.append(problem)
    warnings.warn(f"coco: {problem}; skipped.", stacklevel=2)


# -- the JSON ------------------------------------------------------------------------------------

def read_json(path: Path) -> dict:
    """A COCO file's top level, checked to have an `images` list (and `annotations`, when there)."""
    text = path.read_text(encoding="utf-8", errors="replace")
    if not text.strip():
        raise CnnlabError(f"{path.name} is empty")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise CnnlabError(f"{path.name} is not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("images"), list):
        raise CnnlabError(f"{path.name} is not a COCO instances file: it has no 'images' list")
    if not isinstance(doc.setdefault("annotations", []), list):  # image-info files (COCO test-dev) have none
        raise CnnlabError(f"{path.name} is not a COCO instances file: its 'annotations' is not a list")
    if not doc["images"]:
        raise CnnlabError(f"{path.name} lists no images")
    return doc


def read_categories(doc: dict, name: str) -> dict[int, tuple[int, str]]:
    """{category id: (class index, name)}, classes 1..K in ascending id order."""
    cats = doc.get("categories")
    if not isinstance(cats, list) or not cats:
        raise CnnlabError(f"{name} lists no categories; add a 'categories' list of {{'id': ..., 'name': ...}}.")
    named: dict[int, str] = {}
    for i, c in enumerate(cats):
        if not (isinstance(c, dict) and is_int(c.get("id")) and isinstance(c.get("name"), str) and c["name"]):
            raise CnnlabError(f"category #{i + 1} of {name} needs an integer 'id' and a 'name', got {c!r}.")
        if c["id"] in named or c["name"] in named.values() or c["name"] == "background":
            raise CnnlabError(
                f"category {c['id']} '{c['name']}' of {name} repeats an id or a name, or is 'background'; give each its own."
            )
        named[c["id"]] = c["name"]
    return {cid: (k, named[cid]) for k, cid in enumerate(sorted(named), start=1)}


def image_entries(doc: dict, name: str, opts: DataOptions, skipped: list[str]) -> list[ImageEntry]:
    """The image entries of one file, each with its annotations, in file order."""
    entries: dict[int, ImageEntry] = {}
    for i, im in enumerate(doc["images"]):
        if entry := tolerant(opts, skipped, _image_entry, im, i, name, entries):
            entries[entry.id] = entry
    listed = {im["id"] for im in doc["images"] if isinstance(im, dict) and is_int(im.get("id"))}
    for i, ann in enumerate(doc["annotations"]):
        image_id = ann.get("image_id") if isinstance(ann, dict) else None
        if is_int(image_id) and image_id in entries:
            entries[image_id].annotations.append(ann)
        elif not is_int(image_id) or image_id not in listed:  # a skipped image's annotations go with it
            problem = f"annotation #{i + 1} of {name} refers to image id {image_id!r}, which it does not list"
            skip_or_stop(problem, opts, skipped)
    return list(entries.values())


def _image_entry(im: object, i: int, name: str, seen: dict[int, ImageEntry]) -> ImageEntry:
    if not (isinstance(im, dict) and is_int(im.get("id")) and isinstance(im.get("file_name"), str) and im["file_name"]):
        raise CnnlabError(f"image entry #{i + 1} of {name} needs an integer 'id' and a 'file_name', got {im!r}")
    where = f"image {im['id']} ({im['file_name']}) of {name}"
    if im["id"] in seen:
        raise CnnlabError(f"{where} repeats the id of {seen[im['id']].file_name}")
    path = Path(im["file_name"])
    if path.is_absolute() or ".." in path.parts:
        raise CnnlabError(f"{where} has a file_name outside images/; give it relative to DIR/images/")
    h, w = im.get("height"), im.get("width")
    if (h, w) != (None, None) and not (is_int(h) and is_int(w) and h > 0 and w > 0):
        raise CnnlabError(f"{where} has height {h!r} and width {w!r}; give both as positive integers, or neither")
    return ImageEntry(im["id"], im["file_name"], None if h is None else (h, w), name)


def split_by_hash(entries: list[ImageEntry], fractions: dict[str, float]) -> dict[str, list[ImageEntry]]:
    """Take the parts in `fractions` ({"test": 0.2, "val": 0.1}) off `entries`, in place, in that
    order, by rank of sha256("seed:file_name"); returns {part: its entries}, in file order. Put
    test first: then its images do not depend on val_fraction."""
    ranked = sorted(entries, key=lambda e: hashlib.sha256(f"{SPLIT_SEED}:{e.file_name}".encode()).digest())
    n, start, parts = len(entries), 0, {}
    for part, fraction in fractions.items():
        size = round(fraction * n)
        taken = {e.id for e in ranked[start : start + size]}
        parts[part] = [e for e in entries if e.id in taken]
        start += size
    kept = {e.id for e in ranked[start:]}
    entries[:] = [e for e in entries if e.id in kept]
    return parts


# -- one image -----------------------------------------------------------------------------------

class Annotation(NamedTuple):
    label: int  # class index, 1..K
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in the file's pixels, clipped to the image
    mask: np.ndarray | None  # (h, w) bool, None when the annotation has no segmentation
    crowd: bool


class LoadedImage(NamedTuple):
    x: Tensor  # (3, side, side)
    boxes: Tensor  # (M, 4) float32 in the resized pixels
    labels: Tensor  # (M,) int64
    mask: Tensor  # (side, side) int64
    image_id: int
    size: tuple[int, int]  # (height, width) of the file


def load_image(root: Path, entry: ImageEntry, categories: dict[int, tuple[int, str]], side: int) -> LoadedImage:
    """The image's pixels resized to side x side, and its targets in those pixels."""
    path = root / "images" / entry.file_name
    if not path.is_file():
        raise CnnlabError(f"{entry}: its file images/{entry.file_name} is missing")
    try:
        x = read_image(path, 3, (side, side))
    except CnnlabError as e:
        raise CnnlabError(f"{entry}: {e}") from None
    h, w = file_size(path)
    if entry.size not in (None, (h, w)):
        raise CnnlabError(f"{entry}: the file is {w}x{h} pixels but its entry says {entry.size[1]}x{entry.size[0]}")
    objects = [_annotation(a, categories, h, w, entry) for a in entry.annotations]
    scale = torch.tensor([side / w, side / h, side / w, side / h])
    things = [o for o in objects if not o.crowd]
    boxes = torch.tensor([o.box for o in things], dtype=torch.float32).view(-1, 4) * scale
    labels = torch.tensor([o.label for o in things], dtype=torch.int64)
    return LoadedImage(x, boxes, labels, paint_mask(objects, (h, w), side), entry.id, (h, w))


def _annotation(ann: object, categories: dict[int, tuple[int, str]], h: int, w: int, entry: ImageEntry) -> Annotation:
    """One annotation, checked against its image."""
    if not isinstance(ann, dict):
        raise CnnlabError(f"{entry}: an annotation is {ann!r}, not an object")
    where = f"{entry}: annotation {ann.get('id', '?')}"
    cid = ann.get("category_id")
    if not is_int(cid) or cid not in categories:
        raise CnnlabError(f"{where} has category id {cid!r}, which train.json's categories do not list")
    box = ann.get("bbox")
    if not (isinstance(box, list) and len(box) == 4 and all(is_number(v) for v in box)):
        raise CnnlabError(f"{where} has bbox {box!r}; give [x, y, width, height] in pixels")
    x, y, bw, bh = box
    if bw <= 0 or bh <= 0:
        raise CnnlabError(f"{where} has a box {box} with no area")
    if x < -EDGE_SLACK or y < -EDGE_SLACK or x + bw > w + EDGE_SLACK or y + bh > h + EDGE_SLACK:
        raise CnnlabError(f"{where} has a box {box} outside the {w}x{h} image")
    segmentation = ann.get("segmentation")
    try:
        mask = decode_segmentation(segmentation, h, w) if segmentation else None
    except CnnlabError as e:
        raise CnnlabError(f"{where} has a segmentation pycocotools cannot use: {e}") from None
    xyxy = (max(x, 0.0), max(y, 0.0), min(x + bw, float(w)), min(y + bh, float(h)))
    return Annotation(categories[cid][0], xyxy, mask, ann.get("iscrowd", 0) == 1)


def decode_segmentation(segmentation: list | dict, h: int, w: int) -> np.ndarray:
    """A COCO segmentation -- polygons [[x1, y1, x2, y2, ...], ...], or RLE {"size": [h, w],
    "counts": str or list} -- as an (h, w) bool array, decoded by pycocotools.

    RLE runs are checked to cover the image exactly first: pycocotools (2.0.11) decodes runs
    that stop short into a buffer it never fills, returning whatever memory held."""
    from pycocotools import mask as mask_utils

    if isinstance(segmentation, list):
        if not all(isinstance(p, list) and len(p) >= 6 and len(p) % 2 == 0 and all(map(is_number, p)) for p in segmentation):
            raise CnnlabError("each polygon must be a list of at least 3 x, y pairs")
        rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, h, w))
    elif isinstance(segmentation, dict):
        size, counts = segmentation.get("size"), segmentation.get("counts")
        if size != [h, w]:
            raise CnnlabError(f"its RLE size {size!r} is not the image's [height, width] [{h}, {w}]")
        if isinstance(counts, list) and all(is_int(c) for c in counts):
            runs, rle = counts, mask_utils.frPyObjects(segmentation, h, w)
        elif isinstance(counts, str):
            runs, rle = rle_runs(counts), {"size": [h, w], "counts": counts.encode()}
        else:
            raise CnnlabError("its RLE counts are neither a string nor a list of integers")
        if any(r < 0 for r in runs) or sum(runs) != h * w:
            raise CnnlabError(f"its RLE runs cover {sum(runs)} pixels, not the image's {h * w}")
    else:
        raise CnnlabError("it is neither a list of polygons nor an RLE dict")
    with warnings.catch_warnings():  # pycocotools 2.0.11's decoder trips NumPy 2's copy= deprecation; its output is right
        warnings.simplefilter("ignore", DeprecationWarning)
        return mask_utils.decode(rle).astype(bool)


def rle_runs(counts: str) -> list[int]:
    """The run lengths in a compressed RLE string: COCO's variant of LEB128, 5 bits a character
    from '0', 0x20 = more to come, 0x10 = sign; each run after the second stored as its
    difference to the run two before (pycocotools maskApi.c, rleFrString)."""
    runs: list[int] = []
    p = 0
    while p < len(counts):
        x, k, more = 0, 0, True
        while more:
            c = ord(counts[p]) - 48 if p < len(counts) else -1
            if not 0 <= c < 64:
                raise CnnlabError("its RLE counts string is cut short or holds a character outside '0'..'o'")
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p, k = p + 1, k + 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        runs.append(x + (runs[-2] if len(runs) > 2 else 0))
    return runs


def paint_mask(objects: list[Annotation], size: tuple[int, int], side: int) -> Tensor:
    """(side, side) int64 class per pixel: crowd regions and mask-less boxes IGNORE, then each
    object's mask, largest first (ties in file order), so smaller objects lie on top."""
    h, w = size
    out = torch.zeros(side, side, dtype=torch.int64)
    for o in objects:
        if o.crowd or o.mask is None:
            region = o.mask if o.mask is not None else np.zeros((h, w), dtype=bool)
            if o.mask is None:
                x1, y1, x2, y2 = o.box
                region[math.floor(y1) : math.ceil(y2), math.floor(x1) : math.ceil(x2)] = True
            out[resize_binary(torch.from_numpy(region), (side, side))] = IGNORE
    painted = sorted((o for o in objects if o.mask is not None and not o.crowd), key=lambda o: -int(o.mask.sum()))
    for o in painted:
        out[resize_binary(torch.from_numpy(o.mask), (side, side))] = o.label
    return out


def resize_binary(mask: Tensor, size: tuple[int, int]) -> Tensor:
    """A bool mask (H, W) at another size: a pixel is in where at least half of the area it
    covers was (bilinear with antialiasing, which averages when it shrinks), so thin parts
    survive as well as they can and nothing aliases as nearest-neighbour sampling would."""
    if tuple(mask.shape) == tuple(size):
        return mask.bool()
    scaled = F.interpolate(mask[None, None].float(), size=size, mode="bilinear", antialias=True, align_corners=False)
    return scaled[0, 0] >= 0.5


def file_size(path: Path | BinaryIO) -> tuple[int, int]:
    """(height, width) of an image (a file, or an upload in an io.BytesIO) as read_image sees it:
    after its EXIF orientation is applied."""
    from PIL import Image

    with Image.open(path) as im:
        w, h = im.size
        if im.getexif().get(0x0112) in (5, 6, 7, 8):  # the orientations exif_transpose turns by 90 degrees
            w, h = h, w
    return h, w


def stack(images: list[LoadedImage], most: int, side: int) -> Split:
    """One split: the images and their targets, boxes padded to `most` rows per image."""
    n = len(images)
    boxes, labels = torch.zeros(n, most, 4), torch.full((n, most), -1, dtype=torch.int64)
    for i, im in enumerate(images):
        boxes[i, : len(im.boxes)], labels[i, : len(im.labels)] = im.boxes, im.labels
    fields = {
        "boxes": boxes,
        "labels": labels,
        "mask": torch.stack([im.mask for im in images]) if n else torch.zeros(0, side, side, dtype=torch.int64),
        "image_id": torch.tensor([im.image_id for im in images], dtype=torch.int64),
        "orig_size": torch.tensor([im.size for im in images], dtype=torch.int64).view(n, 2),
    }
    x = torch.stack([im.x for im in images]) if n else torch.zeros(0, 3, side, side)
    return Split(x, Targets(fields, dict(KINDS)))


def is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def is_number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

