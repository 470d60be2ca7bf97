"""Per-group results benchmark (`hf-aft train --group_column ... --baseline_dir STL_OUT`): per seed an STL run, then
an AFT run (beta 0.1) compared with it group by group, and the inherited errors (how the student's errors overlap the
teacher probe's) against STL; mean ± sd over seeds, changes paired by seed.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/groups.py                          # all suites, seeds 0,1,2
    HF_HUB_OFFLINE=1 .venv/bin/python bench/groups.py --suite party,rt --seeds 0,1

Suites (data, student, teacher and schedule are those of the existing suites, so the numbers compare with them; the
settings come from bench/beta_auto.py `suite_args`, only the dataset folder differs, by its added group columns):

- `party`: sentences of the 2012 US party conventions labelled by party, speaker-disjoint 2k train / 1k test
  (beta_auto.py `party`), all-mpnet-base-v2 teacher, 3-layer MiniLM student, 3 epochs, batch 32, lr 2e-4, max length
  64. Groups: `speaker` (speaker-disjoint split: a test speaker has 14-126 rows; 12 speakers have >= 30 rows, 650 rows
  in all, the other 16 speakers are pooled into "other") and `party` (the label: per-party accuracy is per-class
  recall).
- `rt`: Rotten Tomatoes critics' snippets, movie-disjoint 2k train / 1k test (hf_aft.demo `rotten_tomatoes`, the
  quality suite's data), same teacher, student and schedule. The corpus has no genre or critic column, so: `movie_name`
  (the unit the split is disjoint by: a movie is the natural "domain" of its snippets, 24 of the 42 test movies have
  >= 30 rows) and `length` (short / medium / long by word-count terciles of the test split: a snippet's length is how
  much evidence it holds, and a teacher that reads short texts better is where transfer could help or hurt a group).
- `vision`: animal-mnist silhouettes, 2k train / 1k test (vision_quality.py `animal_mnist`), MobileNetV2 ImageNet
  teacher, a 4-layer ViT student from scratch, 8 epochs, batch 64, lr 1e-3. The package has no source or camera column,
  so: `figure_size` (the share of the 28x28 image the silhouette covers, pixels brighter than mid-grey so that the
  anti-aliased rim counts about half, in terciles of the test split: small / medium / large; it is confounded with the
  class, an elephant is larger than a bird) and `kind` (domestic: cat, cow, dog, horse, sheep; wild: the rest).

No suite is cut: full data and epochs. Measured (torch 1 thread, 2 cores shared with another job): vision 9 min, party
31 min, rt 34 min for 3 seeds; each suite's first AFT run includes the teacher's feature extraction (5-6 min for
mpnet, cached for the other seeds). `--group_min_rows` is 30 (hf-aft's default) everywhere. The group columns are
added by looking each text up in the frame the existing builders split (texts are de-duplicated there), so the rows and
their order are exactly those of the existing suites. Runs go to runs/bench_groups/SUITE/{stl,aft-0.1}-SEED (a run
whose folder has hf_aft_complete.json is not rerun), one row per run to bench/results/groups.jsonl (with the run's
whole group_report.json), and the tables are printed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import beta_auto  # noqa: E402
import vision_quality  # noqa: E402

from hf_aft.commands.train import train  # noqa: E402

WORK = Path("runs/bench_groups")
RESULTS = Path("bench/results/groups.jsonl")
SEEDS = (0, 1, 2)
MIN_ROWS = 30
BETA = "0.1"
# suite: (beta_auto suite whose settings it runs with, group columns)
SUITES = {"party": ("party", ["speaker", "party"]), "rt": ("mpnet", ["movie_name", "length"]),
          "vision": ("vision", ["figure_size", "kind"])}
DOMESTIC = {"cat", "cow", "dog", "horse", "sheep"}


@contextlib.contextmanager
def captured_frame():
    """The pandas frame that hf_aft.demo.group_disjoint_splits is called with, while inside the block."""
    import hf_aft.demo as demo

    original, seen = demo.group_disjoint_splits, {}

    def capture(frame, *args, **kwargs):
        seen["frame"] = frame
        return original(frame, *args, **kwargs)

    demo.group_disjoint_splits = capture
    try:
        yield seen
    finally:
        demo.group_disjoint_splits = original


def add_lookup_columns(data, frame, columns: list[str]):
    """Each split with `columns` of the frame's row of the same text (texts are unique in the frame), as strings."""
    for column in columns:
        lookup = dict(zip(frame.text, frame[column], strict=True))
        for name in data:
            values = [lookup[t] for t in data[name]["text"]]  # NaN (missing) -> None, hf-aft's "(missing)"
            data[name] = data[name].add_column(column, [None if v is None or v != v else str(v) for v in values])
    return data


def terciles(values: np.ndarray, edges: np.ndarray, names: tuple[str, str, str]) -> list[str]:
    """Each value's band: names[0] up to the first edge, names[1] up to the second, names[2] above."""
    return [names[int(np.searchsorted(edges, v, side="left"))] for v in values]


def build(suite: str):
    """The suite's DatasetDict with its group columns."""
    if suite == "party":
        with captured_frame() as seen:
            data = beta_auto.party()
        return add_lookup_columns(data, seen["frame"], ["speaker", "party"])
    if suite == "rt":
        from hf_aft.demo import rotten_tomatoes

        with captured_frame() as seen:
            data = rotten_tomatoes()
        data = add_lookup_columns(data, seen["frame"], ["movie_name"])
        words = {name: np.array([len(t.split()) for t in split["text"]]) for name, split in data.items()}
        edges = np.quantile(words["test"], [1 / 3, 2 / 3])
        for name in data:
            data[name] = data[name].add_column("length", terciles(words[name], edges, ("short", "medium", "long")))
        return data
    data = vision_quality.animal_mnist()
    cover = {name: np.array([(np.asarray(im) > 127).mean() for im in split["image"]]) for name, split in data.items()}
    edges = np.quantile(cover["test"], [1 / 3, 2 / 3])
    for name in data:
        data[name] = data[name].add_column("figure_size", terciles(cover[name], edges, ("small", "medium", "large")))
        data[name] = data[name].add_column("kind", ["domestic" if vision_quality.CLASSES[y] in DOMESTIC else "wild"
                                                    for y in data[name]["label"]])
    return data


def data_dir(suite: str) -> Path:
    folder = WORK / suite / "data"
    if not (folder / "dataset_dict.json").exists():
        build(suite).save_to_disk(str(folder))
    return folder


def run_dir(suite: str, method: str, seed: int) -> Path:
    return WORK / suite / f"{method}-{seed}"


def command(suite: str, method: str, seed: int, min_rows: int) -> list[str]:
    """beta_auto's arguments for the suite (student, teacher, schedule), this suite's data, the group columns."""
    settings, columns = SUITES[suite]
    args = beta_auto.suite_args(settings, seed, None)
    args[args.index("--dataset_name") + 1] = str(data_dir(suite))
    args += beta_auto.method_args("stl" if method == "stl" else f"aft:{BETA}")
    args += ["--group_column", *columns, "--group_min_rows", str(min_rows)]
    if method != "stl":
        args += ["--baseline_dir", str(run_dir(suite, "stl", seed))]
    return [*args, "--seed", str(seed), "--save_strategy", "no", "--report_to", "none", "--logging_steps", "50",
            "--disable_tqdm", "true", "--overwrite_output_dir", "--output_dir", str(run_dir(suite, method, seed))]


def card_sections(out: Path) -> dict:
    text = (out / "README.md").read_text() if (out / "README.md").exists() else ""
    return {"by_group": "By group" in text, "inherited_errors": "Inherited errors" in text}


def run(suite: str, method: str, seed: int, min_rows: int) -> dict:
    out = run_dir(suite, method, seed)
    wall = None
    if not (out / "hf_aft_complete.json").exists():
        args = command(suite, method, seed, min_rows)
        print(f"== {suite} {method} seed {seed}: hf-aft train {' '.join(args)}", flush=True)
        start = time.perf_counter()
        train(args)
        wall = time.perf_counter() - start
    results = json.loads((out / "eval_results.json").read_text())
    report = json.loads((out / "group_report.json").read_text())
    return {"suite": suite, "method": method, "seed": seed, "min_rows": min_rows,
            "accuracy": results["eval_accuracy"], "macro_f1": results.get("eval_macro_f1"), "wall_s": wall,
            "card": card_sections(out), "predictions_kept": (out / "eval_predictions.json").exists(),
            "group_report": report}


def _ms(values: list[float]) -> str:
    if not values:
        return "-"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {sd:.3f}"


def _mean(values: list) -> str:
    values = [v for v in values if v is not None]
    return f"{statistics.mean(values):+.3f}" if values else "-"


def _pairs(rows: list[dict], suite: str) -> list[tuple[dict, dict]]:
    """(STL row, AFT row) per seed where both ran, by seed."""
    by = {(r["method"], r["seed"]): r for r in rows if r["suite"] == suite}
    return [(by[("stl", s)], by[("aft", s)]) for s in sorted({r["seed"] for r in rows if r["suite"] == suite})
            if ("stl", s) in by and ("aft", s) in by]


def group_tables(rows: list[dict], suite: str) -> str:
    pairs = _pairs(rows, suite)
    if not pairs:
        return f"({suite}: no seed with both runs)"
    seeds = [a["seed"] for _, a in pairs]
    stl_acc, aft_acc = [s["accuracy"] for s, _ in pairs], [a["accuracy"] for _, a in pairs]
    lines = [f"#### {suite}: accuracy overall STL {_ms(stl_acc)}, AFT beta {BETA} {_ms(aft_acc)}, paired change "
             f"{_mean([a - s for s, a in zip(stl_acc, aft_acc, strict=True)])} (seeds {', '.join(map(str, seeds))})",
             ""]
    summary = ["| column | STL worst group per seed | STL largest gap | AFT worst group per seed | AFT largest gap |",
               "|---|---|---|---|---|"]
    for column in SUITES[suite][1]:
        reports = [(s["group_report"]["columns"][column], a["group_report"]["columns"][column]) for s, a in pairs]
        names = list(reports[0][1]["groups"])
        pooled = reports[0][1]["pooled"]
        other = reports[0][1]["groups"].get("other", {}).get("rows", 0)
        lines += [f"**{suite} / {column}** ({len(names) - bool(pooled)} groups judged"
                  + (f"; {len(pooled)} groups under {pairs[0][1]['min_rows']} rows, {other} rows, pooled into "
                     f"'other'" if pooled else "") + ")", "",
                  "| group | rows | STL accuracy | AFT accuracy | paired change | wins / losses (sum) | "
                  "flagged (seeds) | adjusted p per seed |", "|---|---|---|---|---|---|---|---|"]
        for name in names:
            stl = [s["groups"][name]["accuracy"] for s, _ in reports]
            aft = [a["groups"][name] for _, a in reports]
            flagged = sum(bool(g.get("flagged")) for g in aft)
            adjusted = ", ".join(f"{g['adjusted_p_value']:.2g}" if "adjusted_p_value" in g else "-" for g in aft)
            lines.append(f"| {name} | {aft[0]['rows']} | {_ms(stl)} | {_ms([g['accuracy'] for g in aft])} | "
                         f"{_mean([g['change'] for g in aft])} | {sum(g['wins'] for g in aft)} / "
                         f"{sum(g['losses'] for g in aft)} | {flagged}/{len(aft)} | {adjusted} |")
        lines.append("")

        def worst(result):
            name = result["worst"]
            return f"{name} ({result['groups'][name]['accuracy']:.3f})" if name else "-"

        def gaps(results):
            return _ms([r["largest_gap"] for r in results if r["largest_gap"] is not None])

        summary.append(f"| {column} | {'; '.join(worst(s) for s, _ in reports)} | {gaps([s for s, _ in reports])} | "
                       f"{'; '.join(worst(a) for _, a in reports)} | {gaps([a for _, a in reports])} |")
    return "\n".join(lines + summary)


def inherited_table(rows: list[dict], suites: list[str]) -> str:
    lines = ["| suite | teacher probe | probe error rate | shared error share STL | AFT | paired change | "
             "copied share STL | AFT | paired change | copied test per seed (AFT wins / losses, p) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for suite in suites:
        pairs = _pairs(rows, suite)
        if not pairs:
            continue
        for probe in pairs[0][1]["group_report"]["inherited"]:
            overall = [a["group_report"]["inherited"][probe]["overall"] for _, a in pairs]

            def mean(key, values=overall):
                values = [v[key] for v in values if v.get(key) is not None]
                return f"{statistics.mean(values):.3f}" if values else "-"

            tests = "; ".join(f"s{a['seed']}: {o['copied_test']['wins']}/{o['copied_test']['losses']}, "
                              f"p={o['copied_test']['p_value']:.2g}" for (_, a), o in zip(pairs, overall, strict=True))
            lines.append(f"| {suite} | {Path(probe).name} | {mean('probe_error_rate')} | "
                         f"{mean('baseline_shared_error_share')} | {mean('shared_error_share')} | "
                         f"{_mean([o['shared_error_share_change'] for o in overall])} | "
                         f"{mean('baseline_copied_share')} | {mean('copied_share')} | "
                         f"{_mean([o['copied_share_change'] for o in overall])} | {tests} |")
        for _, a in pairs:
            if not a["group_report"]["inherited"]:
                lines.append(f"| {suite} | none (seed {a['seed']}: {a['group_report'].get('inherited_note')}) |"
                             + " - |" * 8)
    return "\n".join(lines)


def inherited_group_table(rows: list[dict], suites: list[str]) -> str:
    """Shared error share change per group (AFT - STL, mean over seeds), for the record."""
    lines = ["| suite | column | group | probe error rate | shared error share STL -> AFT | copied share STL -> AFT |",
             "|---|---|---|---|---|---|"]
    for suite in suites:
        pairs = _pairs(rows, suite)
        if not pairs:
            continue
        for probe in pairs[0][1]["group_report"]["inherited"]:
            for column in SUITES[suite][1]:
                per_seed = [a["group_report"]["inherited"][probe]["groups"][column] for _, a in pairs]
                for name in per_seed[0]:
                    got = [g[name] for g in per_seed]

                    def mean(key, got=got):
                        values = [g[key] for g in got if g.get(key) is not None]
                        return f"{statistics.mean(values):.3f}" if values else "-"

                    lines.append(f"| {suite} | {column} | {name} | {mean('probe_error_rate')} | "
                                 f"{mean('baseline_shared_error_share')} -> {mean('shared_error_share')} | "
                                 f"{mean('baseline_copied_share')} -> {mean('copied_share')} |")
    return "\n".join(lines)


def times_table(rows: list[dict], suites: list[str]) -> str:
    lines = ["| suite | runs | wall minutes (these runs) | STL s per seed | AFT s per seed | card sections present |",
             "|---|---|---|---|---|---|"]
    for suite in suites:
        got = sorted((r for r in rows if r["suite"] == suite), key=lambda r: (r["seed"], r["method"] != "stl"))
        if not got:
            continue
        walls = [r["wall_s"] for r in got if r["wall_s"] is not None]

        def per(method, got=got):
            return ", ".join("-" if r["wall_s"] is None else f"{r['wall_s']:.0f}"
                             for r in got if r["method"] == method)

        cards = all(r["card"]["by_group"] for r in got) and all(r["card"]["inherited_errors"] for r in got
                                                                 if r["method"] == "aft")
        lines.append(f"| {suite} | {len(got)} | {sum(walls) / 60:.1f} | {per('stl')} | {per('aft')} | "
                     f"{'By group (all), Inherited errors (all AFT)' if cards else 'MISSING in some: see rows'} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", default=",".join(SUITES), help=f"comma-separated among {', '.join(SUITES)}")
    parser.add_argument("--seeds", default=",".join(map(str, SEEDS)), help="comma-separated (default: %(default)s)")
    parser.add_argument("--group_min_rows", type=int, default=MIN_ROWS)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1, as beta_auto.py)")
    args = parser.parse_args()
    suites, seeds = args.suite.split(","), [int(s) for s in args.seeds.split(",")]
    unknown = sorted(set(suites) - set(SUITES))
    if unknown:
        parser.error(f"unknown suites {unknown}: choose among {', '.join(SUITES)}")
    reproduce = (f"HF_HUB_OFFLINE=1 .venv/bin/python bench/groups.py --suite {','.join(suites)} "
                 f"--seeds {','.join(map(str, seeds))}" + (f" --group_min_rows {args.group_min_rows}"
                                                           if args.group_min_rows != MIN_ROWS else "")
                 + (f" --threads {args.threads}" if args.threads != 1 else ""))
    print(f"reproduce (from the repository root): {reproduce}", flush=True)
    torch.set_num_threads(args.threads)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    done = [json.loads(line) for line in RESULTS.read_text().splitlines()] if RESULTS.exists() else []
    for suite in suites:  # suite-major: a whole suite's seeds before the next suite
        for seed in seeds:
            for method in ("stl", "aft"):
                key = (suite, method, seed, args.group_min_rows)
                if any((r["suite"], r["method"], r["seed"], r["min_rows"]) == key for r in done):
                    continue
                row = run(suite, method, seed, args.group_min_rows)
                done.append(row)
                with RESULTS.open("a") as f:
                    f.write(json.dumps(row) + "\n")
    rows = [r for r in done if r["suite"] in suites and r["seed"] in seeds and r["min_rows"] == args.group_min_rows]
    print(f"\nreproduce: {reproduce}\n")
    print(f"### Per-group accuracy, STL vs AFT (beta {BETA}), group_min_rows {args.group_min_rows}; mean ± sd over "
          "seeds, change paired by seed (AFT - STL), flagged = worse than STL with BH-adjusted McNemar p < 0.05. "
          "Full data and epochs (no suite cut).\n")
    for suite in suites:
        print(group_tables(rows, suite) + "\n")
    print("### Inherited errors (the teacher probe's errors in the student's), overall; mean over seeds, changes "
          "paired by seed\n")
    print(inherited_table(rows, suites) + "\n")
    print("### Inherited errors per group (mean over seeds)\n")
    print(inherited_group_table(rows, suites) + "\n")
    print("### Run times\n")
    print(times_table(rows, suites))


if __name__ == "__main__":
    main()
