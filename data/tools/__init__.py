"""Scripts-only data tools: dataset checks (check), Pascal VOC -> COCO conversion (voc), demo tiling (demo)."""
