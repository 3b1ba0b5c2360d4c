"""BENCHMARKS.md's generated tables, rendered from results.json alone (every figure comes from a recorded run).

`python -m bench.report` re-renders them without measuring anything; `python -m bench` does it after each run.
Only the text between `<!-- bench:begin -->` and `<!-- bench:end -->` is rewritten.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.machine import machine_line
from bench.settings import FIRST_TIMED_STEP, PARTS, REPO, Budget

MARK_BEGIN, MARK_END = "<!-- bench:begin -->", "<!-- bench:end -->"
MD_HEADER = (
    "# Benchmarks\n\n"
    "Measured by `make bench` (`python -m bench`; `make bench-quick` for a short run). Everything between the\n"
    "markers below is rewritten from `bench/results.json` on every run; edit only outside them.\n\n"
)


def _f(value: float | None, digits: int = 3, sign: bool = False) -> str:
    if value is None:
        return "n/a"
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def _ms(spread: dict[str, Any] | None, digits: int = 3) -> str:
    """mean ± std over seeds (the mean alone for one seed)."""
    if not spread or spread["mean"] is None:
        return "n/a"
    if spread["std"] is None:
        return _f(spread["mean"], digits)
    return f"{spread['mean']:.{digits}f} ± {spread['std']:.{digits}f}"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _provenance(results: dict[str, Any], names: Sequence[str]) -> str:
    """Which command on which machine measured these sections (they may come from separate --only runs)."""
    seen: dict[tuple[str, str], list[str]] = {}
    for name in names:
        run = results["sections"].get(name, {}).get("run")
        if run:
            seen.setdefault((run["command"], run["machine"]), []).append(f"{name} {run['started'][:16]}")
    lines = [f"_Measured by `{cmd}` on {machine} ({', '.join(when)})._" for (cmd, machine), when in seen.items()]
    return "\n".join(lines) if lines else "_Not measured yet._"


# Sections whose figures belong to the models of one run: older than the router section, they describe other models.
ROUTER_BOUND_SECTIONS = ("single", "shadow", "ablations", "speed", "gpu")


def _section_warnings(results: dict[str, Any], names: Sequence[str]) -> list[str]:
    """Lines on sections not measured yet, failed, or measured before the router section they sit beside."""
    lines = []
    router_run = results["sections"].get("router", {}).get("run")
    for name in names:
        if name not in results["sections"]:
            lines.append(f"- section `{name}` not measured yet (`python -m bench --only {name}`).")
        run = results["sections"].get(name, {}).get("run")
        if name in ROUTER_BOUND_SECTIONS and run and router_run and run["started"] < router_run["started"]:
            lines.append(f"- ⚠ section `{name}` ({run['started'][:16]}) predates the router section "
                         f"({router_run['started'][:16]}): it describes the models and config of that earlier run "
                         f"(`python -m bench --only {name}` renews it).")
        if name in results.get("errors", {}):
            err = results["errors"][name]
            lines.append(f"- ⚠ section `{name}` failed in `{err['command']}` ({err['when'][:16]}): {err['error']}")
    return lines + [""] if lines else []


def _task_names(results: dict[str, Any]) -> list[str]:
    return list(results["settings"]["tasks"])


def _reference_rows(ref: dict[str, Any], tasks: list[str]) -> list[str]:
    rows = []
    for key, title, fit_s in (("majority", "Majority class", None), ("tfidf", "TF-IDF + LogReg", ref["tfidf_fit_s"])):
        cells = " | ".join(f"{_f(ref['tasks'][t][key]['macro_f1'])} | {_f(ref['tasks'][t][key]['accuracy'])}"
                           for t in tasks)
        train = "—" if fit_s is None else duration(fit_s)
        rows.append(f"| {title} | {cells} | {_f(ref[f'{key}_mean_macro_f1'])} | {train} |")
    return rows


PART_TITLES = {"encoder_only": "encoder heads alone", "lexical_only": "lexical heads alone"}


def _finetune_rows(title: str, summary: dict[str, Any], tasks: list[str]) -> list[str]:
    """The row of the model as it routes, then one row per fused part scored alone (same trainings)."""
    def row(label: str, scored: dict[str, Any], train: str) -> str:
        cells = " | ".join(f"{_ms(scored['tasks'][t]['macro_f1'])} | {_ms(scored['tasks'][t]['accuracy'])}"
                           if t in scored["tasks"] else "n/a | n/a" for t in tasks)
        return f"| {label} | {cells} | {_ms(scored['mean_macro_f1'])} | {train} |"

    train = duration(summary["train_runtime_s"]["mean"])
    if summary.get("n_reused"):  # --reuse: the time is the original training's
        train += f" ({summary['n_reused']}/{summary['n_seeds']} seed(s) reused from an earlier run)"
    rows = [row(f"{title} ({summary['n_seeds']} seed(s))", summary, train)]
    rows += [row(f"↳ {title}: {PART_TITLES[part]}", summary[part], "(same)") for part in PARTS if part in summary]
    return rows


def _md_main(results: dict[str, Any]) -> list[str]:
    s, tasks = results["sections"], _task_names(results)
    fine_tuned = s.get("router") or s.get("single")
    budget = Budget(**fine_tuned["budget"]).describe() if fine_tuned else "n/a"
    seeds = "; ".join(f"{name}: {', '.join(str(run['seed']) for run in s[name]['runs'])}"
                      for name in ("router", "single") if name in s) or "n/a"
    asked = Budget(**results["settings"]["config_budget"]).describe()
    lines = ["### Quality on the validation set", "",
             f"Per-task macro-F1 and accuracy on the validation file. Fine-tunes: mean ± std over seeds ({seeds}), "
             f"**{budget} per model** (the recommended config asks for {asked}; `--epochs` overrides it for "
             "every fine-tune alike). Train time: per seed, all models of the row. Where the config fuses lexical "
             "heads (`lexical_weight` > 0), the ↳ rows score the same trained models' encoder heads and lexical "
             "heads alone.",
             "", _provenance(results, ["reference", "single", "router"]), ""]
    lines += _section_warnings(results, ["reference", "single", "router"])
    head = " | ".join(f"{t} F1 | {t} acc" for t in tasks)
    lines += [f"| Model | {head} | mean F1 | train time |", "| --- |" + " ---: |" * (2 * len(tasks) + 2)]
    lines += _reference_rows(s["reference"], tasks) if "reference" in s else []
    for name, title in (("single", "Single-task fine-tunes"), ("router", "Router (multi-task)")):
        lines += _finetune_rows(title, s[name]["summary"], tasks) if name in s else []
    return lines + [""]


def _verdict_cell(shadow: dict[str, Any], task: str) -> str:
    cells = []
    for seed in shadow["per_seed"]:
        entry = seed["tasks"][task]
        cells.append(f"{seed['seed']}: {entry['verdict']} ({_f(entry['macro_f1_diff'], sign=True)})")
    return "; ".join(cells)


def _versus_tfidf_cell(shadow: dict[str, Any] | None, task: str) -> str:
    """seed: verdict (router − TF-IDF [95% CI]) for each router seed; n/a before the shadow section computed it."""
    if not shadow or "versus_tfidf" not in shadow:
        return "n/a"
    cells = []
    for seed in shadow["versus_tfidf"]["per_seed"]:
        entry = seed["tasks"][task]
        lo, hi = entry["ci95"]
        cells.append(f"{seed['seed']}: {entry['verdict']} ({_f(entry['macro_f1_diff'], sign=True)} "
                     f"[{_f(lo, sign=True)}, {_f(hi, sign=True)}])")
    return "; ".join(cells)


def _md_bar(results: dict[str, Any]) -> list[str]:
    s, tasks = results["sections"], _task_names(results)
    lines = ["### Does the router clear the bar?", "",
             "Router vs TF-IDF: mean macro-F1 over seeds, and per router seed the paired bootstrap 95% CI of "
             "router − TF-IDF on the same validation rows (seed: verdict (difference [CI])). Router vs single-task: "
             "paired bootstrap 95% CI of the macro-F1 difference per seed (shadow verdicts; seed: verdict "
             "(router − single)).", "",
             _provenance(results, ["reference", "router", "shadow"]), ""]
    lines += _section_warnings(results, ["reference", "router", "shadow"])
    lines += ["| Task | Router F1 | encoder heads alone | TF-IDF F1 | Beats TF-IDF? | Margin | vs TF-IDF per seed "
              "| Router − single (mean) | Verdicts per seed | Seeds worse |",
              "| --- | ---: | ---: | ---: | --- | ---: | --- | ---: | --- | ---: |"]
    ref, router, shadow = s.get("reference"), s.get("router"), s.get("shadow")
    for t in tasks:
        mean = router["summary"]["tasks"][t]["macro_f1"]["mean"] if router else None
        encoder = router["summary"].get("encoder_only", {}).get("tasks", {}).get(t) if router else None
        encoder = _f(encoder["macro_f1"]["mean"]) if encoder else "= router"
        tfidf = ref["tasks"][t]["tfidf"]["macro_f1"] if ref else None
        margin = mean - tfidf if mean is not None and tfidf is not None else None
        beats = "n/a" if margin is None else ("yes" if margin > 0 else "**no**")
        sh = shadow["summary"].get(t) if shadow else None
        diff, verdicts, worse = "n/a", "n/a", "n/a"
        if sh:
            diff, verdicts = _f(sh["mean_diff"], sign=True), _verdict_cell(shadow, t)
            worse = f"{sh['n_worse']}/{sh['n_seeds']}"
        lines.append(f"| {t} | {_f(mean)} | {encoder} | {_f(tfidf)} | {beats} | {_f(margin, sign=True)} | "
                     f"{_versus_tfidf_cell(shadow, t)} | {diff} | {verdicts} | {worse} |")
    return lines + [""]


def _md_ablations(results: dict[str, Any]) -> list[str]:
    tasks, ab = _task_names(results), results["sections"].get("ablations")
    lines = ["### Ablations", ""]
    if ab:
        budget, main = Budget(**ab["budget"]), Budget(**ab["main_budget"])
        miss = ", ".join(f"{v['rate']:.0%} of {t} ({v['column']})" for t, v in ab["missing_labels"]["blanked"].items())
        lines += [f"One seed ({ab['seed']}), **reduced budget: {budget.describe()} per variant** (main table: "
                  f"{main.describe()}), so compare rows with each other, not with the main table. Each row changes "
                  f"one key of the recommended config. Missing labels: a copy of the training file with {miss} "
                  "blanked at random (seeded).", ""]
    lines += [_provenance(results, ["ablations"]), ""] + _section_warnings(results, ["ablations"])
    lines += [f"| Group | Variant | {' | '.join(f'{t} F1' for t in tasks)} | mean F1 | train time | note |",
              "| --- | --- |" + " ---: |" * (len(tasks) + 2) + " --- |"]
    for row in (ab or {}).get("rows", []):
        note = "**= recommended**" if row["is_recommended"] else ""
        if row["source"] != "trained":
            note = f"{note} same training as the {row['source']}".strip()
        if row.get("reused"):
            note = f"{note} reused from an earlier run (--reuse)".strip()
        cells = " | ".join(_f(row["tasks"][t]["macro_f1"]) for t in tasks)
        lines.append(f"| {row['group']} | {row['variant']} | {cells} | {_f(row['mean_macro_f1'])} | "
                     f"{duration(row['train_runtime_s'])} | {note} |")
    return lines + [""]


def _section_head(results: dict[str, Any], title: str, names: Sequence[str]) -> list[str]:
    """A table section's title, the run that measured it, and a warning for each section not yet run."""
    return [f"### {title}", "", _provenance(results, names), ""] + _section_warnings(results, names)


def _md_speed(results: dict[str, Any]) -> list[str]:
    sp = results["sections"].get("speed")
    lines = _section_head(results, "Speed", ["speed"])
    if not sp:
        return lines
    tr, inf = sp["training"], sp["inference"]
    lines += [
        f"Training: batch {tr['batch_size']}, every ticket padded to {tr['max_length']} tokens, {tr['precision']}, "
        f"timed over steps {tr['timed_steps']}; the plain `Trainer` trains one head ({tr['plain_task']}) with "
        "`AutoModelForSequenceClassification` on the same tokenized data. Inference: "
        f"{inf['n_texts']} validation tickets, batch {inf['batch_size']}, median of {inf['repeats']} after one "
        f"warm-up, on `{inf['device']}`; the single-task models run one after another.", "",
        "| Measure | Router | Baseline | Result |", "| --- | ---: | ---: | --- |",
        f"| training tickets/s (router vs plain single-head Trainer) | {tr['router_tickets_per_s']:.1f} | "
        f"{tr['plain_tickets_per_s']:.1f} | overhead {tr['overhead_pct']:+.1f}% |",
        f"| inference tickets/s (one router pass vs {inf['n_single_models']} single-task models) | "
        f"{inf['router_tickets_per_s']:.1f} | {inf['single_tickets_per_s']:.1f} | **{inf['ratio']:.2f}×** "
        f"(goal ≥ {inf['goal']:.1f}×, limit {inf['limit']:.1f}×: {'met' if inf['goal_met'] else 'not met'}) |",
    ]
    if inf.get("lexical_ms_per_ticket") is not None:
        lines.append(f"| lexical heads' part of one router pass (ms/ticket) | {inf['lexical_ms_per_ticket']:.3f} | "
                     f"— | {100 * inf['lexical_share_of_router']:.1f}% of the router's routing time |")
    lines.append("")
    return lines


def _mib(n: int | None) -> str:
    return "n/a" if n is None else f"{n / 2**20:.0f}"


def _md_memory(results: dict[str, Any]) -> list[str]:
    sp = results["sections"].get("speed")
    lines = _section_head(results, "Memory", ["speed"])
    if not sp:
        return lines
    mem = sp["memory"]
    lines += [f"Peak memory of a fresh process that loads the model(s) and routes {mem['n_texts']} validation "
              f"tickets (batch {mem['batch_size']}): its own peak RSS (`VmHWM`; `ru_maxrss` off Linux), and "
              "`torch.cuda.max_memory_allocated` on a GPU.", "",
              "| Setup | peak RSS (MiB) | RSS after routing (MiB) | after routing − imports only (MiB) | "
              "peak CUDA allocated (MiB) |", "| --- | ---: | ---: | ---: | ---: |"]
    setups = list(mem["setups"].values())
    baseline = setups[0]["rss_after_bytes"]  # the imports-only process comes first
    for name, m in mem["setups"].items():
        lines.append(f"| {name} | {_mib(m['peak_rss_bytes'])} | {_mib(m['rss_after_bytes'])} | "
                     f"{_mib(m['rss_after_bytes'] - baseline)} | {_mib(m['cuda_peak_allocated_bytes'])} |")
    return lines + [""]


def _md_gpu(results: dict[str, Any]) -> list[str]:
    gpu = results["sections"].get("gpu")
    lines = _section_head(results, "GPU", ["gpu"])
    if not gpu:
        return lines
    if not gpu["available"]:
        return lines + [f"Not measured: {gpu['note']}.", ""]
    rows = []
    for run in gpu["training"]:
        for name, tps in run["tickets_per_s"].items():
            speedup = run["speedup_vs_fp32"].get(name, 1.0)
            plain = run.get("plain_tickets_per_s", {}).get(name)
            overhead = run.get("overhead_pct", {}).get(name)
            rows.append(f"| router training, batch {run['batch_size']} ({run['steps']} steps), {name} | "
                        f"{tps:.1f} | {speedup:.2f}× | {_f(plain, 1)} | {_f(overhead, 1, sign=True)}% |")
    inference = gpu["inference"]
    share = inference.get("lexical_share")
    return lines + [
        f"`{gpu['device']}`, {gpu['cpu_threads']} CPU threads; router training padded to {gpu['max_length']} tokens, "
        f"timed from step {FIRST_TIMED_STEP}.", "",
        "| Measure | router tickets/s | vs fp32 | plain `Trainer` tickets/s (one head) | router step overhead |",
        "| --- | ---: | ---: | ---: | ---: |", *rows,
        f"| router inference, fp32 weights, batch {inference['batch_size']}, {inference['n_texts']} tickets | "
        f"{inference['tickets_per_s']:.1f} | | | |", "",
        *([f"The n-gram heads run on the CPU in either case: {share:.0%} of the GPU routing time.", ""]
          if share is not None else []),
    ]


VERDICT_WORDS = {"better": "**better**", "worse": "**worse**", "same within noise": "same"}


def _verdict(comparison: dict[str, Any] | None) -> str:
    if not comparison:
        return "—"
    return f"{VERDICT_WORDS[comparison['verdict']]} {_f(comparison['diff'], sign=True)}"


def _mtl_head_cell(entry: dict[str, Any], reference: str, task: str) -> str:
    """Encoder-alone F1, then its verdicts against the reference method and the single-task encoder."""
    versus_ref = (entry.get(f"encoder_vs_{reference}") or {}).get(task)
    versus_single = (entry.get("encoder_vs_single") or {}).get(task)
    return (f"{_f(entry['encoder'][task])} (ref: {_verdict(versus_ref)}; "
            f"single: {_verdict(versus_single)})")


def _mtl_conflict(conflict: dict[str, Any] | None) -> str:
    """Mean over task pairs of the mean encoder-gradient cosine, and of the share of steps it was negative."""
    pairs = list((conflict or {}).get("pairs", {}).values())
    if not pairs:
        return "n/a"
    cosine = sum(p["mean_cosine"] for p in pairs) / len(pairs)
    negative = sum(p["negative_share"] for p in pairs) / len(pairs)
    return f"{cosine:+.3f} ({negative:.0%} neg.)"


def _mtl_step(seconds: float, base: float | None, load: list[float] | None, reused: bool) -> str:
    cell = f"{seconds / base:.2f}×" if base else "n/a"
    cell += f" ({seconds:.2f} s"
    cell += f", load {load[0]:.1f})" if load else ")"
    return cell + (" reused" if reused else "")


def _mtl_rows(mtl: dict[str, Any], tasks: list[str]) -> list[str]:
    reference, methods = mtl["reference"], mtl["methods"]
    base = methods[reference]["seconds_per_step"]
    rows = []
    for name, entry in methods.items():
        heads = " | ".join(_mtl_head_cell(entry, reference, t) for t in tasks)
        fused = " / ".join(_f(entry["fused"][t]) for t in tasks) if "fused" in entry else "n/a"
        label = f"{name} (reference)" if name == reference else name
        rows.append(f"| {label} | {' '.join(entry['flags']) or '(config)'} | {heads} | {fused} | "
                    f"{_mtl_step(entry['seconds_per_step'], base, entry.get('load_average_after'), entry.get('reused'))}"
                    f" | {_mtl_conflict(entry.get('gradient_conflict'))} |")
    for task, entry in mtl["single"].items():
        heads = " | ".join(_f(entry["encoder"]) if t == task else "—" for t in tasks)
        fused = " / ".join(_f(entry["fused"]) if t == task and "fused" in entry else "—" for t in tasks)
        rows.append(f"| single-task {task} | one task, its labeled rows, equal | {heads} | {fused} | "
                    f"{_mtl_step(entry['seconds_per_step'], base, None, entry.get('reused'))} | — |")
    return rows


def _md_mtl_set(name: str, mtl: dict[str, Any]) -> list[str]:
    """One data set's method table, headed by the run that measured it."""
    tasks = list(next(iter(mtl["methods"].values()))["encoder"])
    budget = Budget(mtl["budget"]["epochs"] or 0, mtl["budget"]["max_steps"]).describe()
    run = mtl["run"]
    return [
        f"#### {name}", "",
        f"_Measured by `{run['command']}` on {run['machine']} (started {run['started'][:16]})._", "",
        f"Config `{mtl['config']}` ({budget} per training, `lexical_weight 0`), trained on `{mtl['train']}`, scored "
        f"on `{mtl['test']}`, which no training sees.", "",
        f"| method | flags | {' | '.join(f'{t} F1 (vs ref; vs single)' for t in tasks)} | fused F1 "
        f"({' / '.join(tasks)}) | step time × | grad cosine |",
        "| --- | --- |" + " --- |" * len(tasks) + " --- | ---: | ---: |",
        *_mtl_rows(mtl, tasks), ""]


def _md_mtl(results: dict[str, Any]) -> list[str]:
    section = results["sections"].get("mtl")
    # no provenance line for the section: each data set names the run that measured it
    lines = ["### Multi-task balancing (`--only mtl`)", "", *_section_warnings(results, ["mtl"])]
    if not section:
        return lines
    first = next(iter(section["sets"].values()))
    lines += [
        "Per data set (the last run of each config): every method's encoder heads alone, trained with "
        "`lexical_weight 0`, scored on a held-out file. Per head: macro-F1, then the paired-bootstrap verdict "
        f"(95% CI, {first['resamples']} resamples) against the reference method (the first row) and against that "
        "head's single-task encoder (same budget, its labeled rows only). Fused: the same encoders with n-gram "
        f"heads fitted once on the training file (weight {first['fuse_weight']:g}), as `Router` fuses them. Step "
        "time: training seconds per optimizer step (evaluation included) relative to the reference's, with the "
        "1-minute load average after the run: compare it only between runs on an equally loaded machine. Grad "
        "cosine: per task pair the mean cosine of the task gradients on the shared encoder, averaged over pairs, "
        "and the share of logged steps where it was negative (`metrics.json` → `gradient_conflict`).", ""]
    for name, mtl in section["sets"].items():
        lines += _md_mtl_set(name, mtl)
    return lines


# The tables, in BENCHMARKS.md order: each renders its part of results.json (a section not run yet says so).
# A new section's table is one function `(results) -> markdown lines` and one entry here.
TABLES: tuple[Callable[[dict[str, Any]], list[str]], ...] = (_md_main, _md_bar, _md_ablations, _md_speed, _md_memory,
                                                              _md_gpu, _md_mtl)
PROFILE_TITLES = {"quick": "quick (`--quick`)", "default": "default", "full": "full (`--full`)"}


def _profile(settings: dict[str, Any]) -> str:
    # results.json written before the profiles existed: not quick meant today's --full.
    return settings.get("profile") or ("quick" if settings["quick"] else "full")


def render_markdown(results: dict[str, Any]) -> str:
    st = results["settings"]
    # The last command may have run a single section (`--only`): name it, since the tables merge several runs.
    kind = PROFILE_TITLES[_profile(st)]
    lines = [f"_Last written {results['finished'][:16]} UTC by `{results['command']}` ({kind} settings). "
             f"Data: `{st['data_dir']}`; recommended config "
             f"`{st['config']}`; backbone {st['backbone']}. Machine of the last run: "
             f"{machine_line(results['machine'])}._", ""]
    for table in TABLES:
        lines += table(results)
    return "\n".join(lines).rstrip() + "\n"


def write_benchmarks_md(path: Path, block: str) -> None:
    """Replace the text between the markers (creating the file or the markers if absent); keep the rest."""
    text = path.read_text(encoding="utf-8") if path.is_file() else MD_HEADER
    section = f"{MARK_BEGIN}\n{block}{MARK_END}"
    begin, end = text.find(MARK_BEGIN), text.find(MARK_END)
    if begin >= 0 and end > begin:
        text = text[:begin] + section + text[end + len(MARK_END):]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text, encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__.splitlines()[0])
    parser.add_argument("--results", default=str(REPO / "bench" / "results.json"))
    parser.add_argument("--benchmarks-md", default=str(REPO / "BENCHMARKS.md"))
    args = parser.parse_args(argv)
    results = json.loads(Path(args.results).read_text(encoding="utf-8"))
    write_benchmarks_md(Path(args.benchmarks_md), render_markdown(results))
    print(f"tables from {args.results} -> {args.benchmarks_md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
