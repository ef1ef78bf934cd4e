"""Layer 3 of the report: the set-up section (the data, its split, preprocessing, initialisation)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from .blocks import Heading, Inline, Para, Span, Table
from .format import fmt_num


def source_name(source: Any) -> str:
    """The data source as a reader may see it: a URL as it is, a local file or folder by its name
    only (the checksums beside it identify it), never where it lies on the machine."""
    if source is None or source == "":
        return "—"
    text = str(source)
    if re.match(r"^[a-z][a-z0-9+.\-]*://", text, flags=re.I):
        return text
    return re.split(r"[\\/]", text.rstrip("/\\"))[-1] or text


def _dataset_rows(ds: Mapping[str, Any]) -> list[list[Inline]]:
    """Set-up table rows on the data: source, format, checksums, official or not, image counts."""
    if not ds:
        return []
    rows: list[list[Inline]] = [["data source", source_name(ds.get("source"))]]
    if ds.get("format"):
        rows.append(["format", str(ds["format"])])
    for k, name in (("md5", "MD5"), ("sha256", "SHA-256")):
        if ds.get(k):
            rows.append([name, Span(str(ds[k]), code=True)])
    official = ds.get("official")
    if official is not None:
        rows.append(["official archive", "yes" if official else "no"])
    if ds.get("n_train_total") is not None:
        rows.append(["training images available", str(ds["n_train_total"])])
    if ds.get("n_test") is not None:
        rows.append(["test images", str(ds["n_test"])])
    return rows


def _split_sizes(runs: Sequence[Mapping[str, Any]]) -> str | None:
    """'train / val / test' image counts when every run used the same ones (and the split's name if shared)."""
    sizes = {json.dumps(r.get("split_sizes"), sort_keys=True) for r in runs if r.get("split_sizes")}
    splits = {str(r.get("config", {}).get("split")) for r in runs}
    if len(sizes) != 1:
        return None
    s = json.loads(sizes.pop())
    txt = " / ".join(str(s.get(k, "—")) for k in ("train", "val", "test"))
    if len(splits) == 1 and splits != {"None"}:
        txt += f" (split “{splits.pop()}”)"
    return txt


def _initialisation(init: Mapping[str, Any]) -> str:
    bits = [str(init.get("distribution", ""))]
    if init.get("std") is not None:
        bits.append(f"std {fmt_num(init['std'])}")
    if init.get("seed") is not None:
        bits.append(f"seed {init['seed']}")
    return ", ".join(b for b in bits if b)


def setup_blocks(doc: Mapping[str, Any]) -> list:
    ds = doc.get("dataset") or {}
    pre = doc.get("preprocessing") or {}
    init = doc.get("initialisation") or {}
    rows = _dataset_rows(ds)
    sizes = _split_sizes(doc.get("runs", []))
    if sizes is not None:
        rows.append(["train / validation / test", sizes])
    if pre.get("scale"):
        rows.append(["scaling", str(pre["scale"])])
    if pre.get("normalisation"):
        rows.append(["normalisation", str(pre["normalisation"])])
    if init:
        rows.append(["initialisation of W and b", _initialisation(init)])
    if doc.get("cifarcli_version"):
        rows.append(["cifarcli version", str(doc["cifarcli_version"])])
    if doc.get("created"):
        rows.append(["created", str(doc["created"])])
    blocks: list = [Heading(2, "Set-up", "setup")]
    if rows:
        blocks.append(Table(["item", "value"], rows, align="ll"))
    if ds.get("official") is False or ds.get("note"):
        note = ds.get("note") or "not the official archive"
        blocks.append(Para(f"Data: {note}.", "warn" if ds.get("official") is False else "note"))
    return blocks
