"""One configuration: every threshold and weight of the analysis, read from TOML.

The sections are the parameter dataclasses of the stages, kept in their modules and grouped here by
:class:`AnalyzerConfig`:

==============  ====================================================  ==========================================
section         class                                                 what it sets
==============  ====================================================  ==========================================
``cluster``     :class:`analyzer.cluster.ClusterParams`               kNN graph, HDBSCAN, families, tasks
``incremental`` :class:`analyzer.assign.IncrementalParams`            daily runs: assign or re-cluster
``signals``     :class:`analyzer.signals.SignalParams`                thresholds of the signal functions
``scoring``     :class:`analyzer.campaigns.ScoringConfig`             grouping, members, score, flag, weights
``evidence``    :class:`analyzer.campaigns.EvidenceParams`            what evidence sentences and labels say
``history``     :class:`analyzer.history.HistoryConfig`               campaign ids across runs
``watch``       :class:`analyzer.watch.WatchConfig`                   watchlist matching and fingerprints
``map``         :class:`analyzer.mapparams.MapParams`                 the app's 2-D map
``stages``      :class:`analyzer.catalog.StageClasses`                the class that runs each stage
==============  ====================================================  ==========================================

What each field means and how it was calibrated is written once, next to the field: a ``#:`` comment above
it, or its entry in the class docstring's ``Parameters`` list (:func:`field_help` reads both). ``analyzer
config show`` prints every effective value as TOML with that text as comments, so its output can be saved as
``analyzer.toml`` and read back unchanged.

Precedence, lowest first: the defaults, ``WORKSPACE/analyzer.toml`` (when present), the ``--config FILE``
given on the command line, then explicit command-line flags (``--flag-threshold``, ``--min-cluster-size``...).
A file may set any subset of sections and keys; an unknown section or key, or a value of the wrong type, is
an error naming the file and the key. The effective values are stored with each run (``runs.params``).
"""

from __future__ import annotations

import ast
import difflib
import inspect
import json
import math
import os
import re
import textwrap
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from functools import cache
from typing import Any

from analyzer.assign import IncrementalParams
from analyzer.campaigns import EvidenceParams, ScoringConfig
from analyzer.catalog import StageClasses
from analyzer.cluster import ClusterParams
from analyzer.history import HistoryConfig
from analyzer.mapparams import MapParams
from analyzer.signals import SignalParams
from analyzer.watch import WatchConfig

#: The file a workspace's configuration is read from, in the workspace folder.
CONFIG_FILE = "analyzer.toml"

#: Line length of ``config show`` comments (the project's line length).
WRAP = 110


@dataclass
class AnalyzerConfig:
    """Every threshold and weight of the analysis, one section per stage (see the module docstring)."""

    cluster: ClusterParams = field(default_factory=ClusterParams)
    incremental: IncrementalParams = field(default_factory=IncrementalParams)
    signals: SignalParams = field(default_factory=SignalParams)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    evidence: EvidenceParams = field(default_factory=EvidenceParams)
    history: HistoryConfig = field(default_factory=HistoryConfig)
    watch: WatchConfig = field(default_factory=WatchConfig)
    map: MapParams = field(default_factory=MapParams)
    stages: StageClasses = field(default_factory=StageClasses)


#: Section name -> its dataclass.
SECTIONS: dict[str, type] = {f.name: f.default_factory for f in fields(AnalyzerConfig)}  # type: ignore[misc]


class ConfigError(ValueError):
    """A configuration file that cannot be used: unreadable TOML, unknown section or key, wrong type."""


# --- what each field means ---------------------------------------------------------------------------------------
@cache
def field_help(cls: type) -> dict[str, str]:
    """What each field of the dataclass ``cls`` means: its ``#:`` comment lines (Sphinx's convention) or its
    entry in the class docstring's numpy-style ``Parameters`` list; ``""`` for a field with neither."""
    try:
        src = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):  # no source installed: values are still shown, without their comments
        return {f.name: "" for f in fields(cls)}
    lines = src.splitlines()
    found: dict[str, str] = {}
    node = ast.parse(src).body[0]
    assert isinstance(node, ast.ClassDef)
    for stmt in node.body:
        if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
            comment: list[str] = []
            i = stmt.lineno - 2  # the line above the field (0-based)
            while i >= 0 and lines[i].strip().startswith("#:"):
                comment.insert(0, lines[i].strip()[2:].strip())
                i -= 1
            found[stmt.target.id] = " ".join(comment)
    doc = inspect.getdoc(cls) or ""
    if "Parameters\n----------" in doc:
        block = doc.split("Parameters\n----------", 1)[1]
        for m in re.finditer(r"^(\w+) : [^\n]*\n((?:[ \t]+[^\n]*\n?)+)", block, flags=re.M):
            if not found.get(m.group(1)):
                found[m.group(1)] = " ".join(part.strip() for part in m.group(2).splitlines())
    return {f.name: found.get(f.name, "") for f in fields(cls)}


def section_doc(cls: type) -> str:
    """The first paragraph of a section class's docstring, on one line."""
    doc = (inspect.getdoc(cls) or "").split("\n\n", 1)[0]
    return " ".join(doc.split())


# --- reading -----------------------------------------------------------------------------------------------------
def _coerce(value: Any, tp: Any, where: str) -> Any:
    """``value`` (as TOML gives it) as type ``tp`` of a field, or a :class:`ConfigError` naming ``where``."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is bool:
        ok = isinstance(value, bool)
    elif tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif tp is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif tp is str:
        ok = isinstance(value, str)
    elif origin is dict:
        ok = isinstance(value, dict)
        if ok:
            return {str(k): _coerce(v, args[1], f"{where}.{k}") for k, v in value.items()}
    elif origin is tuple:
        ok = isinstance(value, list)
        if ok:
            return tuple(_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
    else:  # pragma: no cover - a field type this reader does not know
        raise ConfigError(f"{where}: fields of type {tp} cannot be configured")
    if not ok:
        raise ConfigError(f"{where}: expected {getattr(tp, '__name__', tp)}, got {type(value).__name__} {value!r}")
    return value


def _did_you_mean(name: str, known) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def from_mapping(data: Mapping[str, Any], source: str, base: AnalyzerConfig | None = None) -> AnalyzerConfig:
    """``base`` (default: the defaults) with the sections and keys of ``data`` (a parsed TOML document from
    ``source``, named in errors) set. ``[scoring.weights]`` sets the weights it names; the others keep theirs."""
    cfg = base or AnalyzerConfig()
    for name, values in data.items():
        if name not in SECTIONS:
            raise ConfigError(f"{source}: unknown section [{name}]{_did_you_mean(name, SECTIONS)}; "
                              f"known: {', '.join(SECTIONS)}")
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: {name} must be a section ([{name}]), not a value")
        cls = SECTIONS[name]
        hints = typing.get_type_hints(cls)
        current = getattr(cfg, name)
        changes = {}
        for key, value in values.items():
            where = f"{source}: [{name}] {key}"
            if key not in hints:
                raise ConfigError(f"{source}: unknown key {key!r} in [{name}]{_did_you_mean(key, hints)}; "
                                  f"known: {', '.join(hints)}")
            value = _coerce(value, hints[key], where)
            if isinstance(value, dict):  # a table of weights: unknown names are errors, others keep theirs
                known = getattr(current, key)
                unknown = sorted(set(value) - set(known))
                if unknown:
                    raise ConfigError(f"{where}: unknown names {unknown}; known: {sorted(known)}")
                value = {**known, **value}
            changes[key] = value
        try:
            updated = replace(current, **changes)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{source}: [{name}]: {exc}") from None
        cfg = replace(cfg, **{name: updated})
    return cfg


def read_file(path: str, base: AnalyzerConfig | None = None) -> AnalyzerConfig:
    """``base`` with the settings of the TOML file ``path``."""
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such configuration file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return from_mapping(data, path, base)


def load_config(workspace: str | None = None, config_file: str | None = None) -> AnalyzerConfig:
    """The effective configuration: defaults < ``WORKSPACE/analyzer.toml`` (if present) < ``config_file``."""
    cfg = AnalyzerConfig()
    if workspace:
        ws_file = os.path.join(workspace, CONFIG_FILE)
        if os.path.isfile(ws_file):
            cfg = read_file(ws_file, cfg)
    if config_file:
        cfg = read_file(config_file, cfg)
    return cfg


# --- RunOptions --------------------------------------------------------------------------------------------------
def apply(cfg: AnalyzerConfig, options):
    """``options`` (a :class:`analyzer.pipeline.RunOptions`) with every section of ``cfg``."""
    return replace(options, **{name: getattr(cfg, name) for name in SECTIONS})


def of_options(options) -> AnalyzerConfig:
    """The configuration a :class:`analyzer.pipeline.RunOptions` runs with."""
    return AnalyzerConfig(**{name: getattr(options, name) for name in SECTIONS})


def as_dict(cfg: AnalyzerConfig) -> dict[str, dict[str, Any]]:
    """Plain section -> key -> value (as TOML and JSON hold them: tuples as lists)."""
    return json.loads(json.dumps({name: {f.name: getattr(getattr(cfg, name), f.name) for f in fields(cls)}
                                  for name, cls in SECTIONS.items()}))


# --- writing -----------------------------------------------------------------------------------------------------
def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string: JSON's escapes are TOML's
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def _comment(text: str, indent: str = "") -> list[str]:
    return textwrap.wrap(text, WRAP - len(indent) - 2, initial_indent="# ", subsequent_indent="# ",
                         break_on_hyphens=False, break_long_words=False) if text else []


def to_toml(cfg: AnalyzerConfig, header: str = "") -> str:
    """``cfg`` as a TOML document, each section and key preceded by comments saying what it means: the
    output of ``analyzer config show``, which :func:`read_file` reads back to the same configuration."""
    out = [f"# {line}" if line else "#" for line in header.splitlines()]
    for name, cls in SECTIONS.items():
        section = getattr(cfg, name)
        helps = field_help(cls)
        tables = []
        out += ["", *_comment(section_doc(cls)), f"[{name}]"]
        for f in fields(cls):
            value = getattr(section, f.name)
            if isinstance(value, dict):
                tables.append((f.name, value))
                continue
            out += _comment(helps[f.name])
            out.append(f"{f.name} = {_toml_value(value)}")
        for key, table in tables:
            out += ["", *_comment(helps[key]), f"[{name}.{key}]"]
            out += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in table.items()]
    return "\n".join(out).lstrip("\n") + "\n"
