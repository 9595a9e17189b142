"""Evaluation: the bench and the paper's studies.

- [`scores`][mrsisr.eval.scores]: [`evaluate`][mrsisr.eval.scores.evaluate] samples one pipeline
  on given maps and scores every map; nothing else.
- [`bench`][mrsisr.eval.bench]: [`run_bench`][mrsisr.eval.bench.run_bench] runs models side by
  side on the same test maps ([`BenchConfig`][mrsisr.eval.bench.BenchConfig] holds the options).
- [`report`][mrsisr.eval.report]: rows, statistics and atomic JSON/CSV writing, one implementation.
- [`figures`][mrsisr.eval.figures]: the bench grid and the studies' plots.
- [`studies`][mrsisr.eval.studies]: one small module per study.
"""
