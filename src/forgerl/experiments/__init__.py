"""Experiments: the logic behind scripts/perturb_experiment.py and scripts/rm_reward_experiment.py.

Kept out of the library packages (perturb/, review/) because an experiment is an orchestrator: it
trains, evaluates and reports, so it imports the trainer, and a building block that did so would
sit in an import cycle with it. The scripts are the entry points; tests import the helpers here.
"""
