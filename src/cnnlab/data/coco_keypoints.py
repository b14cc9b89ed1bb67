"""coco-keypoints:DIR -- your own pose data, in the COCO person-keypoints format.

The folder layout is that of `coco:` (and read by its code):

    DIR/train.json                images, annotations and categories (Lin et al. 2014, "Microsoft
    DIR/val.json, DIR/test.json   COCO", format at cocodataset.org/#format-data); both optional
    DIR/images/<file_name>        the pixels of each image entry

The category with a `keypoints` list (COCO's "person") names the joints, and its `skeleton`
lists the limbs as pairs of 1-based joint numbers. Each of its annotations holds `keypoints`,
x, y, v triplets in the image's pixels (v: 0 not labelled, 1 labelled but hidden, 2 visible),
`num_keypoints` (how many are labelled) and a `bbox` [x, y, w, h] around the person.

DeepPose estimates one person's pose from a picture of that person, so each annotated person is
one sample (as on LSP, where every image is one person): the square around its box, enlarged by
CONTEXT so the limbs near its edge keep some surrounding, cut out of the image by
`torchvision.ops.roi_align` (outside the image: black) and resized to S x S
(DataOptions.image_size, default 96). Targets (see targets.py), per person:

    keypoints         (J, 3) float32  x, y in the sample's pixels (centres at integers), v
    keypoints_mirror  (J,) int64      the joint each becomes in a mirror image (left <-> right)
    image_id          () int64        the image's id in its JSON

People with no labelled joint (`num_keypoints` 0) and crowd regions are left out. Parts missing
their file are split off train.json by a hash of the file names, as `coco:` does. Broken input is
named in one sentence; with on_corrupt='skip' the image is left out with a warning, with
'error' the load stops.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor

from cnnlab.data.coco import (
    EDGE_SLACK,
    ImageEntry,
    file_size,
    image_entries,
    is_int,
    is_number,
    read_folder,
    split_by_hash,
    tolerant,
)
from cnnlab.data.dataset import Dataset, Split
from cnnlab.data.images import read_image
from cnnlab.data.registry import DataOptions, register_dataset
from cnnlab.data.targets import Targets, mirror_order
from cnnlab.errors import CnnlabError

SIDE = 96  # stick-figures' side: a deeppose run reads either
CONTEXT = 1.25  # the person's box is enlarged by this much each way before cutting


class Person(NamedTuple):
    x: Tensor  # (3, side, side)
    keypoints: Tensor  # (J, 3)
    image_id: int


class Skeleton(NamedTuple):
    category: int  # the id of the category with keypoints
    joints: list[str]
    limbs: list[tuple[int, int]]  # 0-based


@register_dataset("coco-keypoints", "your own pose data in COCO person-keypoints format: DIR/train.json "
                  "(val.json, test.json optional), DIR/images/", takes_arg=True)
def coco_keypoints(arg: str | None, opts: DataOptions) -> Dataset:
    side = opts.image_size or SIDE
    skipped: list[str] = []
    root, docs, split_off = read_folder("coco-keypoints", arg, opts, skipped)
    skeleton = read_skeleton(docs["train"])
    entries = {part: image_entries(doc, f"{part}.json", opts, skipped) for part, doc in docs.items()}
    entries.update(split_by_hash(entries["train"], split_off))
    people = {part: [p for e in es for p in (tolerant(opts, skipped, load_people, root, e, skeleton, side) or [])]
              for part, es in entries.items()}
    if not people["train"]:
        raise CnnlabError(f"no person with labelled joints in train.json of {root} could be used; "
                          "see the warnings above for why.")
    names = skeleton.joints
    return Dataset(
        name=f"coco-keypoints:{arg}",
        classes=list(names),
        train=stack(people["train"], names, side),
        val=stack(people["val"], names, side),
        test=stack(people["test"], names, side),
        source=str(root.resolve()),
        licence="the user's own",
        meta={
            "layout": ", ".join(f"{p}.json" for p in docs)
            + "".join(f"; {p} split off train.json ({f:g})" for p, f in split_off.items()),
            "image_size": f"3x{side}x{side}",
            "skeleton": ", ".join(f"{names[a]}-{names[b]}" for a, b in skeleton.limbs),
            **({"skipped": "; ".join(skipped)} if skipped else {}),
        },
        task="pose",
    )


def read_skeleton(doc: dict) -> Skeleton:
    """The one category of train.json with `keypoints`: its id, joint names and limbs."""
    cats = [c for c in doc.get("categories") or [] if isinstance(c, dict) and "keypoints" in c]
    if len(cats) != 1:
        raise CnnlabError(f"train.json has {len(cats)} categories with 'keypoints'; a coco-keypoints: folder needs "
                          "exactly one (COCO's 'person') with 'keypoints' names and a 'skeleton'.")
    cat = cats[0]
    joints, skeleton = cat["keypoints"], cat.get("skeleton", [])
    if not (is_int(cat.get("id")) and isinstance(joints, list) and len(joints) >= 2
            and all(isinstance(n, str) and n for n in joints) and len(set(joints)) == len(joints)):
        raise CnnlabError(f"category {cat.get('name', cat.get('id'))!r} of train.json needs an integer 'id' and 'keypoints' "
                          "as a list of at least two distinct joint names.")
    if not (isinstance(skeleton, list) and all(isinstance(p, list) and len(p) == 2 and all(is_int(j) and 1 <= j <= len(joints)
                                                                                        for j in p) for p in skeleton)):
        raise CnnlabError(f"the skeleton of category {cat.get('name', cat['id'])!r} of train.json must list pairs of joint "
                          f"numbers 1..{len(joints)}; got {skeleton!r}.")
    return Skeleton(cat["id"], list(joints), [(a - 1, b - 1) for a, b in skeleton])


def load_people(root: Path, entry: ImageEntry, skeleton: Skeleton, side: int) -> list[Person]:
    """Every person with labelled joints in an image: the square around them at side x side, their joints in it."""
    from torchvision.ops import roi_align

    path = root / "images" / entry.file_name
    if not path.is_file():
        raise CnnlabError(f"{entry}: its file images/{entry.file_name} is missing")
    h, w = file_size(path)
    if entry.size not in (None, (h, w)):
        raise CnnlabError(f"{entry}: the file is {w}x{h} pixels but its entry says {entry.size[1]}x{entry.size[0]}")
    annotated = [(a, keypoints(a, len(skeleton.joints), h, w, entry)) for a in entry.annotations
                 if isinstance(a, dict) and a.get("category_id") == skeleton.category and a.get("iscrowd", 0) != 1]
    annotated = [(a, k) for a, k in annotated if (k[:, 2] > 0).any()]
    if not annotated:
        return []
    try:
        image = read_image(path, 3, (h, w))
    except CnnlabError as e:
        raise CnnlabError(f"{entry}: {e}") from None
    people = []
    for ann, k in annotated:
        x0, y0, size = square(ann, k, entry)
        box = torch.tensor([[0.0, x0, y0, x0 + size, y0 + size]])
        pixels = roi_align(image[None], box, side, sampling_ratio=2, aligned=True)[0]
        scale = side / size
        # continuous coordinates (pixel i spans [i, i + 1)): the centre of file pixel i is at i + 0.5
        moved = torch.stack([(k[:, 0] + 0.5 - x0) * scale - 0.5, (k[:, 1] + 0.5 - y0) * scale - 0.5, k[:, 2]], 1)
        people.append(Person(pixels, torch.where(k[:, 2:] > 0, moved, 0.0), entry.id))
    return people


def keypoints(ann: dict, joints: int, h: int, w: int, entry: ImageEntry) -> Tensor:
    """(J, 3) one annotation's x, y, v triplets, checked against its image and its num_keypoints."""
    where = f"{entry}: annotation {ann.get('id', '?')}"
    values = ann.get("keypoints")
    if not (isinstance(values, list) and len(values) == 3 * joints and all(is_number(v) for v in values)):
        raise CnnlabError(f"{where} needs 'keypoints' as {3 * joints} numbers (x, y, v for each of {joints} joints)")
    k = torch.tensor(values, dtype=torch.float32).view(joints, 3)
    if not torch.isin(k[:, 2], torch.tensor([0.0, 1.0, 2.0])).all():
        raise CnnlabError(f"{where} has a visibility flag other than 0, 1 or 2")
    labelled = k[:, 2] > 0
    outside = (k[:, 0] < -EDGE_SLACK) | (k[:, 1] < -EDGE_SLACK) | (k[:, 0] > w + EDGE_SLACK) | (k[:, 1] > h + EDGE_SLACK)
    if (labelled & outside).any():
        raise CnnlabError(f"{where} has a joint outside the {w}x{h} image")
    count = ann.get("num_keypoints", int(labelled.sum()))
    if count != int(labelled.sum()):
        raise CnnlabError(f"{where} says num_keypoints {count!r} but labels {int(labelled.sum())} joints")
    return k


def square(ann: dict, k: Tensor, entry: ImageEntry) -> tuple[float, float, float]:
    """x0, y0 and side of the square cut around a person: their bbox (else their labelled
    joints' box) enlarged CONTEXT times around its centre, at least 16 px a side."""
    box = ann.get("bbox")
    if box is not None:
        if not (isinstance(box, list) and len(box) == 4 and all(is_number(v) for v in box) and box[2] > 0 and box[3] > 0):
            raise CnnlabError(f"{entry}: annotation {ann.get('id', '?')} has bbox {box!r}; give [x, y, width, height] in pixels")
        x, y, bw, bh = box
    else:
        xy = k[k[:, 2] > 0, :2]
        (x, y), (x2, y2) = xy.min(0).values.tolist(), xy.max(0).values.tolist()
        bw, bh = x2 - x, y2 - y
    size = max(bw, bh, 16.0) * CONTEXT
    return x + bw / 2 - size / 2, y + bh / 2 - size / 2, size


def stack(people: list[Person], names: list[str], side: int) -> Split:
    n = len(people)
    fields = {
        "keypoints": torch.stack([p.keypoints for p in people]) if n else torch.zeros(0, len(names), 3),
        "keypoints_mirror": torch.tensor(mirror_order(names)).expand(n, -1).clone(),
        "image_id": torch.tensor([p.image_id for p in people], dtype=torch.int64),
    }
    x = torch.stack([p.x for p in people]) if n else torch.zeros(0, 3, side, side)
    return Split(x, Targets(fields, {"keypoints": "keypoints", "keypoints_mirror": "label", "image_id": "label"}))
