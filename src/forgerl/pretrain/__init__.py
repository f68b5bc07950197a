"""Pre-training: the stage before SFT that teaches the embedded policy to read its context.

Issue 20: a policy trained from random weights on scripted-solver conversations alone memorised
names and values instead of copying them. This package pre-trains the same architecture on a corpus
the project generates offline (sources.py: the standard library's code, synthetic reading tasks, the
project's own episodes under perturbed scaffolds), mixed and packed by corpus.py, with a resumable
loop in run.py (`forgerl pretrain`).
"""
