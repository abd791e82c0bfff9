import io
import random

import numpy as np
import torch

from dekr.callbacks.rng_state import RNGStateCheckpoint


def _draw() -> tuple[float, float, float]:
    return random.random(), float(np.random.rand()), float(torch.rand(()))


def test_restored_states_repeat_the_same_draws_in_every_generator():
    callback = RNGStateCheckpoint()
    state = callback.state_dict()
    first = _draw()
    _draw()  # move on, as training would
    callback.load_state_dict(state)
    assert _draw() == first


def test_states_survive_a_weights_only_checkpoint():
    # Checkpoints must stay loadable with torch.load(weights_only=True): plain types and tensors only.
    buffer = io.BytesIO()
    torch.save({"callbacks": {"RNGStateCheckpoint": RNGStateCheckpoint().state_dict()}}, buffer)
    first = _draw()
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)
    RNGStateCheckpoint().load_state_dict(loaded["callbacks"]["RNGStateCheckpoint"])
    assert _draw() == first
