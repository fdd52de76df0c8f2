"""Saving and loading models safely: pickle runs code, so we load only files whose hash we recorded.

    save_model(pipeline, path, meta)      # path.pkl atomically, then its record path.json (sha256 + meta)
    model, meta = load_model(path)         # ModelError unless the file's sha256 matches the record

The record beside the model (trainedmodel.json for trainedmodel.pkl) is written after the model, so a run
killed in between leaves a model whose hash does not match: it is refused, never half-trusted.
"""
from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path
from typing import Any

from atomicio import atomic_write, atomic_write_json


class ModelError(Exception):
    """A model that is missing, or whose file does not match its recorded hash."""


def record_path(model_path: Path) -> Path:
    """The JSON record that vouches for a model file."""
    return model_path.with_suffix(".json")


def save_model(model: Any, path: Path, meta: dict[str, Any]) -> dict[str, Any]:
    """Pickle model to path atomically and write its record; returns the record."""
    blob = pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL)
    atomic_write(path, blob)
    record = {"sha256": hashlib.sha256(blob).hexdigest(), "bytes": len(blob), **meta}
    atomic_write_json(record_path(path), record)
    return record


def read_record(path: Path) -> dict[str, Any]:
    """The record of a model file, or ModelError if there is none."""
    rec = record_path(path)
    try:
        return json.loads(rec.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"{path}: no model record {rec.name} beside it; train (or deploy) again") from None
    except (OSError, ValueError) as e:
        raise ModelError(f"{rec}: unreadable model record ({e})") from None


def load_model(path: Path, expected_sha256: str | None = None) -> tuple[Any, dict[str, Any]]:
    """Unpickle a model only if its SHA-256 matches expected_sha256 (default: its record's)."""
    if not path.is_file():
        raise ModelError(f"{path}: no model there; run training.py first")
    meta = read_record(path) if expected_sha256 is None else {"sha256": expected_sha256}
    blob = path.read_bytes()
    actual = hashlib.sha256(blob).hexdigest()
    if actual != meta.get("sha256"):
        raise ModelError(f"{path}: file hash {actual[:12]}... does not match the recorded "
                         f"{str(meta.get('sha256'))[:12]}...; refusing to load it (tampered or half-written)")
    try:
        return pickle.loads(blob), meta
    except Exception as e:  # a recorded file that will not unpickle: a library upgrade, most likely
        raise ModelError(f"{path}: cannot be loaded ({type(e).__name__}: {e}); train again") from None

