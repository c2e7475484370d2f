"""Hyperparameter search: ``imgclf tune`` proposes params with Optuna and runs each trial as a DVC
experiment (docs/tuning.md). It stands above the pipeline's packages, as the command line does:

- :mod:`imgclf.tuning.settings`: the search file (``tune.yaml``), parsed and checked once;
- :mod:`imgclf.tuning.storage`: where the study lives (a local SQLite file, PostgreSQL, a journal file);
- :mod:`imgclf.tuning.search`: the rounds of trials, each a ``dvc exp run``, on one machine or many;
- :mod:`imgclf.tuning.trial`: the train stage's side of a trial: each epoch's score to the study, and
  whether to stop (Optuna's pruner);
- :mod:`imgclf.tuning.findings`: what the search found: the best trial, Optuna's plots, a table.
"""
