"""What the first analysis costs with cold and warm JIT caches, stage by stage, on the bundled sample.

Run: ``python benchmarks/first_run.py [--out FILE] [--cold-model]``, or ``python benchmarks/first_run.py --warm``
to fill the caches (what ``make setup`` does).

The cluster stage (fast_hdbscan) and the map (:mod:`analyzer.maplayout`) run numba code. Numba compiles it on
first use and, for functions marked ``cache=True``, keeps the machine code on disk: next to the package
(``__pycache__``) where that is writable, else in ``~/.cache/numba``, or in ``$NUMBA_CACHE_DIR`` when set.
This script runs ``analyzer run`` on the sample in subprocesses, each with ``NUMBA_CACHE_DIR`` pointing at a
temporary folder:

* **cold**: an empty cache, as on a fresh install that was never warmed;
* **after warm-up**: another empty cache filled first by ``--warm`` (HDBSCAN and the map layout on 200
  random points; timed separately), as after ``make setup``;
* **warm**: the cold run's cache again, as for every later run.

Each line gives the stage seconds the run stored (``runs.stats.stages_s``), the wall time of the whole process
(imports included) and its CPU seconds. The static embedding model is taken from the usual cache
(``$ANALYZER_CACHE``); ``--cold-model`` gives the cold run an empty one too, so that it distils the model.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "sample" / "requests.jsonl.gz"
STAGES = ("ingest", "embed", "index", "cluster", "score", "map")


def warm(n: int = 200, seed: int = 0, model: bool = True) -> dict[str, float]:
    """Compile (and cache on disk) the numba code of the cluster stage and the map on ``n`` random points;
    with ``model``, also build the default embedding model's cached files (the fast tier's static model)."""
    sys.path.insert(0, str(ROOT))
    import numpy as np

    from analyzer import cluster, maplayout

    out: dict[str, float] = {}
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 32)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    t = time.perf_counter()
    params = cluster.ClusterParams()
    ids, dist = maplayout.exact_knn(x, params.k)
    cluster.cluster_knn_graph(ids, (1.0 - dist).astype(np.float32), params)
    out["hdbscan_s"] = round(time.perf_counter() - t, 2)
    t = time.perf_counter()
    maplayout.umap_layout(x, maplayout.MapParams(n_epochs=5), seed)
    out["map_s"] = round(time.perf_counter() - t, 2)
    if model:
        from analyzer.pipeline import RunOptions, embedder_for

        t = time.perf_counter()
        embedder_for(RunOptions(progress=False)).encode(["warm-up"])
        out["model_s"] = round(time.perf_counter() - t, 2)
    return out


def _child_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _run(cmd: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    cpu0, t0 = _child_cpu(), time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    wall, cpu = time.perf_counter() - t0, _child_cpu() - cpu0
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return wall, cpu, done.stdout


def analyse(workspace: Path, env: dict[str, str]) -> dict:
    """One ``analyzer run`` of the sample in a subprocess: stage seconds, process wall and CPU seconds."""
    wall, cpu, _ = _run([sys.executable, "-m", "analyzer", "run", str(SAMPLE), "--workspace", str(workspace),
                         "--quiet"], env)
    import duckdb

    with duckdb.connect(str(workspace / "analyzer.duckdb"), read_only=True) as con:
        stats = json.loads(con.execute("SELECT stats FROM runs ORDER BY run_id DESC LIMIT 1").fetchone()[0])
    return {"stages_s": {k: round(v, 2) for k, v in stats["stages_s"].items()}, "process_wall_s": round(wall, 2),
            "process_cpu_s": round(cpu, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--warm", action="store_true", help="only fill the JIT caches (and the model cache), then exit")
    ap.add_argument("--no-model", action="store_true", help="with --warm: do not build the embedding model's cache")
    ap.add_argument("--cold-model", action="store_true", help="the cold run also starts with an empty model cache")
    ap.add_argument("--out", default=None, help="write the figures as JSON here")
    args = ap.parse_args()
    if args.warm:
        print(json.dumps(warm(model=not args.no_model)))
        return

    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="first-run-") as tmp_dir:
        tmp = Path(tmp_dir)
        base = {**os.environ, "HF_HUB_OFFLINE": "1"}
        cold_env = {**base, "NUMBA_CACHE_DIR": str(tmp / "numba-cold")}
        if args.cold_model:
            cold_env["ANALYZER_CACHE"] = str(tmp / "model-cache")
        results["cold"] = analyse(tmp / "ws-cold", cold_env)
        setup_env = {**base, "NUMBA_CACHE_DIR": str(tmp / "numba-setup")}
        wall, cpu, stdout = _run([sys.executable, str(Path(__file__).resolve()), "--warm", "--no-model"], setup_env)
        results["warm-up"] = {**json.loads(stdout.strip().splitlines()[-1]), "process_wall_s": round(wall, 2),
                              "process_cpu_s": round(cpu, 2)}
        results["after warm-up"] = analyse(tmp / "ws-setup", setup_env)
        results["warm"] = analyse(tmp / "ws-warm", {**base, "NUMBA_CACHE_DIR": str(tmp / "numba-cold")})

    print(f"{'':14}" + "".join(f"{s:>9}" for s in STAGES) + f"{'process':>10}{'cpu':>8}")
    for name, r in results.items():
        st = r.get("stages_s", {})
        cells = "".join(f"{st[s]:9.1f}" if s in st else f"{'':9}" for s in STAGES)
        print(f"{name:14}{cells}{r['process_wall_s']:10.1f}{r['process_cpu_s']:8.1f}")
    print("(seconds; 'warm-up' is `first_run.py --warm`, which `make setup` runs once)")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
