"""STIX 2.1 bundles of campaign fingerprints, to share with other providers, and back into watch entries.

Built with the ``stix2`` library (OASIS). A bundle holds, per campaign:

- a ``campaign`` (name = the label, ``objective`` = the intent, first/last seen) with the custom property
  ``x_analyzer_fingerprint`` (see below) and ``x_analyzer_campaign_id``;
- ``indicator`` objects, each ``indicates`` the campaign:

  * subnets: ``[ipv4-addr:value ISSUBSET '203.0.113.0/24']`` (``ipv6-addr`` for IPv6);
  * user agents, as STIX 2.1 models them (the HTTP request extension of ``network-traffic``):
    ``[network-traffic:extensions.'http-request-ext'.request_header.'User-Agent' = '...']``;
  * prompt hashes: ``[artifact:hashes.'SHA-256' = '...' OR ...]``, SHA-256 of the prompt's UTF-8 text
    (the prompt as an artifact's payload), up to :data:`HASHES_PER_INDICATOR` per indicator;
  * template sentences: ``pattern_type`` ``pcre`` (a standard pattern type): one case-insensitive regular
    expression per recurring sentence of the campaign's wrapper, to be searched in the prompt text (words in
    order, any whitespace between, ``\\d+`` for any number); a prompt matches the template when the
    sentences it contains add up to 8 words (:attr:`analyzer.watch.WatchConfig.min_template_words`);

- an ``attack-pattern`` for MITRE ATLAS AML.T0024.002 "Extract AI Model" (external reference
  ``mitre-atlas``), which each campaign ``uses``;
- a ``sighting`` of each campaign by the exporting identity: ``count`` = its requests, first/last seen;
- the TLP 2.0 marking the user chose (the OASIS marking definitions of the TLP 2.0 extension; STIX 2.1
  predefines only TLP 1.0) on every object, and an ``identity`` that created them.

API key and payment ids are never exported: they are the exporting provider's own identifiers and can
identify customers. ``x_analyzer_fingerprint`` carries what only another analyzer can use: ``model_key``
(the embedding space), ``vectors`` (the fingerprint's centroid vectors, float16, little-endian, row-major,
base64), ``dims``, ``hour_profile`` (24 shares of requests per UTC hour), ``n_accounts``, ``n_requests`` and
``score``. Leave it out with ``vectors=False``. An importer that does not know it ignores it.

:func:`entries_from_bundle` turns a bundle (ours or another provider's) into confirmed watch entries:
every campaign with the indicators that indicate it; indicators that indicate no campaign form one entry.
Patterns it reads: the forms above, ``ipv4-addr``/``ipv6-addr`` ``=`` or ``ISSUBSET``, and ``pcre``.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import stix2

from analyzer.watch import Fingerprint, WatchEntry, pattern_words

#: Namespace of the deterministic ids of the objects this module makes (same campaign, same ids).
NAMESPACE = uuid.UUID("5b0c4e1e-8f0a-4c47-9a57-6f0f2d3a8c11")
#: Prompt hashes per indicator (one ``OR`` of comparisons each).
HASHES_PER_INDICATOR = 100
TLP_EXTENSION = "extension-definition--60a3c5c5-0d10-413e-aab3-9e08dde9e88d"
#: The OASIS TLP 2.0 marking definitions (cti-stix-common-objects, extension-definition-specifications/tlp-2.0).
TLP_IDS = {
    "clear": "marking-definition--94868c89-83c2-464b-929b-a1a8aa3c8487",
    "green": "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb",
    "amber": "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421",
    "amber+strict": "marking-definition--939a9414-2ddd-4d32-a0cd-375ea402b003",
    "red": "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1",
}
TLP_LEVELS = tuple(TLP_IDS)
UA_PATH = "network-traffic:extensions.'http-request-ext'.request_header.'User-Agent'"
ATLAS_ID = "AML.T0024.002"


def tlp_marking(level: str) -> stix2.MarkingDefinition:
    """The OASIS TLP 2.0 marking definition object for ``level`` (clear, green, amber, amber+strict, red)."""
    if level not in TLP_IDS:
        raise ValueError(f"unknown TLP level {level!r}; choose one of {', '.join(TLP_LEVELS)}")
    return stix2.parse({
        "type": "marking-definition", "spec_version": "2.1", "id": TLP_IDS[level],
        "created": "2022-10-01T00:00:00.000Z", "name": f"TLP:{level.upper()}",
        "extensions": {TLP_EXTENSION: {"extension_type": "property-extension", "tlp_2_0": level}},
    }, allow_custom=True)


def _id(kind: str, *parts: str) -> str:
    return f"{kind}--{uuid.uuid5(NAMESPACE, chr(31).join(parts))}"


def quote(value: str) -> str:
    """A STIX pattern string literal: single-quoted, backslash and quote escaped."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def unquote(literal: str) -> str:
    """The value of a STIX pattern string literal (inverse of :func:`quote`)."""
    s = literal.strip()
    if len(s) >= 2 and s[0] == s[-1] == "'":
        s = s[1:-1]
    out, i = [], 0
    while i < len(s):
        if s[i] == "\\" and i + 1 < len(s):
            out.append(s[i + 1])
            i += 2
        else:
            out.append(s[i])
            i += 1
    return "".join(out)


def _ts(iso: str | None) -> datetime | None:
    if not iso:
        return None
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).astimezone(UTC)


def encode_vectors(vectors: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(vectors, dtype="<f2").tobytes()).decode("ascii")


def decode_vectors(text: str, dims: int) -> np.ndarray:
    raw = np.frombuffer(base64.b64decode(text), dtype="<f2").astype(np.float32)
    if dims <= 0 or raw.size % dims:
        raise ValueError(f"x_analyzer_fingerprint: {raw.size} values do not make rows of {dims}")
    return raw.reshape(-1, dims)


@dataclass
class Shared:
    """One campaign to share: its fingerprint, and what the sighting says."""

    fingerprint: Fingerprint
    n_requests: int
    n_accounts: int
    first_seen: str | None
    last_seen: str | None
    description: str = ""


def indicator_patterns(fp: Fingerprint) -> list[tuple[str, str, str]]:
    """``(name, pattern_type, pattern)`` of each indicator a fingerprint yields."""
    out = []
    for net in fp.infra.get("subnet", []) + fp.infra.get("ip_range", []):
        try:
            version = ipaddress.ip_network(net, strict=False).version
        except ValueError:
            continue
        out.append((f"network {net}", "stix", f"[ipv{version}-addr:value ISSUBSET {quote(net)}]"))
    for ua in fp.infra.get("user_agent", []):
        out.append((f"user agent {ua[:80]}", "stix", f"[{UA_PATH} = {quote(ua)}]"))
    hashes = fp.prompt_sha256
    for start in range(0, len(hashes), HASHES_PER_INDICATOR):
        chunk = hashes[start : start + HASHES_PER_INDICATOR]
        expr = " OR ".join(f"artifact:hashes.'SHA-256' = {quote(h)}" for h in chunk)
        out.append((f"prompt hashes {start + 1}-{start + len(chunk)} (SHA-256 of the UTF-8 prompt)", "stix",
                    f"[{expr}]"))
    for p in fp.template_patterns:
        out.append(("template sentence (search the prompt text)", "pcre", p["regex"]))
    return out


def make_bundle(items: Sequence[Shared], tlp: str = "amber", identity_name: str = "analyzer",
                vectors: bool = True) -> stix2.Bundle:
    """A STIX 2.1 bundle of the given campaigns (see the module docstring), marked with ``tlp``."""
    marking = tlp_marking(tlp)
    now = datetime.now(UTC)
    identity = stix2.Identity(id=_id("identity", identity_name), name=identity_name, identity_class="system",
                              object_marking_refs=[marking.id])
    common = {"created_by_ref": identity.id, "object_marking_refs": [marking.id]}
    attack = stix2.AttackPattern(
        id=_id("attack-pattern", ATLAS_ID), name="Extract AI Model",
        description="Distillation: querying a model's inference API at scale to train another model on its "
                    "outputs (MITRE ATLAS AML.T0024.002, via AML.T0040 AI Model Inference API Access).",
        external_references=[{"source_name": "mitre-atlas", "external_id": ATLAS_ID,
                              "url": f"https://atlas.mitre.org/techniques/{ATLAS_ID}"}], **common)
    objects: list = [marking, identity, attack]
    for it in items:
        fp = it.fingerprint
        first, last = _ts(it.first_seen or fp.first_seen), _ts(it.last_seen or fp.last_seen)
        custom = {"x_analyzer_campaign_id": fp.campaign_id}
        fpx = {"hour_profile": fp.hour_profile, "n_accounts": it.n_accounts, "n_requests": it.n_requests,
               "score": round(fp.score, 4)}
        if vectors and fp.model_key and len(fp.vectors):
            fpx.update(model_key=fp.model_key, dims=int(fp.vectors.shape[1]), vectors=encode_vectors(fp.vectors))
        custom["x_analyzer_fingerprint"] = fpx
        camp = stix2.Campaign(
            id=_id("campaign", identity_name, fp.campaign_id), name=fp.label or fp.campaign_id,
            description=it.description or None, objective=fp.intent or None,
            first_seen=first, last_seen=last, allow_custom=True, **custom, **common)
        objects += [camp, stix2.Relationship(camp, "uses", attack, id=_id("relationship", camp.id, "uses"), **common)]
        for name, ptype, pattern in indicator_patterns(fp):
            ind = stix2.Indicator(
                id=_id("indicator", camp.id, ptype, pattern), name=name, pattern=pattern, pattern_type=ptype,
                valid_from=first or now, indicator_types=["malicious-activity"],
                description=f"Seen in campaign {fp.campaign_id}: {fp.label}", **common)
            rel = stix2.Relationship(ind, "indicates", camp, id=_id("relationship", ind.id, camp.id), **common)
            objects += [ind, rel]
        sighting = {"count": min(int(it.n_requests), 999_999_999)}
        if first:
            sighting["first_seen"] = first
        if last and first and last > first:
            sighting["last_seen"] = last
        objects.append(stix2.Sighting(
            id=_id("sighting", camp.id), sighting_of_ref=camp.id, where_sighted_refs=[identity.id],
            description=f"{it.n_requests} requests from {it.n_accounts} accounts", **sighting, **common))
    return stix2.Bundle(objects=objects, allow_custom=True)


# --- import ----------------------------------------------------------------------------------------------------------
def _get(obj, key, default=None):
    try:
        return obj[key]
    except (KeyError, AttributeError, TypeError):
        return default


def patterns_to_fingerprint(fp: Fingerprint, pattern: str, pattern_type: str) -> bool:
    """Add what one indicator pattern says to ``fp`` (in place); ``False`` when nothing in it is understood."""
    if pattern_type == "pcre":
        fp.template_patterns.append({"regex": pattern, "words": pattern_words(pattern)})
        return True
    if pattern_type != "stix":
        return False
    from stix2patterns.v21.pattern import Pattern

    try:
        comparisons = Pattern(pattern).inspect().comparisons
    except Exception:  # noqa: BLE001 - the library raises several parse error types
        return False
    used = False
    for obj_type, comps in comparisons.items():
        for path, op, literal in comps:
            if not isinstance(literal, str) or not literal.startswith("'"):
                continue
            value = unquote(literal)
            if obj_type in ("ipv4-addr", "ipv6-addr") and path == ["value"] and op in ("=", "ISSUBSET"):
                try:
                    net = ipaddress.ip_network(value, strict=False)
                except ValueError:
                    continue
                field = "subnet" if net.prefixlen == (24 if net.version == 4 else 48) else "ip_range"
                fp.infra.setdefault(field, []).append(str(net))
                used = True
            elif (obj_type == "network-traffic" and op == "=" and len(path) == 4 and path[:3] ==
                  ["extensions", "http-request-ext", "request_header"] and path[3].lower() == "user-agent"):
                fp.infra.setdefault("user_agent", []).append(value)
                used = True
            elif obj_type in ("artifact", "file") and op == "=" and path == ["hashes", "SHA-256"]:
                fp.prompt_sha256.append(value.lower())
                used = True
    return used


def entries_from_bundle(doc: Mapping | str) -> tuple[list[WatchEntry], list[str]]:
    """Confirmed watch entries from a STIX 2.1 bundle, and notes on what was skipped.

    Validated with ``stix2.parse`` first (a bundle that does not parse raises ``stix2.exceptions.STIXError``
    or ``ValueError``). Source ``stix:<bundle id>``; watch ids are stable per bundle and campaign, so that
    importing a bundle again replaces its entries.
    """
    bundle = stix2.parse(doc, allow_custom=True)
    bid = str(bundle.id)
    objs = {o["id"]: o for o in (bundle.get("objects") or [])}
    names = {i: _get(o, "name", "") for i, o in objs.items() if o["type"] == "identity"}
    indicates: dict[str, list[str]] = {}
    for o in objs.values():
        if o["type"] == "relationship" and o["relationship_type"] == "indicates":
            indicates.setdefault(o["target_ref"], []).append(o["source_ref"])
    sightings = {o["sighting_of_ref"]: o for o in objs.values() if o["type"] == "sighting"}
    notes: list[str] = []
    entries: list[WatchEntry] = []
    used: set[str] = set()
    groups = [(o, indicates.get(i, [])) for i, o in objs.items() if o["type"] == "campaign"]
    loose = [i for i, o in objs.items() if o["type"] == "indicator" and
             not any(i in v for k, v in indicates.items() if k in objs and objs[k]["type"] == "campaign")]
    if loose:
        groups.append((None, loose))
    for camp, ind_ids in groups:
        cid = str(_get(camp, "x_analyzer_campaign_id") or (camp["id"] if camp is not None else bid))
        fp = Fingerprint(campaign_id=cid, label=str(_get(camp, "name", "") or "indicators of " + bid),
                         intent=str(_get(camp, "objective", "") or ""))
        for iid in ind_ids:
            ind = objs.get(iid)
            if ind is None or ind["type"] != "indicator":
                continue
            if patterns_to_fingerprint(fp, ind["pattern"], ind["pattern_type"]):
                used.add(iid)
            else:
                notes.append(f"indicator {iid}: pattern not used for matching ({ind['pattern_type']})")
        fpx = _get(camp, "x_analyzer_fingerprint") or {}
        if isinstance(fpx, Mapping):
            fp.hour_profile = list(fpx.get("hour_profile") or [])
            fp.n_accounts = int(fpx.get("n_accounts") or 0)
            fp.n_requests = int(fpx.get("n_requests") or 0)
            fp.score = float(fpx.get("score") or 0.0)
            if fpx.get("vectors") and fpx.get("model_key"):
                try:
                    fp.vectors = decode_vectors(str(fpx["vectors"]), int(fpx.get("dims") or 0))
                    fp.model_key = str(fpx["model_key"])
                except (ValueError, TypeError) as exc:
                    notes.append(f"campaign {cid}: fingerprint vectors not read ({exc})")
        sighting = sightings.get(camp["id"]) if camp is not None else None
        if sighting is not None and not fp.n_requests:
            fp.n_requests = int(_get(sighting, "count", 0) or 0)
        if camp is not None:
            fp.first_seen = _iso(_get(camp, "first_seen"))
            fp.last_seen = _iso(_get(camp, "last_seen"))
        for f in fp.infra:
            fp.infra[f] = sorted(set(fp.infra[f]))
        fp.prompt_sha256 = sorted(set(fp.prompt_sha256))
        if not (fp.infra or fp.prompt_sha256 or fp.template_patterns or len(fp.vectors)):
            notes.append(f"campaign {cid}: nothing to match on; skipped")
            continue
        creator = names.get(_get(camp, "created_by_ref", "")) if camp is not None else ""
        wid = "w-" + uuid.uuid5(NAMESPACE, f"{bid}\x1f{cid}").hex[:10]
        entries.append(WatchEntry(wid, cid, "confirmed", f"stix:{bid}", fp, analyst=f"stix:{creator or 'unknown'}",
                                  note=f"imported from bundle {bid}"))
    return entries, notes


def _iso(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return str(value)


def bundle_json(bundle: stix2.Bundle) -> str:
    """The bundle as pretty JSON (what ``--out`` files hold); ASCII only, so that text from the logs (labels,
    user agents) cannot carry control or bidi characters into a viewer."""
    return json.dumps(json.loads(bundle.serialize()), indent=2, ensure_ascii=True) + "\n"
