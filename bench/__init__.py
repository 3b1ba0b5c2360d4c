"""Benchmarks of ticket_router on real tickets: `python -m bench` from the repository root (see bench/cli.py).

Modules: `cli` (flags, the run loop), `settings` (profiles and the resolved `Bench`), `sections/` (one module per
section, registered in `sections.SECTIONS`), `records` (what a training records, spread over seeds), `throughput`
(timing helpers), `memory` (the fresh-process memory probe), `results` (results.json), `report` (BENCHMARKS.md's
tables from results.json). Kept import-free so `python -m bench.memory` starts as light as a routing process.
"""
