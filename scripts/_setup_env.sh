# Sourced by scripts/*.sh: create .venv on first use, install pinned requirements, activate it.
# Re-installs only when a requirements file changed (stamp in .venv/.requirements.sha).
set -euo pipefail
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv"
  python3 -m venv .venv
fi
# shellcheck disable=SC1091
. .venv/bin/activate
want="$(cat requirements.txt requirements-test.txt | sha256sum | cut -d' ' -f1)"
have="$(cat .venv/.requirements.sha 2>/dev/null || true)"
if [ "$want" != "$have" ]; then
  echo "[setup] installing requirements (first run takes a few minutes)"
  python -m pip install -q --disable-pip-version-check -r requirements.txt -r requirements-test.txt 2>&1 \
    | grep -v "is ignored: it is neither a file nor a directory" || true
  python -c "import torch, torchvision, cv2, pycocotools, yaml, tqdm, pytest" \
    || { echo "[setup] dependency install failed" >&2; exit 1; }
  echo "$want" > .venv/.requirements.sha
fi
