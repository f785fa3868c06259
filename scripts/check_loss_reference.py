#!/usr/bin/env python
"""Check our aLRP Loss and AP Loss against reference vectors from the authors' released implementation.

Usage: python scripts/check_loss_reference.py PATH...   (each PATH an .npz file or a folder of them; format in
../shared/reference/README.md). Prints, per file, the max abs and rel error of every quantity and PASS/FAIL;
exits 1 on any FAIL. A value passes when ``|ours - ref| <= atol + rtol * |ref|`` (rtol 1e-4, atol 1e-6);
the rel error shown is ``|ours - ref| / max(|ref|, atol)``.
"""
from __future__ import annotations

import argparse
import sys
import zipfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from alrp.losses.alrp import alrp_loss  # noqa: E402
from alrp.losses.ap import ap_loss_result  # noqa: E402

RTOL, ATOL = 1e-4, 1e-6
INPUT_KEYS = ("logits", "targets", "loc_errors", "delta")
QUANTITIES = ("alrp_cls_loss", "alrp_loc_loss", "alrp_rank", "alrp_grad", "ap_loss", "ap_grad")


def collect(paths: list[str]) -> list[Path]:
    """Expand folders to their .npz files; raise FileNotFoundError naming a missing path."""
    files: list[Path] = []
    for name in paths:
        path = Path(name)
        if path.is_dir():
            files.extend(sorted(path.glob("*.npz")))
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"{path}: no such file or folder")
    return files


def compute(data: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Our values of every quantity for one reference case."""
    logits = torch.from_numpy(np.asarray(data["logits"], dtype=np.float32))
    targets = torch.from_numpy(np.asarray(data["targets"]).astype(np.int64))
    loc = torch.from_numpy(np.asarray(data["loc_errors"], dtype=np.float32))
    delta = float(data["delta"])
    res = alrp_loss(logits, targets, loc, delta)
    ap = ap_loss_result(logits, targets, delta)
    return {"alrp_cls_loss": res.cls.detach().numpy(), "alrp_loc_loss": res.loc.detach().numpy(),
            "alrp_rank": res.rank.numpy(), "alrp_grad": res.grad.numpy(), "ap_loss": ap.loss.detach().numpy(),
            "ap_grad": ap.grad.numpy()}


def check_file(path: Path) -> bool:
    """Print one file's report; return whether it passed."""
    try:
        if not zipfile.is_zipfile(path):
            raise ValueError("not an .npz archive (unreadable or corrupt)")
        with np.load(path) as npz:
            data = {k: npz[k] for k in npz.files}
        missing = [k for k in INPUT_KEYS + QUANTITIES if k not in data]
        if missing:
            raise KeyError(f"missing keys {missing}")
        ours = compute(data)
    except Exception as exc:  # report and go on with the other files
        print(f"{path.name}: FAIL ({type(exc).__name__}: {exc})")
        return False
    ok = True
    print(f"{path.name}  (M={data['logits'].size}, P={int((data['targets'] == 1).sum())})")
    for key in QUANTITIES:
        ref = np.asarray(data[key], dtype=np.float64)
        got = np.asarray(ours[key], dtype=np.float64)
        if got.shape != ref.shape:
            print(f"  {key:<14} shape {got.shape} != reference {ref.shape}  FAIL")
            ok = False
            continue
        diff = np.abs(got - ref)
        passed = bool(np.all(diff <= ATOL + RTOL * np.abs(ref))) and bool(np.isfinite(got).all())
        max_abs = float(diff.max()) if diff.size else 0.0
        max_rel = float((diff / np.maximum(np.abs(ref), ATOL)).max()) if diff.size else 0.0
        print(f"  {key:<14} max abs {max_abs:.3e}  max rel {max_rel:.3e}  {'PASS' if passed else 'FAIL'}")
        ok &= passed
    print(f"  => {'PASS' if ok else 'FAIL'}")
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("paths", nargs="+", help=".npz reference files or folders of them")
    args = parser.parse_args(argv)
    try:
        files = collect(args.paths)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if not files:
        print(f"error: no .npz files in {args.paths}", file=sys.stderr)
        return 1
    results = [check_file(f) for f in files]
    print(f"{sum(results)}/{len(results)} files PASS")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
