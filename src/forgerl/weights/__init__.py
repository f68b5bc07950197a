"""Weight transport: how the trainer's new weights reach the engine that samples rollouts.

One protocol (base.py `WeightTransport`: `push(state_dict, version) -> PushResult`, `restore()`,
`close()`), one file per transport:

    inprocess.py     the built-in engine in this process (a validated copy)
    http_push.py     `forgerl serve` in another process (safetensors in shared memory + /admin/weights: `shm`)
    dir.py           `forgerl serve` on another host (safetensors on shared storage, posted by name: `dir`)
    vllm_reload.py   a vLLM server (its dev-mode reload endpoint, with checksum verification)

check.py validates a whole push before anything is written (all or nothing); alarm.py shouts when
the engine stops following the trainer. Importing this package does not import torch or httpx.
"""

from forgerl.weights.alarm import StaleWeightsAlarm, StaleWeightsError
from forgerl.weights.base import PushResult, WeightTransport, default_shared_dir
from forgerl.weights.dir import DirWeightPusher
from forgerl.weights.files import WeightDir
from forgerl.weights.http_push import INSTANCE_HEADER, WeightPusher
from forgerl.weights.inprocess import InProcessTransport
from forgerl.weights.vllm_reload import VLLMWeightPusher, state_digest

__all__ = ["INSTANCE_HEADER", "DirWeightPusher", "InProcessTransport", "PushResult", "StaleWeightsAlarm", "StaleWeightsError",
           "VLLMWeightPusher", "WeightDir", "WeightPusher", "WeightTransport", "default_shared_dir", "state_digest"]
