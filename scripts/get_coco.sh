#!/usr/bin/env bash
# Download COCO 2017 into DIR (train2017, val2017, annotations, test-dev image info), resuming partial downloads,
# verifying MD5s, unpacking into the layout data/ reads and checking the result. All options: get_coco.py --help.
#
#   bash scripts/get_coco.sh datasets/coco
#   bash scripts/get_coco.sh datasets/coco --only val2017 annotations --with-test-images
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="${here}/../.venv/bin/python"
[ -x "$python" ] || python=python3  # the script needs only the standard library (+ tqdm for progress bars)
exec "$python" "${here}/get_coco.py" "$@"
