"""The Optuna sweeper of this project (``hydra/sweeper=optuna``), written for Optuna >= 4.

hydra-optuna-sweeper 1.3 pins ``optuna<3``; this plugin keeps its command line
(``python train.py -m hparams_search=optuna hydra.sweeper.n_trials=20 ...``) and adds what a study
shared by several workers needs: resumable storages, stale-trial failure, unique run dirs, pruning.
Hydra imports every public module here when it scans for plugins, so only ``config.py`` and
``optuna_sweeper.py`` are public and neither imports Optuna; the work is in ``_impl.py``/``_space.py``.
"""
