"""Experts in the training loop (MiniMax-M2's "experts as reward models", M2_NOTES §5).

A small web app (`forgerl review --run DIR`) lets signed-in experts read trajectories — thinking,
tool calls, observations, the deliverable, the verifier's evidence — and label them: rubric scores,
A/B preferences with a reason, step comments. Labels live in the run's store (append-only, each
expert's own). From them come rewards: a verifier+expert blend (`rewards.py`) and a reward model on
a small frozen encoder (`rm.py`) for the trajectories no expert has seen.

Modules: `auth` (passwords, sessions, CSRF), `rubric` (versioned rubric config), `labels` (label
payloads, current labels, agreement, queue), `render` (trajectory -> view model), `app` (FastAPI),
`features` (process statistics the reward model reads beside the text), `rm` (reward model),
`rewards` (combined reward), `train_hook` (the reward model as a reward component of RL training),
`demo` (synthetic runs and a scripted expert), `tool_expert` (a scripted expert for real
tool-reasoning rollouts), `experiment` (issue 8's RM-as-reward experiment).
"""
