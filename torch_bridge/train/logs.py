"""Run logs: one CSV row per epoch (``metrics.csv``) and JSON lines (``log.jsonl``) for steps,
epochs and events. Appends, so a resumed run continues the same files; only the main process
writes (``enabled=False`` elsewhere)."""
from __future__ import annotations

import csv
import json
import math
import os
from typing import Any, Dict, Sequence

__all__ = ["RunLog", "CLASSIFY_FIELDS", "UPSAMPLE_FIELDS"]

CLASSIFY_FIELDS = ("epoch", "step", "lr", "train_loss", "train_top1", "val_loss", "val_top1", "val_top5",
                   "epoch_time_s")
UPSAMPLE_FIELDS = ("epoch", "step", "lr", "train_loss", "train_rmse", "val_loss", "val_rmse",
                   "val_rmse_per_image", "epoch_time_s")


def _clean(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)  # JSON has no NaN / inf
    return v


class RunLog:
    def __init__(self, out_dir: str, fields: Sequence[str], enabled: bool = True):
        self.enabled = enabled
        self.fields = list(fields)
        self.csv_path = os.path.join(out_dir, "metrics.csv")
        self.jsonl_path = os.path.join(out_dir, "log.jsonl")
        if enabled:
            os.makedirs(out_dir, exist_ok=True)

    def event(self, kind: str, **record: Any) -> None:
        """One JSON line ``{"type": kind, ...}``."""
        if not self.enabled:
            return
        with open(self.jsonl_path, "a") as f:
            f.write(json.dumps({"type": kind, **{k: _clean(v) for k, v in record.items()}}) + "\n")

    def epoch(self, record: Dict[str, Any]) -> None:
        """A CSV row (the known fields; empty where absent) and an ``epoch`` JSON line."""
        if not self.enabled:
            return
        new = not os.path.isfile(self.csv_path) or os.path.getsize(self.csv_path) == 0
        with open(self.csv_path, "a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=self.fields, extrasaction="ignore", restval="")
            if new:
                w.writeheader()
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in record.items()})
        self.event("epoch", **record)
