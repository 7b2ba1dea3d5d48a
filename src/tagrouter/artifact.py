"""Saving and loading a router as a directory.

Layout::

    ROUTER_DIR/
      CURRENT                 the name of the live version folder, replaced atomically
      v-<time>-<id>/          one complete version of the router:
        manifest.json         format, format version, provenance (versions of tagrouter, numpy,
                              scikit-learn, wordllama, …; the embedder), SHA-256 of every other file
        router.json           scorer and decider settings, table tags and models, output-token statistics,
                              the conversation mode the fit chose (null: none)
        catalog.yaml          the model catalogue
        table.npz             the tag-score counts
        residual.npz          the embedding correction of the scores, when the fit chose one
        tagger/               the tagger's own files (``tagger`` entry of router.json says which kind)

A save writes a new version folder beside the live one, flushes it to disk, then switches ``CURRENT`` in
one atomic rename: a reader, or a crash at any moment, sees the old router or the new one, never none and
never a mix. The previous version is kept (a reader may still be loading it); older ones are removed.
Loading checks the format, the version and every checksum. A folder written by format version 1 (the
files at the top level, no ``CURRENT``) still loads.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import time
import uuid
from pathlib import Path

import numpy as np
import yaml

from tagrouter.catalog import Catalog
from tagrouter.conversation import Conversation
from tagrouter.deciding import Decider
from tagrouter.errors import ArtifactError
from tagrouter.fileio import atomic_write_bytes, atomic_write_json, atomic_write_text, fsync_dir
from tagrouter.model import RoutingModel
from tagrouter.provenance import versions
from tagrouter.residual import EmbeddingResidual
from tagrouter.scoring import TagTable, scorer_from_config
from tagrouter.tagging.registry import load_tagger, save_tagger
from tagrouter.version import __version__

FORMAT = "tagrouter-router"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
CURRENT = "CURRENT"
_V1_FILES = ("manifest.json", "router.json", "catalog.yaml", "table.npz", "tagger")


def save_router(folder: Path, model: RoutingModel, decider: Decider) -> None:
    """Write a new version of the router in ``folder`` and switch to it atomically."""
    folder = folder.resolve()
    if folder.exists() and not folder.is_dir():
        raise ArtifactError(f"{folder} is a file, not a router folder")
    folder.mkdir(parents=True, exist_ok=True)
    if any(folder.iterdir()) and not _is_router(folder):
        raise ArtifactError(f"{folder} exists and is not a saved router: refusing to write into it")
    name = f"v-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
    staging = folder / f".{name}.tmp"
    try:
        _write_version(staging, model, decider)
        staging.rename(folder / name)
        fsync_dir(folder)
        atomic_write_text(folder / CURRENT, name + "\n")
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _prune(folder, keep={name, _previous(folder, name)})


def _write_version(staging: Path, model: RoutingModel, decider: Decider) -> None:
    staging.mkdir()
    tagger_entry = save_tagger(model.tagger, staging / "tagger")
    atomic_write_json(
        staging / "router.json",
        {
            "scorer": model.scorer.config(),
            "decider": decider.to_dict(),
            "tags": list(model.table.tags),
            "models": list(model.table.models),
            "output_token_stats": {m: list(v) for m, v in model.output_tokens.items()},
            "tagger": tagger_entry,
            "tuning": model.tuning,
            "residual": model.residual is not None,
            "conversation": None if model.conversation is None else model.conversation.to_dict(),
        },
    )
    model.catalog.save(staging / "catalog.yaml")
    buffer = io.BytesIO()
    np.savez(buffer, **model.table.to_arrays())
    atomic_write_bytes(staging / "table.npz", buffer.getvalue())
    if model.residual is not None:
        buffer = io.BytesIO()
        np.savez(buffer, **model.residual.to_arrays())
        atomic_write_bytes(staging / "residual.npz", buffer.getvalue())
    for sub in [p for p in staging.rglob("*") if p.is_dir()]:
        fsync_dir(sub)
    atomic_write_json(
        staging / "manifest.json",
        {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "tagrouter_version": __version__,
            "provenance": {**versions(), "embedder": tagger_entry.get("config", {}).get("embedder")},
            "files": {
                str(p.relative_to(staging)): _sha256(p) for p in sorted(staging.rglob("*")) if p.is_file()
            },
        },
    )


def _is_router(folder: Path) -> bool:
    return (folder / CURRENT).is_file() or (folder / "manifest.json").is_file()


def _previous(folder: Path, new: str) -> str | None:
    versions_there = sorted(p.name for p in folder.glob("v-*") if p.is_dir() and p.name != new)
    return versions_there[-1] if versions_there else None


def _prune(folder: Path, keep: set[str | None]) -> None:
    """Remove version folders but ``keep``, unfinished stagings and format-1 files."""
    for path in folder.iterdir():
        if path.name in keep or path.name == CURRENT:
            continue
        if path.name.startswith(("v-", ".v-")) or path.name in _V1_FILES:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def live_version(folder: Path) -> Path:
    """The folder holding the live version of the router saved in ``folder``."""
    current = folder / CURRENT
    if current.is_file():
        version = folder / current.read_text(encoding="utf-8").strip()
        if not version.is_dir():
            raise ArtifactError(f"{folder}: {CURRENT} names {version.name}, which is missing")
        return version
    if (folder / "manifest.json").is_file():  # format version 1
        return folder
    raise ArtifactError(f"{folder}: not a saved router (no {CURRENT} and no manifest.json)")


def load_router(folder: Path) -> tuple[RoutingModel, Decider]:
    """Load and verify the live version of a router saved by :func:`save_router`."""
    model, decider, _ = load_router_version(folder)
    return model, decider


def load_router_version(folder: Path) -> tuple[RoutingModel, Decider, str]:
    """:func:`load_router`, and the name of the version folder it read (``""`` for format version 1)."""
    if not folder.is_dir():
        raise ArtifactError(f"{folder}: no such router folder")
    version = live_version(folder)
    manifest_path = version / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{manifest_path}: damaged manifest ({exc})") from None
    if manifest.get("format") != FORMAT:
        raise ArtifactError(f"{manifest_path}: format is {manifest.get('format')!r}, expected {FORMAT!r}")
    if manifest.get("format_version") not in READABLE_VERSIONS:
        raise ArtifactError(
            f"{manifest_path}: format version {manifest.get('format_version')!r}, but this tagrouter "
            f"({__version__}) reads versions {', '.join(map(str, READABLE_VERSIONS))}; refit the router or "
            f"install the tagrouter version that wrote it ({manifest.get('tagrouter_version', 'unknown')})"
        )
    for name, digest in manifest.get("files", {}).items():
        path = version / name
        if not path.is_file():
            raise ArtifactError(f"{folder}: file {name} listed in the manifest is missing")
        if _sha256(path) != digest:
            raise ArtifactError(f"{folder}: file {name} is damaged (checksum mismatch)")
    try:
        meta = json.loads((version / "router.json").read_text(encoding="utf-8"))
        with np.load(version / "table.npz") as arrays:
            table = TagTable(meta["tags"], meta["models"], arrays["counts"], arrays["model_counts"])
        catalog = Catalog.model_validate(
            yaml.safe_load((version / "catalog.yaml").read_text(encoding="utf-8"))
        )
        tagger = load_tagger(version / "tagger", meta["tagger"])
        residual = None
        if meta.get("residual"):
            with np.load(version / "residual.npz") as arrays:
                residual = EmbeddingResidual(arrays["weights"], arrays["intercept"])
        model = RoutingModel.build(
            tagger,
            table,
            catalog,
            scorer_from_config(meta["scorer"]),
            {k: (float(v[0]), int(v[1])) for k, v in meta["output_token_stats"].items()},
            meta.get("tuning"),
            residual,
            None if meta.get("conversation") is None else Conversation.from_dict(meta["conversation"]),
        )
        name = "" if version == folder else version.name
        return model, Decider.from_dict(meta["decider"]), name
    except ArtifactError:
        raise
    except Exception as exc:  # any other inconsistency inside a checksummed artifact
        raise ArtifactError(
            f"{folder}: damaged or inconsistent router ({type(exc).__name__}: {exc})"
        ) from None
