"""Saving and loading a router as a directory.

Layout::

    ROUTER_DIR/
      manifest.json     format name, format version, tagrouter version, SHA-256 of every other file
      router.json       scorer and decider settings, table tags and models, output-token statistics
      catalog.yaml      the model catalogue
      table.npz         the tag-score counts
      tagger/           the tagger's own files (``tagger`` entry of router.json says which kind)

The directory is written next to its destination and renamed into place, so a reader sees the old router
or the new one, never a mix. Loading checks the format, the version and every checksum.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import yaml

from tagrouter import __version__
from tagrouter.catalog import Catalog
from tagrouter.deciding import Decider
from tagrouter.errors import ArtifactError
from tagrouter.fileio import atomic_write_bytes, atomic_write_json
from tagrouter.scoring import TagTable, scorer_from_config
from tagrouter.tagging.saving import load_tagger, save_tagger

if TYPE_CHECKING:
    from tagrouter.router import TagRouter

FORMAT = "tagrouter-router"
FORMAT_VERSION = 1


def save_router(router: TagRouter, folder: Path) -> None:
    """Write ``router`` to ``folder`` atomically (replacing an earlier router there)."""
    folder = folder.resolve()
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        tagger_entry = save_tagger(router.tagger, staging / "tagger")
        atomic_write_json(
            staging / "router.json",
            {
                "scorer": router.scorer.config(),
                "decider": {"rule": router.decider.rule, "knob": router.decider.knob},
                "tags": router.table.tags,
                "models": router.table.models,
                "output_token_stats": router.output_token_stats,
                "tagger": tagger_entry,
            },
        )
        router.catalog.save(staging / "catalog.yaml")
        buffer = io.BytesIO()
        np.savez(buffer, **router.table.to_arrays())
        atomic_write_bytes(staging / "table.npz", buffer.getvalue())
        atomic_write_json(
            staging / "manifest.json",
            {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "tagrouter_version": __version__,
                "files": {
                    str(p.relative_to(staging)): _sha256(p) for p in sorted(staging.rglob("*")) if p.is_file()
                },
            },
        )
        _swap_into_place(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _swap_into_place(staging: Path, folder: Path) -> None:
    if folder.exists():
        if not (folder / "manifest.json").exists() and any(folder.iterdir()):
            raise ArtifactError(f"{folder} exists and is not a saved router: refusing to overwrite it")
        old = folder.with_name(f".{folder.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        folder.rename(old)
        staging.rename(folder)
        shutil.rmtree(old, ignore_errors=True)
    else:
        staging.rename(folder)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_router(folder: Path) -> TagRouter:
    """Load and verify a router directory written by :func:`save_router`."""
    from tagrouter.router import TagRouter

    manifest_path = folder / "manifest.json"
    if not manifest_path.is_file():
        raise ArtifactError(f"{folder}: not a saved router (no manifest.json)")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{manifest_path}: damaged manifest ({exc})") from None
    if manifest.get("format") != FORMAT:
        raise ArtifactError(f"{manifest_path}: format is {manifest.get('format')!r}, expected {FORMAT!r}")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(
            f"{manifest_path}: format version {manifest.get('format_version')!r}, but this tagrouter "
            f"({__version__}) reads version {FORMAT_VERSION}; refit the router or use a matching tagrouter"
        )
    for name, digest in manifest.get("files", {}).items():
        path = folder / name
        if not path.is_file():
            raise ArtifactError(f"{folder}: file {name} listed in the manifest is missing")
        if _sha256(path) != digest:
            raise ArtifactError(f"{folder}: file {name} is damaged (checksum mismatch)")
    try:
        meta = json.loads((folder / "router.json").read_text(encoding="utf-8"))
        with np.load(folder / "table.npz") as arrays:
            table = TagTable(
                tags=list(meta["tags"]),
                models=list(meta["models"]),
                counts=arrays["counts"],
                model_counts=arrays["model_counts"],
            )
        catalog = Catalog.model_validate(
            yaml.safe_load((folder / "catalog.yaml").read_text(encoding="utf-8"))
        )
        tagger = load_tagger(folder / "tagger", meta["tagger"])
        return TagRouter(
            tagger=tagger,
            table=table,
            catalog=catalog,
            scorer=scorer_from_config(meta["scorer"]),
            decider=Decider(rule=meta["decider"]["rule"], knob=float(meta["decider"]["knob"])),
            output_token_stats={k: list(v) for k, v in meta["output_token_stats"].items()},
        )
    except ArtifactError:
        raise
    except Exception as exc:  # any other inconsistency inside a checksummed artifact
        raise ArtifactError(
            f"{folder}: damaged or inconsistent router ({type(exc).__name__}: {exc})"
        ) from None
