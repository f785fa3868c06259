"""Tiny synthetic COCO-format datasets (coloured rectangles on noise) for tests and smoke runs."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

import cv2
import numpy as np

COLOURS_BGR = ((0, 0, 255), (0, 255, 0), (255, 0, 0))  # one colour per category


def synthetic_coco_dict(num_images: int, size: Tuple[int, int] = (96, 128), boxes_per_image: int = 3,
                        cat_ids: Sequence[int] = (3, 7, 11), seed: int = 0) -> Tuple[Dict[str, Any], List[np.ndarray]]:
    """Builds a COCO dict and matching BGR uint8 images `(H, W, 3)` of `size=(H, W)`.

    Category ids are deliberately non-contiguous; box `k` of image `i` is filled with the colour of its class.
    """
    rng = np.random.default_rng(seed)
    h, w = size
    images, anns, pixels = [], [], []
    for i in range(num_images):
        image = rng.integers(0, 60, (h, w, 3), dtype=np.uint8)
        for _ in range(boxes_per_image):
            bw, bh = int(rng.integers(8, w // 2)), int(rng.integers(8, h // 2))
            x, y = int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh))
            k = int(rng.integers(len(cat_ids)))
            image[y:y + bh, x:x + bw] = COLOURS_BGR[k % len(COLOURS_BGR)]
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": int(cat_ids[k]),
                         "bbox": [x, y, bw, bh], "area": bw * bh, "iscrowd": 0})
        images.append({"id": i + 1, "file_name": f"{i + 1:06d}.png", "height": h, "width": w})
        pixels.append(image)
    cats = [{"id": int(c), "name": f"class{c}", "supercategory": "shape"} for c in cat_ids]
    return {"images": images, "annotations": anns, "categories": cats}, pixels


def write_coco(root: Path | str, split: str, coco: Dict[str, Any], images: Sequence[np.ndarray]) -> Path:
    """Writes `<root>/annotations/instances_<split>.json` and `<root>/<split>/<file_name>`; returns the JSON path."""
    root = Path(root)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    (root / split).mkdir(parents=True, exist_ok=True)
    for info, image in zip(coco["images"], images):
        if not cv2.imwrite(str(root / split / info["file_name"]), image):
            raise OSError(f"cannot write {root / split / info['file_name']}")
    path = root / "annotations" / f"instances_{split}.json"
    path.write_text(json.dumps(coco))
    return path


def write_synthetic_coco(root: Path | str, split: str = "train", num_images: int = 8, **kwargs: Any) -> Path:
    """Writes a synthetic split (see `synthetic_coco_dict`); returns the annotation file path."""
    coco, images = synthetic_coco_dict(num_images, **kwargs)
    return write_coco(root, split, coco, images)
